"""`embed GENOME.fa --bed REGIONS.bed -o OUT`: one row per BED region, minus-strand regions
reverse-complemented, each vector equal to `embed` of the extracted sequence, the region's
coordinates beside it in .npz and .parquet; bad BED lines stop the run naming the line."""

import re

import numpy as np
import pytest

from codonnt_eqx import (
    BedError,
    KmerTokenizer,
    embed,
    from_pretrained,
    read_bed,
    reverse_complement,
    save_pretrained,
)
from codonnt_eqx.cli._main import main
from helpers import V2, perturbed_model

RNG = np.random.default_rng(3)
CHR1 = "".join(RNG.choice(list("ACGT"), 200))
CHR1 = CHR1[:20] + CHR1[20:50].lower() + CHR1[50:]  # soft-masked bases inside a region
CHR2 = "".join(RNG.choice(list("ACGT"), 150))
BED = "track name=test\n#comment\nchr1\t10\t70\tr1\t0\t+\nchr2\t20\t83\t.\t0\t-\n\nchr1\t100\t161\n"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    save_pretrained(perturbed_model(V2), KmerTokenizer(3), folder)
    return folder


@pytest.fixture
def genome(tmp_path):
    path = tmp_path / "genome.fa"
    path.write_text(f">chr1\n{CHR1}\n>chr2\n{CHR2}\n")
    return path


def _embed(genome, bed, checkpoint, out):
    argv = ["embed", str(genome), "--bed", str(bed), "--checkpoint", str(checkpoint)]
    return main([*argv, "-o", str(out)])


def test_regions_on_both_strands_embed_as_their_extracted_sequences(tmp_path, genome, checkpoint):
    pq = pytest.importorskip("pyarrow.parquet")
    bed = tmp_path / "regions.bed"
    bed.write_text(BED)
    model, tok = from_pretrained(checkpoint)
    sequences = [
        CHR1[10:70].upper(),
        reverse_complement(CHR2[20:83]),
        CHR1[100:161],
    ]
    want = embed(model, tok, sequences)
    names = ["r1", "chr2:21-83", "chr1:101-161"]
    for name in ("out.npz", "out.parquet"):
        assert _embed(genome, bed, checkpoint, tmp_path / name) == 0
    z = np.load(tmp_path / "out.npz")
    assert list(z["names"]) == names
    assert list(z["chroms"]) == ["chr1", "chr2", "chr1"] and list(z["strands"]) == ["+", "-", "+"]
    np.testing.assert_array_equal(z["starts"], [10, 20, 100])
    np.testing.assert_array_equal(z["ends"], [70, 83, 161])
    np.testing.assert_array_equal(z["lengths"], [60, 63, 61])
    np.testing.assert_allclose(z["embeddings"], want, atol=1e-6)
    # The minus strand really is the reverse complement: the plus strand differs.
    plus = embed(model, tok, [CHR2[20:83]])
    assert not np.allclose(plus[0], want[1], atol=1e-4)
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.column_names[:5] == ["name", "chrom", "start", "end", "strand"]
    assert table.column("name").to_pylist() == names
    assert table.column("start").to_pylist() == [10, 20, 100]
    assert table.column("strand").to_pylist() == ["+", "-", "+"]
    vectors = np.array(table.column("vector").to_pylist(), np.float32)
    np.testing.assert_allclose(vectors, want, atol=1e-6)


@pytest.mark.parametrize(
    "line, message",
    [
        ("chr1\t10\tx", "end 'x' is not a whole number"),
        ("chr1\t-1\t10", "start '-1' is not a whole number"),
        ("chr1\t30\t30", "end 30 is not after start 30"),
        ("chr1 10 20", "columns must be separated by tabs"),
        ("chr1\t10\t20\tn\t0\tup", "strand 'up' is not +, - or ."),
    ],
)
def test_a_bad_bed_line_is_refused_naming_file_and_line(tmp_path, line, message):
    bed = tmp_path / "bad.bed"
    bed.write_text(f"chr1\t0\t10\n{line}\n")
    with pytest.raises(BedError, match=re.escape("bad.bed, line 2: ") + ".*" + re.escape(message)):
        read_bed(bed)


@pytest.mark.parametrize(
    "line, message",
    [
        ("chr1\t10\tx", "line 2: end 'x' is not a whole number"),
        ("chr1\t150\t201", "line 2: region 150-201 is past the end of chr1 \\(200 bp\\)"),
        ("chrX\t0\t10", "line 2: no sequence named 'chrX' in the reference"),
    ],
)
def test_the_embed_command_stops_at_a_bad_region(
    tmp_path, genome, checkpoint, capsys, line, message
):
    bed = tmp_path / "bad.bed"
    bed.write_text(f"chr1\t0\t10\n{line}\n")
    out = tmp_path / "out.npz"
    assert _embed(genome, bed, checkpoint, out) == 1
    err = capsys.readouterr().err
    assert "bad.bed" in err and re.search(message, err), err
    assert not out.exists()


@pytest.mark.parametrize(
    "line, message",
    [("chr1\t10\tx", "line 2: end 'x' is not a whole number"), ("chrX\t0\t10", "'chrX'")],
)
def test_the_bed_and_reference_are_checked_before_the_model_loads(
    tmp_path, genome, capsys, line, message
):
    bed = tmp_path / "bad.bed"
    bed.write_text(f"chr1\t0\t10\n{line}\n")
    missing = tmp_path / "no-such-checkpoint"  # loading it would fail: it must not be reached
    assert _embed(genome, bed, missing, tmp_path / "out.npz") == 1
    err = capsys.readouterr().err
    assert "bad.bed" in err and message in err and "no-such-checkpoint" not in err, err

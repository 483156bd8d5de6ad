"""`embed -o` and `score`: files that load in NumPy / pyarrow with the right shapes and
values, atomic output, skipped records."""

import os

import numpy as np
import pytest

from codonnt_eqx import KmerTokenizer, embed, from_pretrained, read_fasta, save_pretrained
from codonnt_eqx.cli._main import main
from codonnt_eqx.io._embed_files import write_embeddings
from helpers import V2, perturbed_model

pq = pytest.importorskip("pyarrow.parquet")

GENES = {"g1": "ATGGCCAAACTGGGTTTCGATTAA", "g2": "ATGAAACCCTGA" * 3, "g3": "ACGTNACGTTA"}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    save_pretrained(perturbed_model(V2), KmerTokenizer(3), folder)
    return folder


def _fasta(path, records):
    path.write_text("".join(f">{name}\n{seq}\n" for name, seq in records.items()))
    return path


def _leftovers(folder):
    return [p for p in os.listdir(folder) if p.endswith(".tmp")]


def test_npz_and_parquet_hold_what_the_library_returns(tmp_path, checkpoint):
    fasta = _fasta(tmp_path / "genes.fa", GENES)
    model, tok = from_pretrained(checkpoint)
    want = embed(model, tok, list(GENES.values()), layers=[1, 2])
    for name in ("out.npz", "out.parquet"):
        argv = ["embed", str(fasta), "--checkpoint", str(checkpoint), "-o", str(tmp_path / name)]
        assert main([*argv, "--layers", "1", "2"]) == 0
    z = np.load(tmp_path / "out.npz")
    assert list(z["names"]) == list(GENES)
    np.testing.assert_array_equal(z["lengths"], [len(s) for s in GENES.values()])
    np.testing.assert_array_equal(z["layers"], [1, 2])
    assert z["embeddings"].shape == (3, 2, V2.embed_dim) and z["embeddings"].dtype == np.float32
    np.testing.assert_allclose(z["embeddings"], want, atol=1e-6)
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.column_names == ["name", "length", "num_tokens", "layer_1", "layer_2"]
    assert table.column("name").to_pylist() == list(GENES)
    layer_2 = np.array(table.column("layer_2").to_pylist(), np.float32)
    np.testing.assert_allclose(layer_2, want[:, 1], atol=1e-6)


def test_per_token_files_have_one_row_per_token_with_spans(tmp_path, checkpoint):
    fasta = _fasta(tmp_path / "genes.fa", GENES)
    tok = KmerTokenizer(3)
    sizes = [len(tok.encode(s)) - 1 for s in GENES.values()]
    for name in ("tok.npz", "tok.parquet"):
        argv = ["embed", str(fasta), "--checkpoint", str(checkpoint), "-o", str(tmp_path / name)]
        assert main([*argv, "--per-token"]) == 0
    z = np.load(tmp_path / "tok.npz")
    np.testing.assert_array_equal(z["offsets"], np.r_[0, np.cumsum(sizes)])
    assert z["token_embeddings"].shape == (sum(sizes), V2.embed_dim)
    assert z["token_spans"].shape == (sum(sizes), 2)
    g3 = slice(z["offsets"][2], z["offsets"][3])
    assert "".join(GENES["g3"][a:b] for a, b in z["token_spans"][g3]) == GENES["g3"]
    table = pq.read_table(tmp_path / "tok.parquet")
    assert [len(v) for v in table.column("vector").to_pylist()] == sizes
    np.testing.assert_allclose(
        np.array(table.column("vector").to_pylist()[1], np.float32),
        z["token_embeddings"][z["offsets"][1] : z["offsets"][2]],
        atol=1e-6,
    )


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, checkpoint, capsys):
    bad = _fasta(tmp_path / "bad.fa", {**GENES, "broken": "ACGTXACGT", "g4": "ACGT"})
    out = tmp_path / "out.npz"
    out.write_bytes(b"the previous result")
    argv = ["embed", str(bad), "--checkpoint", str(checkpoint), "-o", str(out)]
    assert main(argv) == 1
    assert "'broken', position 5: invalid character 'X'" in capsys.readouterr().err
    assert out.read_bytes() == b"the previous result" and not _leftovers(tmp_path)
    assert (
        main(
            [
                "embed",
                str(bad),
                "--checkpoint",
                str(checkpoint),
                "-o",
                str(tmp_path / "new.parquet"),
            ]
        )
        == 1
    )
    assert not (tmp_path / "new.parquet").exists() and not _leftovers(tmp_path)


@pytest.mark.parametrize("suffix", [".npz", ".parquet"])
def test_an_interrupt_mid_write_leaves_nothing(tmp_path, suffix):
    from codonnt_eqx import SequenceEmbedding

    def results():
        for i in range(3):
            yield SequenceEmbedding(f"s{i}", 3, 1, np.ones(4, np.float32))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_embeddings(tmp_path / f"out{suffix}", results())
    assert os.listdir(tmp_path) == []


def test_skip_invalid_embeds_the_rest_and_lists_what_was_skipped(tmp_path, checkpoint, capsys):
    bad = _fasta(tmp_path / "bad.fa", {**GENES, "broken": "ACGTXACGT"})
    out = tmp_path / "out.npz"
    argv = ["embed", str(bad), "--checkpoint", str(checkpoint), "-o", str(out), "--skip-invalid"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "skipped 1 record(s)" in err and "'broken', position 5" in err and "tokens/s" in err
    assert list(np.load(out)["names"]) == list(GENES)


def test_score_writes_variant_scores_and_refuses_mismatches(tmp_path, checkpoint, capsys):
    fasta = _fasta(tmp_path / "genes.fa", GENES)
    variants = tmp_path / "v.tsv"
    variants.write_text("sequence_name\tposition\tref\talt\ng1\t8\tA\tT\ng1\t4\tT\tA\n")
    out = tmp_path / "scores.tsv"
    argv = ["score", str(fasta), "--variants", str(variants), "--checkpoint", str(checkpoint)]
    assert main([*argv, "-o", str(out)]) == 1
    assert "ref mismatch: g1 has 'G' at 4..4" in capsys.readouterr().err
    assert not out.exists() and not _leftovers(tmp_path)
    assert main([*argv, "-o", str(out), "--skip-invalid"]) == 0
    header, good, mismatch = (line.split("\t") for line in out.read_text().splitlines())
    row = dict(zip(header, good, strict=True))
    assert row["consequence"] == "missense" and row["masked_tokens"] == "1"
    assert float(row["score"]) == pytest.approx(
        float(row["alt_log_prob"]) - float(row["ref_log_prob"]), abs=1e-5
    )
    assert dict(zip(header, mismatch, strict=True))["score"] == ""


def test_score_without_variants_writes_pseudo_log_likelihoods(tmp_path, checkpoint):
    fasta = _fasta(tmp_path / "genes.fa", {"g1": GENES["g1"]})
    out = tmp_path / "pll.tsv"
    assert main(["score", str(fasta), "--checkpoint", str(checkpoint), "-o", str(out)]) == 0
    header, row = (line.split("\t") for line in out.read_text().splitlines())
    row = dict(zip(header, row, strict=True))
    assert row["name"] == "g1" and row["num_tokens"] == "8" and row["method"] == "masked"
    assert float(row["log_likelihood"]) < 0
    assert read_fasta(fasta)[0].name == "g1"

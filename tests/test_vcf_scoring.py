"""`score --vcf --reference [--genes]`: VCF records split per ALT, scored on the plus strand
in a genomic window or on a gene's strand, each score equal to `score_variants` run on the
sequence the rule says; symbolic ALTs, REF mismatches and unknown chromosomes."""

import gzip

import numpy as np
import pytest

from codonnt_eqx import (
    KmerTokenizer,
    Variant,
    from_pretrained,
    read_vcf_variants,
    reverse_complement,
    save_pretrained,
    score_variants,
)
from codonnt_eqx.cli._main import main
from helpers import V2, perturbed_model

pysam = pytest.importorskip("pysam")

RNG = np.random.default_rng(7)
CHR1 = "".join(RNG.choice(list("ACGT"), 300))
# Soft-masked bases around the first variant and an N next to it: both must be read.
CHR1 = CHR1[:40] + CHR1[40:54].lower() + "N" + CHR1[55:]
SENSE = ["GCT", "GAA", "CTG", "AAA", "TGG", "CGT", "GAC", "TTC", "ATC", "CAG"]
CDS = "ATG" + "".join(RNG.choice(SENSE, 28)) + "TAA"  # 90 bp, in frame, no inner stop
GENE_START, GENE_END = 30, 120  # BED coordinates of the minus-strand gene on chr2
_CHR2 = "".join(RNG.choice(list("ACGT"), 200))
CHR2 = _CHR2[:GENE_START] + reverse_complement(CDS) + _CHR2[GENE_END:]
HEADER = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    save_pretrained(perturbed_model(V2), KmerTokenizer(3), folder)
    return folder


@pytest.fixture(scope="module")
def model_and_tokenizer(checkpoint):
    return from_pretrained(checkpoint)


@pytest.fixture
def genome(tmp_path):
    path = tmp_path / "genome.fa"
    path.write_text(f">chr1 first\n{CHR1[:150]}\n{CHR1[150:]}\n>chr2\n{CHR2}\n")
    return path


def _other(base):
    return next(b for b in "ACGT" if b != base.upper())


def _vcf(path, rows):
    path.write_text(HEADER + "".join("\t".join(map(str, r)) + "\t.\t.\t.\n" for r in rows))
    return path


def _rows(path):
    header, *lines = (line.split("\t") for line in path.read_text().splitlines())
    return [dict(zip(header, line, strict=True)) for line in lines]


def _score(args, checkpoint, out, *extra):
    return main(["score", *map(str, args), "--checkpoint", str(checkpoint), "-o", str(out), *extra])


def test_multiallelic_records_split_and_score_as_the_plus_strand_window(
    tmp_path, genome, checkpoint, model_and_tokenizer
):
    ref = CHR1[49].upper()
    alts = [b for b in "ACGT" if b != ref][:2]
    vcf = _vcf(
        tmp_path / "calls.vcf",
        [("chr1", 50, "rs1", ref, ",".join(alts)), ("chr1", 80, ".", CHR1[79], "<DEL>")],
    )
    out = tmp_path / "scores.tsv"
    assert _score(["--vcf", vcf, "--reference", genome], checkpoint, out) == 0
    rows = _rows(out)
    assert [(r["chrom"], r["pos"], r["id"], r["ref"], r["alt"]) for r in rows] == [
        ("chr1", "50", "rs1", ref, alts[0]),
        ("chr1", "50", "rs1", ref, alts[1]),
        ("chr1", "80", ".", CHR1[79].upper(), "<DEL>"),
    ]
    # Without --genes: plus strand, no consequence; chr1 is shorter than a window's flank,
    # so the window is the whole (upper-cased) chromosome.
    model, tok = model_and_tokenizer
    want = score_variants(
        model, tok, {"chr1": CHR1.upper()}, [Variant("chr1", 50, ref, a) for a in alts]
    )
    for row, w in zip(rows[:2], want, strict=True):
        assert row["strand"] == "+" and row["gene"] == "" and row["consequence"] == ""
        assert row["error"] == "" and w.score is not None
        assert float(row["score"]) == pytest.approx(w.score, abs=1e-5)
    assert rows[0]["score"] != rows[1]["score"]
    assert rows[2]["score"] == "" and "symbolic" in rows[2]["error"]

    # Gzipped (plain gzip and bgzip) VCFs read the same.
    plain = tmp_path / "calls.vcf.gz"
    plain.write_bytes(gzip.compress(vcf.read_bytes()))
    bgzip = tmp_path / "calls.bgz.vcf.gz"
    pysam.tabix_compress(str(vcf), str(bgzip))
    for path in (plain, bgzip):
        assert [(v.pos, v.alt, v.skip_reason is None) for v in read_vcf_variants(path)] == [
            (50, alts[0], True),
            (50, alts[1], True),
            (80, "<DEL>", False),
        ]
    out_gz = tmp_path / "scores_gz.tsv"
    assert _score(["--vcf", bgzip, "--reference", genome], checkpoint, out_gz) == 0
    assert out_gz.read_text() == out.read_text()


def test_a_minus_strand_gene_is_scored_on_its_reverse_complement(
    tmp_path, genome, checkpoint, model_and_tokenizer
):
    p = GENE_START + 16  # 0-based, inside the gene
    d = GENE_START + 40
    variants = [
        ("chr2", p + 1, "snv", CHR2[p], _other(CHR2[p])),
        ("chr2", d + 1, "del", CHR2[d : d + 3], CHR2[d]),  # anchor base, 2 deleted
        ("chr2", 10, "out", CHR2[9], _other(CHR2[9])),  # outside the gene
    ]
    vcf = _vcf(tmp_path / "calls.vcf", variants)
    genes = tmp_path / "genes.bed"
    genes.write_text(f"chr2\t{GENE_START}\t{GENE_END}\tgeneM\t0\t-\n")
    out = tmp_path / "scores.tsv"
    assert _score(["--vcf", vcf, "--reference", genome, "--genes", genes], checkpoint, out) == 0
    snv, deletion, outside = _rows(out)

    # The independent path: the gene's sequence on its strand, alleles complemented, the
    # position counted from the gene's 5' end (its genomic end).
    model, tok = model_and_tokenizer
    in_gene = [
        Variant(
            "geneM", GENE_END - p, reverse_complement(CHR2[p]), reverse_complement(_other(CHR2[p]))
        ),
        Variant(
            "geneM",
            GENE_END - (d + 3) + 1,
            reverse_complement(CHR2[d : d + 3]),
            reverse_complement(CHR2[d]),
        ),
    ]
    assert CDS[GENE_END - p - 1] == reverse_complement(CHR2[p])
    want = score_variants(model, tok, {"geneM": CDS}, in_gene)
    for row, w in zip((snv, deletion), want, strict=True):
        assert row["strand"] == "-" and row["gene"] == "geneM" and row["sequence_name"] == "geneM"
        assert int(row["position"]) == w.variant.position and row["sequence_ref"] == w.variant.ref
        assert w.score is not None and w.consequence != ""
        assert float(row["score"]) == pytest.approx(w.score, abs=1e-5)
        assert row["consequence"] == w.consequence
    assert deletion["consequence"] == "frameshift"
    assert snv["consequence"] in {"synonymous", "missense", "nonsense"}
    assert outside["strand"] == "+" and outside["gene"] == "" and outside["consequence"] == ""

    # The same gene as a GFF3 CDS (1-based, inclusive) gives the same rows.
    gff = tmp_path / "genes.gff3"
    gff.write_text(
        "##gff-version 3\n"
        f"chr2\ttest\tCDS\t{GENE_START + 1}\t{GENE_END}\t.\t-\t0\tID=cds1;Parent=geneM\n"
    )
    out_gff = tmp_path / "scores_gff.tsv"
    assert _score(["--vcf", vcf, "--reference", genome, "--genes", gff], checkpoint, out_gff) == 0
    assert out_gff.read_text() == out.read_text()


def test_a_ref_mismatch_stops_naming_the_record_unless_skip_invalid(
    tmp_path, genome, checkpoint, capsys
):
    wrong = _other(CHR1[119])
    vcf = _vcf(
        tmp_path / "calls.vcf",
        [("chr1", 100, ".", CHR1[99], _other(CHR1[99])), ("chr1", 120, ".", wrong, CHR1[119])],
    )
    out = tmp_path / "scores.tsv"
    args = ["--vcf", vcf, "--reference", genome]
    assert _score(args, checkpoint, out) == 1
    err = capsys.readouterr().err
    assert "record 2 (chr1:120" in err and "ref mismatch" in err and "--skip-invalid" in err
    assert not out.exists()
    assert _score(args, checkpoint, out, "--skip-invalid") == 0
    good, bad = _rows(out)
    assert good["error"] == "" and good["score"] != ""
    assert bad["score"] == "" and bad["error"].startswith("ref mismatch: chr1 has")


def test_a_chrom_the_reference_lacks_is_an_error(tmp_path, genome, checkpoint, capsys):
    vcf = _vcf(tmp_path / "calls.vcf", [("1", 5, ".", "A", "G")])
    out = tmp_path / "scores.tsv"
    assert _score(["--vcf", vcf, "--reference", genome], checkpoint, out, "--skip-invalid") == 1
    err = capsys.readouterr().err
    assert "calls.vcf, record 1 (1:5 A>G): no sequence named '1' in the reference" in err
    assert not out.exists()


def test_windows_are_cut_around_the_variant_in_the_chromosome_frame():
    from codonnt_eqx import VcfVariant, variant_contexts

    reference = {"chr1": CHR1.upper()}
    variants = [
        VcfVariant("chr1", pos, ".", CHR1[pos - 1].upper(), "A", 1) for pos in (3, 150, 299)
    ]
    contexts, sequences = variant_contexts(variants, reference, flank=20, period=3)
    for v, c in zip(variants, contexts, strict=True):
        assert c is not None and c.strand == "+" and c.gene == ""
        name, position = c.variant.sequence_name, c.variant.position
        lo, hi = (int(x) for x in name.removeprefix("chr1:").split("-"))
        start = max(0, v.pos - 1 - 20)
        assert lo - 1 == start - start % 3  # the window starts in the chromosome's frame
        assert hi == min(len(CHR1), v.pos + 20)
        assert sequences[name] == CHR1.upper()[lo - 1 : hi]
        assert sequences[name][position - 1] == v.ref

"""`score --vcf --reference [--genes]`: VCF records split per ALT, scored on the plus strand
in a genomic window or on a gene's strand, each score equal to `score_variants` run on the
sequence the rule says; symbolic ALTs, REF mismatches and unknown chromosomes."""

import gzip

import numpy as np
import pysam
import pytest

from codonnt_eqx import (
    KmerTokenizer,
    Variant,
    VcfError,
    VcfVariant,
    from_pretrained,
    read_vcf_variants,
    reverse_complement,
    save_pretrained,
    score_variants,
)
from codonnt_eqx.cli._main import main
from helpers import V2, perturbed_model

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
        # The anchor base trimmed: the two deleted bases, an empty alt.
        Variant("geneM", GENE_END - (d + 3) + 1, reverse_complement(CHR2[d + 1 : d + 3]), "-"),
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
    from codonnt_eqx import variant_contexts

    reference = {"chr1": CHR1.upper()}
    variants = [
        VcfVariant("chr1", pos, ".", CHR1[pos - 1].upper(), _other(CHR1[pos - 1]), 1)
        for pos in (3, 150, 299)
    ]
    contexts, sequences = variant_contexts(variants, reference, flank=20, period=3)
    # The rule in words: at least 20 bases either side where the chromosome has them, the
    # window starting at a 0-based multiple of 3 (so at most 22 before), ending 20 after.
    # Worked out by hand for a 300 bp chromosome: (name, 1-based position in the window).
    want = [("chr1:1-23", 3), ("chr1:130-170", 21), ("chr1:277-300", 23)]
    for v, c, (name, position) in zip(variants, contexts, want, strict=True):
        assert c is not None and c.strand == "+" and c.gene == ""
        assert (c.variant.sequence_name, c.variant.position) == (name, position)
        first, last = (int(x) for x in name.removeprefix("chr1:").split("-"))
        assert sequences[name] == CHR1.upper()[first - 1 : last]
        assert sequences[name][position - 1] == v.ref


def test_a_truncated_gzip_vcf_is_a_vcf_error_naming_the_file(tmp_path, genome, checkpoint, capsys):
    rng = np.random.default_rng(0)
    rows = [("chr1", 1 + i % 300, ".", "N", "A") for i in range(20000)]
    text = HEADER + "".join("\t".join(map(str, r)) + f"\t{rng.random():.6f}\t.\t.\n" for r in rows)
    data = gzip.compress(text.encode())
    cut = tmp_path / "x.vcf.gz"
    cut.write_bytes(data[: len(data) // 2])  # header and some records, then cut off
    out = tmp_path / "t.tsv"
    assert _score(["--vcf", cut, "--reference", genome], checkpoint, out) == 1
    err = capsys.readouterr().err
    assert "codonnt-eqx: error:" in err and "x.vcf.gz, after record" in err, err
    assert "not a readable VCF (truncated file" in err and "GzipFile" not in err
    with pytest.raises(VcfError, match="x.vcf.gz"):
        read_vcf_variants(cut)


def test_an_invalid_ref_or_alt_is_an_error_of_its_record(tmp_path, genome, checkpoint, capsys):
    vcf = _vcf(
        tmp_path / "calls.vcf",
        [
            ("chr1", 100, ".", CHR1[99], _other(CHR1[99])),
            ("chr1", 110, ".", "R", "A"),
            ("chr1", 120, ".", CHR1[119], "Y"),
        ],
    )
    out = tmp_path / "scores.tsv"
    args = ["--vcf", vcf, "--reference", genome]
    assert _score(args, checkpoint, out) == 1
    err = capsys.readouterr().err
    assert "not a readable VCF" not in err
    assert "record 2 (chr1:110 R>A): REF 'R' is not bases" in err, err
    assert "record 3 (chr1:120" in err and "ALT 'Y' is not bases" in err
    assert _score(args, checkpoint, out, "--skip-invalid") == 0
    good, bad_ref, bad_alt = _rows(out)
    assert good["error"] == "" and good["score"] != ""
    assert bad_ref["score"] == "" and bad_ref["error"].startswith("REF 'R' is not bases")
    assert bad_alt["score"] == "" and bad_alt["error"].startswith("ALT 'Y' is not bases")


def test_indels_that_shift_the_frame_are_not_scored_and_do_not_stop_the_run(
    tmp_path, genome, checkpoint, capsys
):
    vcf = _vcf(
        tmp_path / "calls.vcf",
        [
            ("chr1", 100, "ins1", CHR1[99], CHR1[99] + "A"),  # 1 base inserted
            ("chr1", 150, "del2", CHR1[149:152], CHR1[149]),  # 2 bases deleted
            ("chr1", 200, "ins3", CHR1[199], CHR1[199] + "ACG"),  # in frame: scored
        ],
    )
    out = tmp_path / "scores.tsv"
    # A short window (the model's 1000 tokens would cover all of chr1 and pass).
    args = ["--vcf", vcf, "--reference", genome, "--window", 24]
    assert _score(args, checkpoint, out) == 0
    ins1, del2, ins3 = _rows(out)
    for row, length in ((ins1, 1), (del2, 2)):
        assert row["score"] == "" and row["sequence_name"] != ""
        assert row["error"] == (
            f"an indel of length {length}, not a multiple of 3, shifts every later token: "
            "not scored"
        )
    assert ins3["error"] == "" and ins3["score"] != ""
    err = capsys.readouterr().err
    assert "2 indels of length not a multiple of 3 not scored" in err and "0 invalid" in err


def test_an_insertion_at_a_genes_edge_is_outside_the_gene():
    from codonnt_eqx import read_genes, read_reference, variant_contexts
    from codonnt_eqx.examples import example_path

    genes = read_genes(example_path("genes.bed"))
    reference = read_reference(example_path("genome.fa.gz"))
    chrom = reference["NC_007779.1"]
    by_name = {g.name: g for g in genes}
    plus, minus = by_name["gene_3"], by_name["gene_9"]
    assert plus.strand == "+" and plus.end == 5020  # 0-based half-open: last base 5019
    assert minus.strand == "-" and minus.end == 10494  # its start codon ends at 10493
    rows = [
        (5020, "A", "AG"),  # after gene_3's last base: after its stop codon
        (10494, "T", "TG"),  # after gene_9's last genomic base: before its start codon
        (9926, "AAT", "A"),  # deletes the base before gene_9 and its first (0-based 9927)
        (5019, chrom[5018], chrom[5018] + "ACG"),  # strictly inside gene_3
        (10493, chrom[10492], chrom[10492] + "ACG"),  # strictly inside gene_9
    ]
    variants = [VcfVariant("NC_007779.1", p, ".", r, a, i) for i, (p, r, a) in enumerate(rows)]
    assert [v.ref for v in variants[:3]] == [chrom[5019], chrom[10493], chrom[9925:9928]]
    assert minus.start == 9927
    contexts, sequences = variant_contexts(variants, reference, genes=genes, flank=30, period=3)
    after_stop, before_start, across, inside_plus, inside_minus = contexts
    for c in (after_stop, before_start, across):
        assert c is not None and c.gene == "" and c.strand == "+"
    assert after_stop is not None and after_stop.variant.ref == "-"
    assert after_stop.variant.alt == "G"
    assert inside_plus is not None and inside_plus.gene == "gene_3"
    # Inserted after the anchor (0-based 5018): before gene_3's base 5019, its last.
    assert inside_plus.variant.position == len(sequences["gene_3"])
    assert (inside_plus.variant.ref, inside_plus.variant.alt) == ("-", "ACG")
    assert inside_minus is not None and inside_minus.gene == "gene_9"
    # On the minus strand: between the gene's first and second bases, alleles complemented.
    assert inside_minus.variant.position == 2
    assert (inside_minus.variant.ref, inside_minus.variant.alt) == ("-", "CGT")


def test_a_variant_on_a_chromosome_the_reference_lacks_is_a_vcf_error():
    from codonnt_eqx import variant_contexts

    with pytest.raises(VcfError, match=r"record 1 \(chrZ:5 A>G\): no sequence named 'chrZ'"):
        variant_contexts([VcfVariant("chrZ", 5, ".", "A", "G", 1)], {"chr1": "ACGT"}, flank=2)


def test_positions_outside_the_chromosome_say_so(tmp_path):
    reference = {"chr1": CHR1.upper()}
    path = _vcf(
        tmp_path / "calls.vcf",
        [("chr1", 0, ".", "A", "G"), ("chr1", 301, ".", "A", "G"), ("chr1", 300, ".", "AC", "A")],
    )
    zero, past, runs_over = read_vcf_variants(path, reference)
    assert zero.error == "position 0 is before the first base of chr1 (VCF POS is 1-based)"
    assert past.error == "position 301 is past the end of chr1 (300 bp)"
    assert runs_over.error == "REF 'AC' at 300 runs past the end of chr1 (300 bp)"


def test_a_gene_named_like_a_window_keeps_its_own_sequence():
    from codonnt_eqx import Gene, variant_contexts

    reference = {"chr1": CHR1.upper()}
    window = f"chr1:1-{len(CHR1)}"  # what a flank of 1000 cuts: all of chr1
    gene = Gene(window, "chr1", "+", ((90, 120),))
    variants = [
        VcfVariant("chr1", 100, ".", CHR1[99].upper(), _other(CHR1[99]), 1),  # in the gene
        VcfVariant("chr1", 10, ".", CHR1[9].upper(), _other(CHR1[9]), 2),  # in a window
    ]
    contexts, sequences = variant_contexts(variants, reference, genes=[gene], flank=1000)
    in_gene, in_window = contexts
    assert in_gene is not None and in_window is not None
    assert sequences[in_gene.variant.sequence_name] == CHR1.upper()[90:120]
    assert in_window.variant.sequence_name != in_gene.variant.sequence_name
    assert sequences[in_window.variant.sequence_name] == CHR1.upper()


def test_a_bad_bed_gene_file_raises_gene_file_error(tmp_path):
    from codonnt_eqx import GeneFileError, read_genes

    genes = tmp_path / "genes.bed"
    genes.write_text("chr1\t10\tx\tg\t0\t+\n")
    with pytest.raises(GeneFileError, match=r"genes.bed, line 1: end 'x' is not a whole number"):
        read_genes(genes)
    genes.write_text("chr1\t10\t20\tg\n")
    with pytest.raises(GeneFileError, match="needs its strand"):
        read_genes(genes)


@pytest.mark.parametrize("flag", ["--strict", "--one-pass"])
def test_vcf_scoring_refuses_options_it_cannot_honour(tmp_path, genome, checkpoint, capsys, flag):
    vcf = _vcf(tmp_path / "calls.vcf", [("chr1", 100, ".", CHR1[99], _other(CHR1[99]))])
    out = tmp_path / "scores.tsv"
    assert _score(["--vcf", vcf, "--reference", genome], checkpoint, out, flag) == 1
    assert f"{flag} does not apply to --vcf" in capsys.readouterr().err
    assert not out.exists()

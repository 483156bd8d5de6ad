"""Saturation scans: every substitution, scored as `score_variants` scores it alone, amino-acid
scores against float64 log-probabilities, the table and heatmaps of `codonnt-eqx scan`."""

import csv
import itertools

import jax.numpy as jnp
import numpy as np
import pytest

from codonnt_eqx import Scorer, Variant, saturation_scan, score_variants
from codonnt_eqx.inference import scan
from codonnt_eqx.tokenizers import CODON_TABLE, KmerTokenizer
from helpers import TOKENIZERS, V2, perturbed_model

CDS = "ATGGCCAAACTGGGTTTCGATTAA"  # M A K L G F D *
ALL_CODONS = ["".join(c) for c in itertools.product("ACGT", repeat=3)]


@pytest.fixture(scope="module")
def v2():
    return perturbed_model(V2), TOKENIZERS[V2]


def _masked_log_probs64(model, tok, sequence, token) -> np.ndarray:
    ids = np.asarray(tok.encode(sequence))
    ids[token] = tok.mask_id
    x = np.asarray(model(jnp.asarray(ids)).logits, np.float64)[token]
    x = x - x.max()
    return x - np.log(np.exp(x).sum())


def test_an_snv_scan_has_every_substitution_scored_as_alone(v2):
    model, tok = v2
    s = saturation_scan(model, tok, CDS, mode="snv")
    assert len(s.position) == 3 * len(CDS)
    want = {(p, b) for p in range(1, len(CDS) + 1) for b in "ACGT" if b != CDS[p - 1]}
    assert set(zip(s.position.tolist(), s.alt, strict=True)) == want
    alone = score_variants(model, tok, {"seq0": CDS}, list(s.variant))
    np.testing.assert_allclose(s.score, [a.score for a in alone], atol=1e-6)
    np.testing.assert_allclose(
        s.aa_score, [np.nan if a.aa_score is None else a.aa_score for a in alone], atol=1e-6
    )
    assert s.consequence == tuple(a.consequence for a in alone) and not any(s.error)
    for p, ref, v in zip(s.position, s.ref, s.variant, strict=True):
        assert ref == CDS[p - 1] == v.ref and v.position == p


def test_amino_acid_scores_are_log_sums_over_codons_from_float64_log_probs(v2):
    model, tok = v2
    s = saturation_scan(model, tok, CDS, mode="amino_acid", positions=[2, 7])
    amino_acids = set(CODON_TABLE.values())
    for codon in (2, 7):
        rows = [i for i, p in enumerate(s.position) if p == codon]
        ref_codon = CDS[3 * codon - 3 : 3 * codon]
        ref_aa = CODON_TABLE[ref_codon]
        assert {s.alt[i] for i in rows} == amino_acids - {ref_aa} and len(rows) == 20
        lp = _masked_log_probs64(model, tok, CDS, codon)  # <cls> is token 0

        def log_p(aa, lp=lp):
            return np.logaddexp.reduce(
                [lp[tok.token_to_id(c)] for c, a in CODON_TABLE.items() if a == aa]
            )

        for i in rows:
            assert s.ref[i] == ref_aa
            assert s.aa_score[i] == pytest.approx(log_p(s.alt[i]) - log_p(ref_aa), abs=1e-4)
            v = s.variant[i]  # the nearest codon of the alternative amino acid
            assert CODON_TABLE[v.alt] == s.alt[i] and v.position == 3 * codon - 2
            dist = sum(a != b for a, b in zip(v.alt, ref_codon, strict=True))
            assert dist == min(
                sum(a != b for a, b in zip(c, ref_codon, strict=True))
                for c, a in CODON_TABLE.items()
                if a == s.alt[i]
            )
        assert s.value is s.aa_score


def test_a_codon_scan_fills_the_matrix_but_the_reference(v2):
    model, tok = v2
    s = saturation_scan(model, tok, CDS + "GA", mode="codon")  # a partial codon at the end
    positions, alternatives, values = s.matrix()
    assert positions.tolist() == list(range(1, 9)) and sorted(alternatives) == ALL_CODONS
    assert values.shape == (64, 8) and np.isnan(values).sum() == 8
    for row, column in s.reference_cells():
        assert np.isnan(values[row, column])
        assert alternatives[row] == CDS[3 * column : 3 * column + 3]
    scorer = Scorer(model, tok)
    (one,) = scorer.score_variants({"seq0": CDS + "GA"}, [Variant("seq0", 4, "GCC", "TGG")])
    assert values[alternatives.index("TGG"), 1] == pytest.approx(one.score, abs=1e-6)


def test_wildtype_marginal_scans_match_the_scorer(v2):
    model, tok = v2
    s = saturation_scan(model, tok, CDS, mode="snv", method="wildtype_marginal", window=6)
    alone = Scorer(model, tok, window=6).score_variants(
        {"seq0": CDS}, list(s.variant), method="wildtype_marginal"
    )
    np.testing.assert_allclose(s.score, [a.score for a in alone], atol=1e-6)
    assert s.method == "wildtype_marginal"


def test_long_records_are_scanned_through_windows(v2):
    model, tok = v2
    long = CDS[:-3] * 6 + "TAA"
    scorer = Scorer(model, tok, window=8)
    s = scan(scorer, long, mode="codon", positions=range(20, 24))
    alone = Scorer(model, tok, window=8).score_variants({"seq0": long}, list(s.variant))
    np.testing.assert_allclose(s.score, [a.score for a in alone], atol=1e-6)
    assert sorted(set(s.position.tolist())) == [20, 21, 22, 23]


def test_positions_bases_and_tokenizers_are_checked(v2):
    model, tok = v2
    with pytest.raises(ValueError, match="outside 1..8"):
        saturation_scan(model, tok, CDS, mode="codon", positions=[8, 9])
    with pytest.raises((TypeError, ValueError), match="mode"):  # the type checker or ours
        saturation_scan(model, tok, CDS, mode="protein")  # type: ignore[arg-type]
    s = saturation_scan(model, tok, CDS[:6] + "NNN" + CDS[9:], mode="codon")
    assert s.skipped == (3,) and 3 not in s.position
    soft = KmerTokenizer(k=3, layout="v2", uppercase=True)  # soft-masked input accepted
    s = saturation_scan(model, soft, "acgt", mode="snv", coding=False)
    assert s.ref[:3] == ("A",) * 3 and not any(s.error)
    with pytest.raises(ValueError, match="lowercase"):  # the strict tokenizer refuses it
        saturation_scan(model, tok, "acgt", mode="snv")
    six = KmerTokenizer(k=6)
    with pytest.raises(ValueError, match="one token"):
        saturation_scan(perturbed_model(V2.replace(vocab_size=six.vocab_size)), six, CDS,
                        mode="amino_acid")  # fmt: skip


def _table(path):
    with open(path, encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


@pytest.mark.slow
def test_the_scan_command_writes_a_table_and_a_heatmap_per_record(tmp_path, capsys):
    from codonnt_eqx.cli._main import main

    fasta, out = tmp_path / "g.fa", tmp_path / "scan.tsv"
    fasta.write_text(f">gene/1\n{CDS}\n>short\n{CDS[:9]}\n")
    assert main(["scan", str(fasta), "-o", str(out), "--mode", "amino_acid",
                 "--positions", "2-4,6"]) == 0  # fmt: skip
    rows = _table(out)
    gene = [r for r in rows if r["name"] == "gene/1"]
    assert {int(r["position"]) for r in gene} == {2, 3, 4, 6} and len(gene) == 80
    assert {int(r["position"]) for r in rows if r["name"] == "short"} == {2, 3}
    assert all(r["mode"] == "amino_acid" and r["aa_score"] for r in rows)
    err = capsys.readouterr().err
    assert "beyond the end of 1 record" in err and "short (3 codons)" in err
    heatmaps = sorted(p.name for p in (tmp_path / "scan_heatmaps").iterdir())
    assert heatmaps == ["gene_1.png", "short.png"]
    assert (tmp_path / "scan_heatmaps" / "short.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    pq = pytest.importorskip("pyarrow.parquet")
    table = tmp_path / "scan.parquet"
    assert main(["scan", str(fasta), "-o", str(table), "--no-heatmaps", "--positions", "1-2"]) == 0
    t = pq.read_table(table).to_pydict()
    assert t["mode"][0] == "snv" and len(t["name"]) == 2 * 2 * 3
    assert not (tmp_path / "scan_heatmaps.parquet").exists()


def test_the_scan_command_refuses_bad_input_before_writing(tmp_path, capsys):
    from codonnt_eqx.cli._main import main

    fasta, out = tmp_path / "g.fa", tmp_path / "scan.tsv"
    fasta.write_text(f">g\n{CDS}\n")
    with pytest.raises(SystemExit):
        main(["scan", str(fasta), "-o", str(out), "--positions", "5-2"])
    assert "low-high" in capsys.readouterr().err
    assert main(["scan", str(fasta), "-o", str(tmp_path / "scan.csv")]) == 1
    assert "*.tsv or *.parquet" in capsys.readouterr().err
    assert main(["scan", str(fasta), "-o", str(out), "--positions", "900-901"]) == 1
    assert "no record" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "scan_heatmaps").exists()

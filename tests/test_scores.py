"""Likelihood scores against hand-computed masked log-probabilities (float64 NumPy), variant
checks and consequences, the variant table reader."""

import jax.numpy as jnp
import numpy as np
import pytest

from codonnt_eqx import (
    InputError,
    Scorer,
    Variant,
    pseudo_log_likelihood,
    read_variants,
    score_variants,
)
from codonnt_eqx.inference._consequence import consequence, looks_coding
from helpers import TOKENIZERS, V2, perturbed_model

CDS = "ATGGCCAAACTGGGTTTCGATTAA"  # M A K L G F D *


@pytest.fixture(scope="module")
def v2():
    return perturbed_model(V2), TOKENIZERS[V2]


def _log_softmax64(logits) -> np.ndarray:
    x = np.asarray(logits, np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def _masked_log_probs(model, tok, sequence, positions) -> np.ndarray:
    """float64 log-softmax at token `positions` (with <cls> at 0) with those tokens masked."""
    ids = np.asarray(tok.encode(sequence))
    ids[list(positions)] = tok.mask_id
    return _log_softmax64(model(jnp.asarray(ids)).logits)[list(positions)]


def test_pseudo_log_likelihood_masks_each_token_in_turn(v2):
    model, tok = v2
    seq = CDS + "GA"  # two single-base tokens at the end
    ids = tok.encode(seq)
    ll = pseudo_log_likelihood(model, tok, seq)
    want = [_masked_log_probs(model, tok, seq, [t])[0, ids[t]] for t in range(1, len(ids))]
    np.testing.assert_allclose(ll.log_probs, want, atol=1e-4)
    assert ll.total == pytest.approx(sum(want), abs=1e-3) and ll.method == "masked"
    np.testing.assert_array_equal(ll.spans, np.array(tok.encode_with_spans(seq)[1][1:]))


def test_one_pass_approximation_reads_the_unmasked_logits(v2):
    model, tok = v2
    ids = tok.encode(CDS)
    ll = pseudo_log_likelihood(model, tok, CDS, method="one_pass_unmasked")
    lp = _log_softmax64(model(jnp.asarray(ids)).logits)
    np.testing.assert_allclose(ll.log_probs, lp[np.arange(1, len(ids)), ids[1:]], atol=1e-4)
    assert ll.method == "one_pass_unmasked"


def test_a_long_sequences_likelihood_covers_every_token_once(v2):
    model, tok = v2
    seq = (CDS * 4)[:-1]
    ll = Scorer(model, tok, window=9, overlap=3).pseudo_log_likelihood(seq)
    assert len(ll.log_probs) == len(tok.encode(seq)) - 1
    assert np.all(np.isfinite(ll.log_probs)) and np.all(ll.log_probs < 0)


def test_snv_score_is_the_masked_log_likelihood_ratio(v2):
    model, tok = v2
    # position 8 (1-based) is the 2nd base of codon 3 (AAA, token 3 after <cls>)
    (s,) = score_variants(model, tok, {"gene": CDS}, [Variant("gene", 8, "A", "T")])
    lp = _masked_log_probs(model, tok, CDS, [3])[0]
    ref_id, alt_id = tok.token_to_id("AAA"), tok.token_to_id("ATA")
    assert s.error is None and s.masked_tokens == 1 and s.method == "masked_marginal"
    assert s.ref_log_prob == pytest.approx(lp[ref_id], abs=1e-4)
    assert s.alt_log_prob == pytest.approx(lp[alt_id], abs=1e-4)
    assert s.score == pytest.approx(lp[alt_id] - lp[ref_id], abs=1e-4)
    assert s.consequence == "missense"  # K -> I


def test_a_change_across_two_codons_masks_both(v2):
    model, tok = v2
    (s,) = score_variants(model, tok, {"gene": CDS}, [Variant("gene", 6, "CA", "TG")])
    lp = _masked_log_probs(model, tok, CDS, [2, 3])
    ids = [tok.token_to_id(c) for c in ("GCC", "AAA", "GCT", "GAA")]
    assert s.masked_tokens == 2
    assert s.score == pytest.approx(
        lp[0, ids[2]] + lp[1, ids[3]] - lp[0, ids[0]] - lp[1, ids[1]], abs=1e-4
    )


def test_variants_are_checked_against_the_reference(v2):
    model, tok = v2
    variants = [
        Variant("gene", 4, "T", "A"),  # the sequence has G there
        Variant("nope", 1, "A", "C"),
        Variant("gene", 40, "A", "C"),
        Variant("gene", 4, "G", "G"),
    ]
    results = score_variants(model, tok, {"gene": CDS}, variants)
    assert all(r.score is None for r in results)
    assert "ref mismatch: gene has 'G' at 4..4, the variant says 'T'" in results[0].error
    assert "no sequence named 'nope'" in results[1].error
    assert "outside gene" in results[2].error
    assert "same allele" in results[3].error


def test_indels_in_frame_and_frameshifts(v2):
    model, tok = v2
    long_cds = "ATG" + "GCCAAACTG" * 10 + "TAA"
    variants = [
        Variant("gene", 4, "GCC", "-"),  # one codon deleted: token counts differ
        Variant("gene", 5, "C", "-"),  # a frameshift changes every codon downstream
    ]
    inframe, frameshift = Scorer(model, tok).score_variants({"gene": long_cds}, variants)
    assert inframe.error is None and inframe.method == "two_contexts"
    assert inframe.consequence == "inframe_indel" and np.isfinite(inframe.score)
    assert frameshift.score is None and "changes" in frameshift.error
    assert frameshift.consequence == "frameshift"


@pytest.mark.parametrize(
    "start,ref,alt,expected",
    [
        (5, "C", "T", "synonymous"),  # GCC -> GCT, A -> A
        (3, "G", "A", "missense"),  # GCC -> ACC, A -> T
        (6, "A", "T", "nonsense"),  # AAA -> TAA
        (21, "T", "C", "stop_lost"),  # TAA -> CAA
        (9, "CTG", "TTA", "synonymous"),  # CTG -> TTA, L -> L
        (3, "GCC", "", "inframe_indel"),
        (3, "G", "", "frameshift"),
        (3, "G", "N", "unknown"),
    ],
)
def test_consequences_under_the_standard_code(start, ref, alt, expected):
    assert CDS[start : start + len(ref)] == ref
    assert consequence(CDS, start, ref, alt) == expected


def test_coding_sequences_are_recognised():
    assert looks_coding(CDS) and looks_coding(CDS.lower())
    assert not looks_coding(CDS[:-1]) and not looks_coding("GGG" + CDS[3:])


def test_variant_tables_are_read_with_or_without_a_header(tmp_path):
    table = tmp_path / "v.tsv"
    table.write_text(
        "sequence_name\tposition\tref\talt\n# a comment\ng1\t3\tA\tC\textra\n\ng2\t1\t-\tT\n"
    )
    assert read_variants(table) == [Variant("g1", 3, "A", "C"), Variant("g2", 1, "-", "T")]
    table.write_text("g1\t3\tA\tC\n")
    assert read_variants(table) == [Variant("g1", 3, "A", "C")]
    table.write_text("g1\t3\tA\tC\ng1\tthree\tA\tC\n")
    with pytest.raises(ValueError, match="line 2: position 'three'"):
        read_variants(table)
    table.write_text("g1\tthree\tA\tC\ng1\t3\tA\tC\n")  # not a header: its words are not
    with pytest.raises(InputError, match="line 1: position 'three'"):
        read_variants(table)
    table.write_text("g1\t0\tA\tC\n")
    with pytest.raises(ValueError, match="1-based"):
        read_variants(table)


def test_a_scorer_takes_a_tokenizer_that_refuses_partial_codons():
    from codonnt_eqx import CodonTokenizer

    strict, lenient = CodonTokenizer(partial="error"), CodonTokenizer(partial="keep")
    model = perturbed_model(V2.replace(vocab_size=strict.vocab_size))
    got = Scorer(model, strict, window=6, overlap=2).pseudo_log_likelihood(CDS)
    want = Scorer(model, lenient, window=6, overlap=2).pseudo_log_likelihood(CDS)
    assert len(got.log_probs) == len(CDS) // 3
    np.testing.assert_allclose(got.log_probs, want.log_probs, atol=1e-6)
    ids = strict.encode(CDS)  # one window holds it all: each token masked in turn
    whole = Scorer(model, strict).pseudo_log_likelihood(CDS)
    direct = [_masked_log_probs(model, strict, CDS, [t])[0, ids[t]] for t in range(1, len(ids))]
    np.testing.assert_allclose(whole.log_probs, direct, atol=1e-4)


# The standard code written out here, independently of the package's table.
_AA = "FFLLSSSSYY**CC*WLLLLPPPPHHQQRRRRIIIMTTTTNNKKSSRRVVVVAAAADDEEGGGG"
_CODE = {a + b + c: _AA[16 * i + 4 * j + k] for i, a in enumerate("TCAG")
         for j, b in enumerate("TCAG") for k, c in enumerate("TCAG")}  # fmt: skip


@pytest.mark.parametrize(
    "position, ref, alt",
    [(5, "C", "A"), (6, "C", "T"), (7, "A", "T"), (11, "T", "A"), (22, "T", "C"), (24, "A", "G")],
    ids=["missense", "synonymous", "nonsense", "missense-L", "stop_lost", "stop-to-stop"],
)
def test_amino_acid_scores_sum_the_codons_of_each_amino_acid(v2, position, ref, alt):
    model, tok = v2
    (s,) = score_variants(model, tok, {"g": CDS}, [Variant("g", position, ref, alt)])
    codon = (position - 1) // 3
    lp = _masked_log_probs(model, tok, CDS, [codon + 1])[0]  # <cls> first
    mutated = CDS[: position - 1] + alt + CDS[position:]
    ref_aa, alt_aa = (
        _CODE[CDS[3 * codon : 3 * codon + 3]],
        _CODE[mutated[3 * codon : 3 * codon + 3]],
    )

    def log_p(aa):  # log P(amino acid): every codon of it, as the tokenizer numbers them
        return np.logaddexp.reduce([lp[tok.token_to_id(c)] for c, a in _CODE.items() if a == aa])

    assert s.aa_score == pytest.approx(log_p(alt_aa) - log_p(ref_aa), abs=1e-4)
    if ref_aa == alt_aa:
        assert s.aa_score == 0.0  # exactly: the same codons on both sides
    else:
        assert s.aa_score != pytest.approx(s.score, abs=1e-6)  # not the codon-level score


def test_amino_acid_scores_need_one_whole_codon_token(v2):
    model, tok = v2
    variants = [
        Variant("g", 6, "CA", "TT"),  # two codons
        Variant("g", 10, "CTG", "-"),  # an in-frame deletion
    ]
    scores = score_variants(model, tok, {"g": CDS}, variants)
    assert [s.aa_score for s in scores] == [None, None]
    # Not a coding sequence: no consequence and no amino acids.
    (s,) = score_variants(model, tok, {"g": CDS}, [Variant("g", 5, "C", "A")], coding=False)
    assert s.consequence == "" and s.aa_score is None


def test_variants_masking_the_same_tokens_share_one_pass_with_the_same_scores(v2):
    model, tok = v2
    codon = CDS[3:6]  # GCC, bases 4-6
    alts = [a + b + c for a in "ACGT" for b in "ACGT" for c in "ACGT" if a + b + c != codon]
    variants = [Variant("g", 4, codon, alt) for alt in alts]  # all 63 other codons
    variants += [Variant("g", 10, "C", "A"), Variant("g", 12, "G", "T")]  # one other codon
    scorer = Scorer(model, tok)
    passes = []
    run = scorer.core.run
    scorer.core.run = lambda rows, reduce: passes.append(len(rows)) or run(rows, reduce)
    together = scorer.score_variants({"g": CDS}, variants)
    assert passes == [2]  # one masked row per codon
    single = Scorer(model, tok)
    for v, s in zip(variants, together, strict=True):
        (alone,) = single.score_variants({"g": CDS}, [v])
        assert s.variant == v and s.consequence == alone.consequence
        for field in ("score", "ref_log_prob", "alt_log_prob", "aa_score"):
            assert getattr(s, field) == pytest.approx(getattr(alone, field), abs=1e-6), field


def test_wildtype_marginals_read_both_alleles_from_the_unmasked_reference(v2):
    model, tok = v2
    variants = [Variant("g", 5, "C", "A"), Variant("g", 8, "A", "T"), Variant("g", 6, "CA", "TT")]
    scorer = Scorer(model, tok)
    passes = []
    run = scorer.core.run
    scorer.core.run = lambda rows, reduce: passes.append(len(rows)) or run(rows, reduce)
    scores = scorer.score_variants({"g": CDS}, variants, method="wildtype_marginal")
    assert passes == [1]  # one window: one unmasked pass for all three
    ids = tok.encode(CDS)
    lp = _log_softmax64(model(jnp.asarray(ids)).logits)  # nothing masked
    for v, s in zip(variants, scores, strict=True):
        mutated = CDS[: v.position - 1] + v.alt + CDS[v.position - 1 + len(v.ref) :]
        alt_ids = tok.encode(mutated)  # substitutions: as many tokens
        changed = [t for t, (a, b) in enumerate(zip(ids, alt_ids, strict=True)) if a != b]
        want = sum(lp[t, alt_ids[t]] - lp[t, ids[t]] for t in changed)
        assert s.method == "wildtype_marginal" and s.masked_tokens == 0
        assert s.score == pytest.approx(want, abs=1e-4)
    # an indel changes the token count: still two masked contexts
    (indel,) = score_variants(model, tok, {"g": CDS}, [Variant("g", 10, "CTG", "-")],
                              method="wildtype_marginal")  # fmt: skip
    assert indel.method == "two_contexts"
    with pytest.raises((TypeError, ValueError), match="method"):  # the type checker or ours
        score_variants(model, tok, {"g": CDS}, variants, method="wildtype")


def test_the_score_command_takes_the_method(tmp_path, capsys):
    from codonnt_eqx.cli._main import main

    fasta, table, out = tmp_path / "g.fa", tmp_path / "v.tsv", tmp_path / "s.tsv"
    fasta.write_text(f">g\n{CDS}\n")
    table.write_text("g\t5\tC\tA\ng\t6\tC\tT\n")
    assert main(["score", str(fasta), "--variants", str(table), "-o", str(out),
                 "--method", "wildtype_marginal"]) == 0  # fmt: skip
    header, *rows = [line.split("\t") for line in out.read_text().splitlines()]
    column = dict(zip(header, zip(*rows, strict=True), strict=True))
    assert column["method"] == ("wildtype_marginal",) * 2
    assert column["aa_score"][1] == "0"  # GCC -> GCT: synonymous
    assert main(["score", str(fasta), "--method", "wildtype_marginal", "-o", str(out)]) == 1
    assert "give --variants" in capsys.readouterr().err
    assert main(["score", str(fasta), "--variants", str(table), "--one-pass", "-o", str(out)]) == 1
    assert "--one-pass is for pseudo-log-likelihoods" in capsys.readouterr().err

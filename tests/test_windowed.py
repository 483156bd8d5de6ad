"""Long sequences in windows: every token's output must come from the window where it is most
central, for scoring (masked and one-pass) and embedding (per token and pooled).

The reference picks each token's window by brute force (the nearest window centre, the earlier
window on a tie, windows every `size - overlap` tokens with the last one moved back to end at
the sequence end) and runs the model on a window row it builds itself, in float64 NumPy
afterwards. So a core that returns, say, the first window's outputs for every window fails.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codonnt_eqx import CodonTokenizer, Embedder, Scorer, Variant, model_config_for, with_options
from codonnt_eqx.inference._windows import plan_windows
from helpers import TOKENIZERS, V1, V2, perturbed_model

RNG = np.random.default_rng(7)
LONG = "ATG" + "".join(RNG.choice(list("ACGT"), size=40 * 3)) + "TAA"  # 42 codons


@pytest.fixture(scope="module")
def v2():
    return with_options(perturbed_model(V2), attention="reference"), TOKENIZERS[V2]


def _starts(num_tokens: int, size: int, overlap: int) -> list[int]:
    if num_tokens <= size:
        return [0]
    starts, s = [], 0
    while s + size < num_tokens:
        starts.append(s)
        s += size - overlap
    starts.append(num_tokens - size)
    return sorted(set(starts))


def _window_of(p: int, starts: list[int], size: int) -> int:
    """The window start in which body token p is most central (earlier window on a tie)."""
    inside = [s for s in starts if s <= p < s + size]
    return min(inside, key=lambda s: (abs(p - (s + (size - 1) / 2)), s))


def _log_softmax64(logits) -> np.ndarray:
    x = np.asarray(logits, np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


@eqx.filter_jit
def _run(model, row):
    out = model(row)
    return out.logits, out.embeddings


def _reference(model, tok, seq, window, overlap, masked):
    """(log-prob of each body token, its embedding) from its own window, by brute force."""
    ids = np.asarray(tok.encode(seq))
    cls, body = ids[:1], ids[1:]
    size = window - 1
    starts = _starts(len(body), size, overlap)
    log_probs, vectors = [], []
    for p in range(len(body)):
        s = _window_of(p, starts, size)
        row = np.r_[cls, body[s : s + size]].astype(np.int32)
        if masked:
            row[1 + p - s] = tok.mask_id
        logits, embeddings = _run(model, jnp.asarray(row))
        log_probs.append(_log_softmax64(logits)[1 + p - s, body[p]])
        vectors.append(np.asarray(embeddings)[1 + p - s])
    return np.array(log_probs), np.array(vectors), starts


@pytest.mark.parametrize("masked", [True, False])
@pytest.mark.parametrize(("window", "overlap"), [(9, 3), (12, 5), (7, 0)])
def test_windowed_log_likelihoods_come_from_each_tokens_own_window(v2, masked, window, overlap):
    model, tok = v2
    want, _, starts = _reference(model, tok, LONG, window, overlap, masked)
    assert len(starts) >= 4  # several windows, the last one moved back
    scorer = Scorer(model, tok, window=window, overlap=overlap)
    got = scorer.pseudo_log_likelihood(LONG) if masked else scorer.one_pass_log_likelihood(LONG)
    np.testing.assert_allclose(got.log_probs, want, atol=2e-4)


@pytest.mark.parametrize(("window", "overlap"), [(9, 3), (10, 0)])
def test_windowed_embeddings_come_from_each_tokens_own_window(v2, window, overlap):
    model, tok = v2
    _, want, _ = _reference(model, tok, LONG, window, overlap, masked=False)
    per_token = Embedder(model, tok, pooling="none", window=window, overlap=overlap)
    (got,) = list(per_token([LONG]))
    np.testing.assert_allclose(got.vectors, want, atol=2e-5)
    (mean,) = list(Embedder(model, tok, window=window, overlap=overlap)([LONG]))
    np.testing.assert_allclose(mean.vectors, want.mean(axis=0), atol=2e-5)
    (biggest,) = list(Embedder(model, tok, pooling="max", window=window, overlap=overlap)([LONG]))
    np.testing.assert_allclose(biggest.vectors, want.max(axis=0), atol=2e-5)


@settings(max_examples=60, deadline=None)
@given(
    num_tokens=st.integers(1, 80),
    size=st.integers(1, 20),
    data=st.data(),
)
def test_the_window_plan_matches_the_brute_force_rule(num_tokens, size, data):
    overlap = data.draw(st.integers(0, size - 1))
    plan = plan_windows(num_tokens, size, overlap)
    starts = _starts(num_tokens, size, overlap)
    assert plan.start.tolist() == starts
    owner = [_window_of(p, starts, size) for p in range(num_tokens)]
    got = [-1] * num_tokens  # no window: -1, never a start
    for s, (lo, hi) in zip(plan.start.tolist(), plan.keep.tolist(), strict=True):
        for p in range(lo, hi):
            got[p] = s
    assert got == owner


def test_a_windowed_scorer_and_embedder_take_a_tokenizer_that_refuses_partial_codons():
    strict = CodonTokenizer(partial="error")
    model = perturbed_model(model_config_for(strict, V2))
    scorer = Scorer(model, strict, window=6, overlap=2)
    assert len(scorer.one_pass_log_likelihood(LONG).log_probs) == len(LONG) // 3
    (e,) = list(Embedder(model, strict, pooling="none", window=6, overlap=2)([LONG]))
    assert e.vectors.shape[0] == len(LONG) // 3
    with pytest.raises(ValueError):
        scorer.one_pass_log_likelihood(LONG[:-1])  # a partial codon: refused, not dropped


def test_the_model_is_run_with_the_entry_points_run_options(v2):
    model, tok = v2
    jax.clear_caches()
    scorer = Scorer(model, tok, window=9, overlap=3, dtype="bfloat16")
    assert scorer.model.options.dtype == "bfloat16"
    assert scorer.model.options.attention == "reference"  # kept from the model
    low = scorer.one_pass_log_likelihood(LONG).log_probs
    high = Scorer(model, tok, window=9, overlap=3).one_pass_log_likelihood(LONG).log_probs
    assert not np.allclose(low, high, atol=1e-6) and np.allclose(low, high, atol=0.2)


@pytest.mark.parametrize(
    ("num_tokens", "size", "overlap"),
    [(0, 4, 0), (5, 0, 0), (0, 0, 0), (5, 4, 4), (5, 4, -1), (5, 1, 1)],
)
def test_the_window_plan_refuses_bad_arguments(num_tokens, size, overlap):
    with pytest.raises(ValueError):
        plan_windows(num_tokens, size, overlap)


def test_the_window_plan_takes_the_edge_cases():
    assert plan_windows(1, 1, 0).keep.tolist() == [[0, 1]]
    assert plan_windows(3, 3, 2).start.tolist() == [0]  # fits: one window, overlap unused
    assert plan_windows(4, 3, 2).start.tolist() == [0, 1]


@pytest.mark.parametrize("codon", [1, 20, 40])  # near the start, inside, near the end
def test_a_windowed_variant_is_scored_in_the_window_centred_on_it(v2, codon):
    model, tok = v2
    size = 8  # window 9 with <cls>
    position = 3 * codon + 2  # 1-based: the codon's middle base
    ref = LONG[position - 1]
    alt = "A" if ref != "A" else "C"
    (score,) = Scorer(model, tok, window=size + 1, overlap=2).score_variants(
        {"g": LONG}, [Variant("g", position, ref, alt)]
    )
    body = np.asarray(tok.encode(LONG))[1:]
    start = min(max(0, codon - size // 2), len(body) - size)  # centred, kept inside
    row = np.r_[tok.cls_id, body[start : start + size]].astype(np.int32)
    row[1 + codon - start] = tok.mask_id
    logits, _ = _run(model, jnp.asarray(row))
    lp = _log_softmax64(logits)[1 + codon - start]
    mutated = LONG[: position - 1] + alt + LONG[position:]
    alt_id = np.asarray(tok.encode(mutated))[1 + codon]
    assert score.error is None and score.masked_tokens == 1
    assert score.score == pytest.approx(lp[alt_id] - lp[body[codon]], abs=2e-4)


def test_the_default_window_and_overlap(v2):
    model, tok = v2
    scorer = Scorer(model, tok, window=13)
    assert (scorer.window, scorer.overlap) == (13, 3)  # a quarter of the 12 body tokens
    assert Embedder(model, tok).window == 1000  # Codon-NT's training length (rotary)
    learned = with_options(perturbed_model(V1))
    assert Embedder(learned, TOKENIZERS[V1]).window == V1.max_positions

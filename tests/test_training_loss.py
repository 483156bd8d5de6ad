"""Masked-LM loss and metrics against a float64 NumPy implementation, and the bits per
nucleotide of predictors whose answer is known in closed form."""

import functools
import math

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given

from codonnt_eqx import KmerTokenizer
from codonnt_eqx.training._loss import (
    LossMetrics,
    masked_lm_loss,
    masked_lm_metrics,
    nucleotides_per_token,
    summarise,
)

TOK = KmerTokenizer(3)
NUCLEOTIDES = nucleotides_per_token(TOK)
VOCAB = TOK.vocab_size
KMER_IDS = np.array([TOK.token_to_id(t) for t in TOK.vocabulary if len(t) == 3])
SINGLE_IDS = np.array([TOK.token_to_id(t) for t in "ATCGN"])
# Jitted once per shape: eager dispatch of every op would compile each op separately.
METRICS = jax.jit(functools.partial(masked_lm_metrics, nucleotides=NUCLEOTIDES))
LOSS = jax.jit(masked_lm_loss)


def reference(logits, targets, selected, nucleotides):
    """float64 NumPy: (loss_sum, num_selected, num_correct, nucleotides)."""
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_z = np.log(np.exp(shifted).sum(axis=-1))
    nll = log_z - np.take_along_axis(shifted, targets[..., None], axis=-1)[..., 0]
    correct = logits.argmax(axis=-1) == targets
    return (
        float(nll[selected].sum()),
        int(selected.sum()),
        int((correct & selected).sum()),
        int(nucleotides[targets][selected].sum()),
    )


def test_nucleotides_per_token_is_the_decoded_length():
    for layout, k in [("v2", 3), ("v1", 2), ("v2", 1)]:
        tok = KmerTokenizer(k, layout=layout)
        got = nucleotides_per_token(tok)
        assert got.dtype == np.int32 and got.shape == (tok.vocab_size,)
        # decode() drops special tokens and spells the others: an independent path.
        expected = [len(tok.decode([i])) for i in range(tok.vocab_size)]
        np.testing.assert_array_equal(got, expected)
    assert NUCLEOTIDES.sum() == 64 * 3 + 5


@st.composite
def batches(draw):
    # Few distinct shapes (each compiles once; the other tests reuse them), free values.
    shape = draw(st.sampled_from([(12,), (3, 12), (2, 3, 1)]))
    return shape, draw(st.integers(0, 2**32 - 1))


@given(batch=batches(), scale=st.sampled_from([0.1, 3.0, 30.0]))
def test_metrics_match_numpy(batch, scale):
    shape, seed = batch
    rng = np.random.default_rng(seed)
    logits = (scale * rng.normal(size=shape + (VOCAB,))).astype(np.float32)
    targets = rng.integers(0, VOCAB, size=shape).astype(np.int32)
    selected = rng.random(shape) < 0.4
    metrics = METRICS(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(selected))
    loss_sum, num_selected, num_correct, nucleotides = reference(
        logits, targets, selected, NUCLEOTIDES
    )
    assert metrics.loss_sum.shape == () and metrics.loss_sum.dtype == jnp.float32
    np.testing.assert_allclose(float(metrics.loss_sum), loss_sum, rtol=1e-5, atol=1e-5)
    assert int(metrics.num_selected) == num_selected
    assert int(metrics.num_correct) == num_correct
    assert int(metrics.nucleotides) == nucleotides
    loss = LOSS(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(selected))
    np.testing.assert_allclose(float(loss), loss_sum / max(num_selected, 1), rtol=1e-5, atol=1e-6)
    summary = summarise(metrics)
    if num_selected:
        np.testing.assert_allclose(summary["loss"], loss_sum / num_selected, rtol=1e-5)
        assert summary["accuracy"] == num_correct / num_selected
    if nucleotides:
        np.testing.assert_allclose(
            summary["bits_per_nucleotide"], loss_sum / math.log(2) / nucleotides, rtol=1e-5
        )


def test_uniform_over_3mers_is_two_bits_per_nucleotide():
    # A predictor uniform over the 64 3-mers (nothing else possible) pays log2(64) = 6 bits per
    # 3-mer: 2 bits per nucleotide, the entropy of a uniform base.
    rng = np.random.default_rng(0)
    logits = np.full((3, 12, VOCAB), -np.inf, np.float32)
    logits[..., KMER_IDS] = 1.7
    targets = rng.choice(KMER_IDS, (3, 12)).astype(np.int32)
    selected = rng.random((3, 12)) < 0.5
    metrics = METRICS(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(selected))
    summary = summarise(metrics)
    assert summary["bits_per_nucleotide"] == pytest.approx(2.0, rel=1e-6)
    assert summary["loss"] == pytest.approx(math.log(64), rel=1e-6)
    assert int(metrics.nucleotides) == 3 * selected.sum()


def test_uniform_over_bases_on_single_tokens_is_two_bits_per_nucleotide():
    # Single-base tokens: uniform over A T C G is 2 bits for one nucleotide. Mixed with 3-mers
    # predicted uniformly the total stays 2 bits per nucleotide.
    logits = np.full((3, 12, VOCAB), -np.inf, np.float32)
    logits[0][..., KMER_IDS] = 0.0
    logits[1][..., SINGLE_IDS[:4]] = -3.0
    logits[2] = 0.0
    targets = np.full((3, 12), TOK.pad_id, np.int32)
    targets[:2, :6] = [KMER_IDS[:6], SINGLE_IDS[[0, 1, 2, 3, 0, 1]]]
    selected = targets != TOK.pad_id
    metrics = METRICS(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(selected))
    assert int(metrics.nucleotides) == 6 * 3 + 6
    assert summarise(metrics)["bits_per_nucleotide"] == pytest.approx(2.0, rel=1e-6)


def test_nothing_selected_gives_zeros_and_zero_gradients():
    logits = jnp.asarray(np.random.default_rng(1).normal(size=(3, 12, VOCAB)), jnp.float32)
    targets = jnp.zeros((3, 12), jnp.int32)
    selected = jnp.zeros((3, 12), bool)
    metrics = METRICS(logits, targets, selected)
    assert float(metrics.loss_sum) == 0.0 and int(metrics.num_selected) == 0
    assert summarise(metrics) == {"loss": 0.0, "accuracy": 0.0, "bits_per_nucleotide": 0.0}
    loss, grad = jax.jit(jax.value_and_grad(masked_lm_loss))(logits, targets, selected)
    assert float(loss) == 0.0
    assert np.all(np.asarray(grad) == 0.0)


def test_loss_gradient_matches_softmax_minus_one_hot():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(3, 12, VOCAB)).astype(np.float32)
    targets = rng.integers(0, VOCAB, (3, 12)).astype(np.int32)
    selected = rng.random((3, 12)) < 0.5
    grad = jax.jit(jax.grad(masked_lm_loss))(
        jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(selected)
    )
    z = np.exp(logits.astype(np.float64) - logits.max(axis=-1, keepdims=True))
    expected = z / z.sum(axis=-1, keepdims=True) - np.eye(VOCAB)[targets]
    expected = expected * selected[..., None] / selected.sum()
    np.testing.assert_allclose(np.asarray(grad), expected, rtol=1e-4, atol=1e-7)


def test_metrics_add_exactly_across_micro_batches():
    rng = np.random.default_rng(3)
    logits = jnp.asarray(rng.normal(size=(6, 12, VOCAB)), jnp.float32)
    targets = jnp.asarray(rng.choice(np.concatenate([KMER_IDS, SINGLE_IDS]), (6, 12)), jnp.int32)
    selected = jnp.asarray(rng.random((6, 12)) < 0.3)
    whole = METRICS(logits, targets, selected)
    parts = METRICS(logits[:3], targets[:3], selected[:3]) + METRICS(
        logits[3:], targets[3:], selected[3:]
    )
    assert isinstance(parts, LossMetrics)
    for field in ("num_selected", "num_correct", "nucleotides"):
        assert int(getattr(parts, field)) == int(getattr(whole, field))
    np.testing.assert_allclose(float(parts.loss_sum), float(whole.loss_sum), rtol=1e-6)
    # One sequence at a time under vmap, summed, is the batch.
    per_sequence = jax.jit(jax.vmap(METRICS))(logits, targets, selected)
    assert int(per_sequence.num_selected.sum()) == int(whole.num_selected)
    np.testing.assert_allclose(float(per_sequence.loss_sum.sum()), float(whole.loss_sum), rtol=1e-6)


def test_bfloat16_logits_are_scored_in_float32():
    rng = np.random.default_rng(4)
    logits = jnp.asarray(20 * rng.normal(size=(3, 12, VOCAB)), jnp.bfloat16)
    targets = jnp.asarray(rng.integers(0, VOCAB, (3, 12)), jnp.int32)
    selected = jnp.ones((3, 12), bool)
    low = METRICS(logits, targets, selected)
    high = METRICS(logits.astype(jnp.float32), targets, selected)
    assert low.loss_sum.dtype == jnp.float32
    np.testing.assert_allclose(float(low.loss_sum), float(high.loss_sum), rtol=1e-6)
    assert int(low.num_correct) == int(high.num_correct)


class _Declared(KmerTokenizer):
    """The Codon-NT tokenizer declaring other `token_nucleotides` (what the loss reads)."""

    def __init__(self, token_nucleotides):
        super().__init__(3)
        self._declared = token_nucleotides

    @property
    def token_nucleotides(self):
        return self._declared


_GOOD = np.asarray(TOK.token_nucleotides)
_SPECIAL = sorted(TOK.special_ids)


def _changed(index, value):
    out = _GOOD.copy()
    out[index] = value
    return out


@pytest.mark.parametrize(
    "declared",
    [
        _GOOD[:-1],  # too short
        np.r_[_GOOD, 3],  # too long
        _GOOD[None],  # not one-dimensional
        _GOOD.astype(np.float64),  # not integers
        _changed(-1, -1),  # negative
        _changed(_SPECIAL[0], 1),  # a special token that adds a base
        _changed(_SPECIAL[-1], 3),  # another special
    ],
    ids=["short", "long", "2d", "float", "negative", "special", "last-special"],
)
def test_nucleotides_per_token_refuses_what_a_tokenizer_declares_wrongly(declared):
    with pytest.raises(ValueError):
        nucleotides_per_token(_Declared(declared))


def test_nucleotides_per_token_takes_a_well_declared_tokenizer():
    got = nucleotides_per_token(_Declared(_GOOD.astype(np.int64)))
    assert got.dtype == np.int32 and got.tolist() == _GOOD.tolist()

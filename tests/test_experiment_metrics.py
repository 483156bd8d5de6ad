"""Held-out bits per nucleotide of the tokenization comparison, against values computed by
hand for a model whose predictions are known."""

import math

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest

from codonnt_eqx import CodonTokenizer, KmerTokenizer, NucleotideTokenizer, OverlappingKmerTokenizer
from codonnt_eqx.experiments._tokenizations import masked_bits_per_nucleotide


class _Out(eqx.Module):
    logits: jnp.ndarray


class Fixed(eqx.Module):
    """A 'model' predicting the same distribution (`logits`) at every position."""

    logits: jnp.ndarray

    def __call__(self, tokens):
        return _Out(jnp.broadcast_to(self.logits, (tokens.shape[0], self.logits.shape[0])))


def windows(n=12, length=120, seed=0):
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list("ACGT"), size=length)) for _ in range(n)]


@pytest.mark.parametrize(
    "tokenizer, per_token_nt",
    [(NucleotideTokenizer(), 1), (KmerTokenizer(3), 3), (CodonTokenizer(), 3)],
)
def test_uniform_prediction_costs_log2_vocab_per_token(tokenizer, per_token_nt):
    uniform = Fixed(jnp.zeros(tokenizer.vocab_size))
    bits = masked_bits_per_nucleotide(uniform, tokenizer, windows(), rate=0.15, seed=0)
    assert bits == pytest.approx(math.log2(tokenizer.vocab_size) / per_token_nt, rel=1e-6)


def test_overlapping_kmers_are_scored_per_hidden_base():
    tok = OverlappingKmerTokenizer(3)
    # uniform over the vocabulary: a first base is A with probability 16 / vocab
    uniform = Fixed(jnp.zeros(tok.vocab_size))
    bits = masked_bits_per_nucleotide(uniform, tok, windows(), rate=0.15, seed=0)
    assert bits == pytest.approx(-math.log2(16 / tok.vocab_size), rel=1e-6)
    # all the mass on k-mers starting with A: exact on A, heavily penalised elsewhere
    logits = np.full(tok.vocab_size, -30.0, np.float32)
    a_first = [i for i, t in enumerate(tok.vocabulary) if t[0] == "A" and len(t) == 3]
    logits[a_first] = 0.0
    seqs = ["A" * 120] * 4
    assert (
        masked_bits_per_nucleotide(Fixed(jnp.asarray(logits)), tok, seqs, rate=0.15, seed=1) < 1e-6
    )
    # the plain per-token cross-entropy would count each hidden base k times; this does not
    good = np.zeros(tok.vocab_size, np.float32)
    good[[i for i, t in enumerate(tok.vocabulary) if t in ("AAA",)]] = 5.0
    once = masked_bits_per_nucleotide(Fixed(jnp.asarray(good)), tok, seqs, rate=0.15, seed=1)
    p_a = np.exp(good)[
        [i for i, t in enumerate(tok.vocabulary) if t[0] == "A" and len(t) == 3]
    ].sum()
    assert once == pytest.approx(-math.log2(p_a / np.exp(good).sum()), rel=1e-5)

"""Packed rows: several sequences in one model row with segment ids give each sequence's own
outputs (positions, attention, token dropout per segment), and the embedder's packing of
records changes nothing but speed."""

from __future__ import annotations

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given

from codonnt_eqx import Embedder, NucleotideTransformer, with_options
from codonnt_eqx.inference._batching import pack_rows
from helpers import TOKENIZERS, V1, V2, V2_RESCALED, perturbed_model

ATOL = 2e-5


def _rows(config, lengths, seed=0, masks=True):
    """Token rows of random sequences (with <cls>), a few tokens set to <mask>."""
    rng = np.random.default_rng(seed)
    tok = TOKENIZERS[V1] if config.positional_embedding == "learned" else TOKENIZERS[V2]
    out = []
    for n in lengths:
        ids = np.asarray(tok.encode("".join(rng.choice(list("ACGT"), size=n))), np.int32)
        if masks:
            hit = rng.random(len(ids)) < 0.2
            hit[0] = False
            ids = np.where(hit, config.mask_token_id, ids)
        out.append(ids)
    return out


def _packed(rows, length, pad_id):
    tokens = np.full(length, pad_id, np.int32)
    segments = np.full(length, len(rows), np.int32)
    offset = 0
    for i, r in enumerate(rows):
        tokens[offset : offset + len(r)] = r
        segments[offset : offset + len(r)] = i
        offset += len(r)
    return tokens, segments


@pytest.mark.parametrize(
    "config",
    [V2, V2_RESCALED, V1, V2.replace(token_dropout=True)],
    ids=["v2", "v2-rescaled", "v1-learned", "v2-token-dropout"],
)
def test_a_packed_row_gives_each_sequence_its_own_outputs(config):
    model = perturbed_model(config)
    rows = _rows(config, (40, 9, 27) if config.positional_embedding == "rotary" else (20, 9, 6))
    total = sum(len(r) for r in rows)
    tokens, segments = _packed(rows, total + 5, config.pad_token_id)
    maps = [(0, 0), (config.num_layers - 1, 1)]

    def run(t, s):
        return model(t, segment_ids=s, hidden_states=True, attention_maps=maps)

    out = jax.jit(run)(jnp.asarray(tokens), jnp.asarray(segments))
    offset = 0
    for r in rows:
        alone = model(jnp.asarray(r), hidden_states=True, attention_maps=maps)
        part = slice(offset, offset + len(r))
        np.testing.assert_allclose(out.logits[part], alone.logits, atol=ATOL, rtol=1e-5)
        for a, b in zip(out.hidden_states, alone.hidden_states, strict=True):
            np.testing.assert_allclose(a[part], b, atol=ATOL, rtol=1e-5)
        for key in maps:
            np.testing.assert_allclose(
                out.attention_maps[key][part, part], alone.attention_maps[key], atol=1e-6
            )
            assert np.all(
                np.asarray(out.attention_maps[key][part])[
                    :, np.r_[:offset, offset + len(r) : total]
                ]
                == 0
            )
        offset += len(r)
    assert np.all(np.asarray(out.logits[total:]) == 0)  # pads


def test_gradients_through_a_packed_row_are_each_sequences_own():
    model = perturbed_model(V2)
    rows = _rows(V2, (30, 15), masks=False)
    tokens, segments = _packed(rows, 50, V2.pad_token_id)

    def loss(m, t, s, part):
        return jnp.sum(m(t, segment_ids=s).logits[part] ** 2)

    packed = jax.grad(loss)(model, jnp.asarray(tokens), jnp.asarray(segments), slice(0, 11))
    alone = jax.grad(lambda m: jnp.sum(m(jnp.asarray(rows[0])).logits ** 2))(model)
    for a, b in zip(jax.tree.leaves(packed), jax.tree.leaves(alone), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4 * float(np.abs(b).max()), rtol=1e-4)


def test_segment_ids_must_be_non_decreasing_eagerly_and_give_nan_under_jit():
    model = perturbed_model(V2)
    tokens, segments = _packed(_rows(V2, (12, 12)), 12, V2.pad_token_id)
    bad = segments.copy()
    bad[-1] = 0
    with pytest.raises(ValueError, match="non-decreasing"):
        model(jnp.asarray(tokens), segment_ids=jnp.asarray(bad))
    out = jax.jit(lambda t, s: model(t, segment_ids=s).embeddings)(tokens, bad)
    assert np.all(np.isnan(out))
    with pytest.raises((ValueError, TypeError)):  # TypeError: jaxtyping's check under beartype
        model(jnp.asarray(tokens), segment_ids=jnp.asarray(segments[:-1]))
    with pytest.raises(ValueError, match="does not take segment_ids"):
        with_options(model, attention="pallas")(jnp.asarray(tokens), segment_ids=segments)


@given(st.lists(st.integers(1, 120), max_size=60), st.integers(1, 100))
def test_pack_rows_places_every_row_once_within_capacity(lengths, capacity):
    bins = pack_rows(np.array(lengths, np.int64), capacity)
    assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
    fills = [sum(lengths[i] for i in b) for b in bins]
    for b, fill in zip(bins, fills, strict=True):
        assert b == sorted(b)
        assert fill <= capacity or len(b) == 1
    # First fit: no two packable bins could have been merged (at most one is half full).
    small = [f for f, b in zip(fills, bins, strict=True) if f <= capacity / 2]
    assert len(small) <= 1


@pytest.mark.parametrize("pooling", ["mean", "max", "cls", "none"])
def test_packed_embeddings_equal_unpacked_ones(pooling):
    model, tok = perturbed_model(V2), TOKENIZERS[V2]
    rng = np.random.default_rng(5)
    seqs = ["".join(rng.choice(list("ACGT"), size=n)) for n in rng.integers(3, 500, 25)]
    options = dict(pooling=pooling, window=64, bucket=16, batch_tokens=256, layers=[0, 2])
    packed = Embedder(model, tok, pack=True, pack_length=48, **options)
    unpacked = Embedder(model, tok, pack=False, **options)
    assert packed.pack and not unpacked.pack
    for a, b in zip(packed(seqs), unpacked(seqs), strict=True):
        assert a.name == b.name and a.vectors.shape == b.vectors.shape
        np.testing.assert_allclose(a.vectors, b.vectors, atol=ATOL, rtol=1e-5)
    assert len(packed.runner.shapes) < len(unpacked.runner.shapes)


def test_packing_is_on_by_default_on_cpu_and_refused_without_segment_support():
    model, tok = NucleotideTransformer(V2, key=jax.random.key(0)), TOKENIZERS[V2]
    assert Embedder(model, tok).pack == (jax.default_backend() == "cpu")
    assert not Embedder(model, tok, attention="pallas").pack
    with pytest.raises(ValueError, match="segment ids"):
        Embedder(model, tok, attention="pallas", pack=True)
    for bad in (0, -3):
        with pytest.raises(ValueError, match="pack_length"):
            Embedder(model, tok, pack_length=bad)

"""The model against an independent float64 NumPy forward written here from the architecture
description (it reads the model's parameter arrays, never its code)."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from codonnt_eqx import KmerTokenizer, ModelConfig, NucleotideTransformer, check_token_ids, preset
from helpers import V1, V2, V2_RESCALED, perturbed_model, token_batch

# ---- the NumPy reference ----------------------------------------------------------------------

_erf = np.vectorize(math.erf)


def np_gelu(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def np_layer_norm(x, ln, eps):
    w, b = (np.asarray(a, np.float64) for a in (ln.weight, ln.bias))
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


def np_linear(x, layer, i=None):
    w = np.asarray(layer.weight if i is None else layer.weight[i], np.float64)
    y = x @ w.T
    if layer.bias is not None:
        y = y + np.asarray(layer.bias if i is None else layer.bias[i], np.float64)
    return y


def np_layer_norm_i(x, ln, i, eps):
    return np_layer_norm(x, type("LN", (), {"weight": ln.weight[i], "bias": ln.bias[i]}), eps)


def np_rotate(x, config):
    """Rotate pairs (i, i + half) by angle position * inv_freq[i]."""
    length, _, dim = x.shape
    half = dim // 2
    base = 10000.0 * config.rotary_rescaling ** (dim / (dim - 2))
    inv_freq = np.array([1.0 / base ** (2 * i / dim) for i in range(half)])
    angle = np.arange(length)[:, None, None] * inv_freq[None, None, :]
    a, b = x[..., :half], x[..., half:]
    return np.concatenate(
        [a * np.cos(angle) - b * np.sin(angle), b * np.cos(angle) + a * np.sin(angle)], axis=-1
    )


def np_forward(model, tokens):
    c = model.config
    eps = c.layer_norm_eps
    is_pad = tokens == c.pad_token_id
    valid = ~is_pad
    x = np.asarray(model.embed, np.float64)[tokens] * c.embed_scale
    if c.token_dropout:
        is_mask = tokens == c.mask_token_id
        x[is_mask] = 0.0
        x *= (1 - 0.15 * 0.8) / (1 - is_mask.sum() / valid.sum())
    if c.positional_embedding == "learned":
        pos = np.where(valid, np.cumsum(valid), 0) + c.pad_token_id
        x = x + np.asarray(model.position_embed, np.float64)[pos]
    if c.emb_layer_norm_before:
        x = np_layer_norm(x, model.emb_layer_norm_before, eps)
    hidden, weights = [x], []
    blocks = model.blocks
    h_, d_ = c.num_heads, c.head_dim
    for i in range(c.num_layers):
        att = blocks.attention
        h = np_layer_norm_i(x, blocks.attention_norm, i, eps)
        q, k, v = (
            np_linear(h, lin, i).reshape(len(tokens), h_, d_)
            for lin in (att.query, att.key, att.value)
        )
        if c.positional_embedding == "rotary":
            q, k = np_rotate(q, c), np_rotate(k, c)
        s = np.einsum("qhd,khd->hqk", q, k) / math.sqrt(d_)
        s = np.where(valid[None, None, :], s, -np.inf)
        p = np.exp(s - s.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        weights.append(p)
        o = np.einsum("hqk,khd->qhd", p, v).reshape(len(tokens), h_ * d_)
        x = x + np_linear(o, att.output, i)
        h = np_linear(np_layer_norm_i(x, blocks.ffn_norm, i, eps), blocks.ffn.fc1, i)
        if c.use_glu:
            a, b = np.split(h, 2, axis=-1)
            h = a / (1 + np.exp(-a)) * b
        else:
            h = np_gelu(h)
        x = x + np_linear(h, blocks.ffn.fc2, i)
        hidden.append(x)
    emb = np_layer_norm(x, model.final_norm, eps)
    hidden[-1] = emb
    head = model.lm_head
    logits = np_linear(
        np_layer_norm(np_gelu(np_linear(emb, head.dense)), head.norm, eps), head.decoder
    )
    logits[is_pad] = 0.0
    return logits, emb, hidden, weights


def assert_close(actual, expected, rtol):
    actual = np.asarray(actual, np.float64)
    assert np.isfinite(actual).all()
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * np.abs(expected).max())


# ---- tests --------------------------------------------------------------------------------------


@pytest.fixture
def without_runtime_typechecks():
    """The tests type-check every call with beartype; users do not. Checks that users rely on
    must hold without it, so switch it off for one test."""
    import jaxtyping

    jaxtyping.config.update("jaxtyping_disable", True)
    yield
    jaxtyping.config.update("jaxtyping_disable", False)


@pytest.mark.parametrize("config", [V2, V2_RESCALED, V1], ids=["v2", "v2-rescaled", "v1"])
def test_forward_matches_numpy_reference(config):
    model = perturbed_model(config)
    tokens = token_batch(config)
    out = jax.jit(jax.vmap(lambda t: model(t, hidden_states=True, attention="reference")))(tokens)
    for b, row in enumerate(tokens):
        logits, emb, hidden, _ = np_forward(model, row)
        valid = row != config.pad_token_id
        assert_close(out.logits[b], logits, 1e-5)
        assert_close(out.embeddings[b][valid], emb[valid], 1e-5)
        assert len(out.hidden_states) == config.num_layers + 1
        for got, want in zip(out.hidden_states, hidden, strict=True):
            assert_close(got[b][valid], want[valid], 1e-5)
        assert (out.logits[b][~valid] == 0).all()
        assert np.isfinite(out.embeddings[b]).all()  # padding positions included


@pytest.mark.parametrize("implementation", ["auto", "xla", "pallas"])
def test_attention_implementations_agree(implementation):
    model = perturbed_model(V2, seed=3)
    tokens = token_batch(V2, seed=3, lengths=(50, 20))
    ref = jax.vmap(lambda t: model(t, attention="reference"))(tokens)
    out = jax.jit(jax.vmap(lambda t: model(t, attention=implementation)))(tokens)
    assert_close(out.logits, np.asarray(ref.logits, np.float64), 1e-5)


@pytest.mark.parametrize("config", [V2_RESCALED, V1], ids=["v2-rescaled", "v1"])
@pytest.mark.parametrize("attention", ["blocked", "pallas"])
def test_attention_maps_match_numpy_and_leave_the_forward_pass_alone(config, attention):
    model = perturbed_model(config, seed=4)
    tokens = token_batch(config, seed=4, lengths=(20, 9))
    asked = [(1, 2), (0, 3), (1, 0)]
    run = jax.jit(
        jax.vmap(
            lambda t, maps: model(t, attention=attention, attention_maps=maps), in_axes=(0, None)
        ),
        static_argnums=1,
    )
    with_maps, without = run(tokens, tuple(asked)), run(tokens, ())
    # The maps are extra outputs: the forward pass is the `attention` one, bit for bit.
    np.testing.assert_array_equal(with_maps.logits, without.logits)
    assert set(with_maps.attention_maps) == set(asked)
    for b, row in enumerate(tokens):
        valid = row != config.pad_token_id
        weights = np_forward(model, row)[3]
        for layer, head in asked:
            got = np.asarray(with_maps.attention_maps[(layer, head)][b])
            assert_close(got[valid], weights[layer][head][valid], 1e-5)
            assert (got[:, ~valid] == 0).all()


def test_bad_attention_map_requests_are_rejected(without_runtime_typechecks):
    model = perturbed_model(V2)
    tokens = jnp.asarray(token_batch(V2)[0])
    for bad in ([(2, 0)], [(0, 4)], [(-1, 0)], [(0.5, 1)], [(0, 1, 2)], [0]):
        with pytest.raises(ValueError, match="outside|pairs"):
            model(tokens, attention_maps=bad)


@given(
    shift=st.integers(0, 500),
    m=st.integers(0, 100),
    n=st.integers(0, 100),
    rescaling=st.sampled_from([1.0, 4.0]),
)
def test_rotary_scores_depend_only_on_relative_position(shift, m, n, rescaling):
    from codonnt_eqx.model._layers import RotaryEmbedding

    rope = RotaryEmbedding(16, rescaling)
    rng = np.random.default_rng(m * 1000 + n)
    q, k = (jnp.asarray(rng.normal(size=(1, 1, 16)), jnp.float32) for _ in range(2))
    cos, sin = rope.tables(700)

    def score(i, j):
        qi = RotaryEmbedding.apply(q, cos[i : i + 1], sin[i : i + 1])
        kj = RotaryEmbedding.apply(k, cos[j : j + 1], sin[j : j + 1])
        return float(jnp.sum(qi * kj))

    assert score(m, n) == pytest.approx(score(m + shift, n + shift), rel=2e-3, abs=2e-3)


def test_rotary_rescaling_changes_the_base_as_specified():
    from codonnt_eqx.model._layers import RotaryEmbedding

    dim, s = 32, 3.0
    got = np.asarray(RotaryEmbedding(dim, s).inverse_frequencies(), np.float64)
    base = 10000 * s ** (dim / (dim - 2))
    np.testing.assert_allclose(got, [base ** (-2 * i / dim) for i in range(dim // 2)], rtol=1e-6)
    plain = np.asarray(RotaryEmbedding(dim, 1.0).inverse_frequencies())
    assert (got[1:] < plain[1:]).all()  # a larger base: lower frequencies, longer wavelengths


def test_grad_with_and_without_remat_agree_and_jit_works():
    model = perturbed_model(V1, seed=5)
    tokens = jnp.asarray(token_batch(V1, seed=5))

    def loss(m, remat):
        out = jax.vmap(lambda t: m(t, remat=remat))(tokens)
        return jnp.mean(jax.nn.logsumexp(out.logits, -1))

    g1 = eqx.filter_jit(eqx.filter_grad(lambda m: loss(m, False)))(model)
    g2 = eqx.filter_jit(eqx.filter_grad(lambda m: loss(m, True)))(model)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert any(float(jnp.abs(a).max()) > 0 for a in jax.tree.leaves(g1))


def test_bfloat16_compute_stays_close_to_float32():
    # Documented tolerance: bfloat16 logits within 5% of the largest float32 logit.
    model = perturbed_model(V2, seed=6)
    tokens = token_batch(V2, seed=6)
    f32 = jax.vmap(model)(tokens).logits
    bf16 = jax.vmap(lambda t: model(t, dtype=jnp.bfloat16))(tokens).logits
    assert bf16.dtype == jnp.float32
    err = float(jnp.max(jnp.abs(bf16 - f32)))
    assert err < 0.05 * float(jnp.max(jnp.abs(f32))), err


def test_padding_in_the_middle_is_an_error():
    model = perturbed_model(V2)
    tokens = jnp.array([3, 10, 1, 12, 1])
    with pytest.raises(Exception, match="right padding"):
        model(tokens)


@pytest.mark.parametrize(
    "name,published",
    [
        ("codon_nt", 50e6),
        ("nt_v2_50m", 50e6),
        ("nt_v2_100m", 100e6),
        ("nt_v2_500m", 500e6),
        ("nt_v1_500m", 500e6),
        ("nt_v1_2b5", 2.5e9),
    ],
)
def test_preset_sizes_match_published(name, published):
    shapes = eqx.filter_eval_shape(NucleotideTransformer, preset(name), key=jr.key(0))
    count = sum(x.size for x in jax.tree.leaves(shapes) if hasattr(x, "size"))
    assert 0.95 * published <= count <= 1.15 * published, count


def test_codon_nt_preset_matches_the_codon_tokenizer():
    c = preset("codon_nt")
    tok = KmerTokenizer(3)
    assert (c.vocab_size, c.embed_dim, c.num_layers, c.num_heads, c.ffn_dim, c.head_dim) == (
        tok.vocab_size,
        512,
        12,
        16,
        2048,
        32,
    )
    assert (c.pad_token_id, c.mask_token_id) == (tok.pad_id, tok.mask_id)


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="divisible"):
        ModelConfig(vocab_size=10, embed_dim=30, num_layers=1, num_heads=4, ffn_dim=8)
    with pytest.raises(ValueError, match="unknown preset"):
        preset("codon_nt_2")


def test_a_new_tokenization_plugs_in_without_touching_the_model():
    from codonnt_eqx import Tokenizer

    class DinucleotideTokenizer:
        """A toy tokenization written outside the package: overlapping 2-mers."""

        vocabulary = ("<pad>", "<mask>", "<cls>", "<unk>") + tuple(
            a + b for a in "ACGT" for b in "ACGT"
        )
        vocab_size, pad_id, mask_id, cls_id, unk_id = 20, 0, 1, 2, 3
        special_ids = frozenset({0, 1, 2, 3})
        mask_span = 2  # overlapping: a masked 2-mer is readable from its neighbours
        token_nucleotides = np.array([0] * 4 + [1] * 16, np.int32)

        def nucleotides_for_tokens(self, tokens):
            return tokens

        def to_config(self):
            return {}

        @classmethod
        def from_config(cls, config):
            return cls()

        def encode(self, sequence):
            return [2] + [
                4 + self.vocabulary[4:].index(sequence[i : i + 2]) for i in range(len(sequence) - 1)
            ]

        def decode(self, ids):
            kmers = [self.vocabulary[i] for i in ids if i >= 4]
            return kmers[0][0] + "".join(k[1] for k in kmers) if kmers else ""

        def batch_encode(self, sequences, length=None):
            rows = [self.encode(s) for s in sequences]
            length = length or max(map(len, rows))
            return np.array([r + [0] * (length - len(r)) for r in rows], np.int32)

        def batch_encode_with_spans(self, sequences, length=None):
            ids = self.batch_encode(sequences, length)
            spans = np.zeros((*ids.shape, 2), np.int32)
            for b, s in enumerate(sequences):
                for t in range(len(s) - 1):
                    spans[b, t + 1] = (t, t + 2)
            return ids, spans

    tok = DinucleotideTokenizer()
    assert isinstance(tok, Tokenizer)
    config = V2.replace(
        vocab_size=tok.vocab_size, pad_token_id=tok.pad_id, mask_token_id=tok.mask_id
    )
    model = NucleotideTransformer(config, key=jr.key(0))
    ids = tok.batch_encode(["ACGTTGCA", "GGA"])
    out = jax.vmap(model)(jnp.asarray(ids))
    assert out.logits.shape == (2, 8, 20)
    assert (out.logits[1, 3:] == 0).all() and tok.decode(ids[0]) == "ACGTTGCA"


# ---- bad input never gives a silent wrong answer -------------------------------------------


@given(bad=st.one_of(st.integers(75, 10_000), st.integers(-10_000, -1)), where=st.integers(0, 7))
def test_out_of_vocabulary_ids_raise_eagerly_naming_the_id(bad, where):
    model = perturbed_model(V2)  # 75-token vocabulary: JAX gathers would clamp silently
    tokens = np.array(token_batch(V2)[2])
    tokens[where] = bad
    with pytest.raises(ValueError, match=f"got {bad} at position {where}"):
        model(jnp.asarray(tokens))


def test_invalid_sequences_get_nan_outputs_under_jit_and_vmap_and_the_others_are_untouched():
    model = perturbed_model(V2)
    tokens = token_batch(V2)
    run = eqx.filter_jit(lambda m, t: jax.vmap(m)(t))
    good = run(model, tokens)
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(good))
    six = KmerTokenizer(6).batch_encode(["ACGTACGTACGTAAAAAA"])[0]  # ids of another vocabulary
    assert six.max() >= V2.vocab_size
    # (row, position, id): past the vocabulary, negative, a pad before real tokens, 6-mer ids
    changes = [(1, slice(3, 4), [75]), (0, slice(5, 6), [-1]), (2, slice(1, 2), [V2.pad_token_id])]
    changes.append((0, slice(0, len(six)), six))
    for row, where, ids in changes:
        bad = tokens.copy()
        bad[row, where] = ids
        out = run(model, jnp.asarray(bad))
        others = np.delete(np.arange(len(tokens)), row)
        for name in ("logits", "embeddings"):
            assert np.isnan(np.asarray(getattr(out, name)[row])).all(), (name, row)
            np.testing.assert_array_equal(getattr(out, name)[others], getattr(good, name)[others])


def test_the_compiled_forward_holds_no_host_callback():
    """Checks on traced input are array operations: a callback would cost a device-to-host
    round trip in every step and make an ahead-of-time compile for an absent GPU fail."""
    model = perturbed_model(V1)  # learned positions: every check present
    tokens = token_batch(V1)
    hlo = eqx.filter_jit(lambda m, t: jax.vmap(m)(t).logits).lower(model, tokens).as_text()
    assert "callback" not in hlo.lower()


@given(bad=st.one_of(st.integers(75, 10_000), st.integers(-10_000, -1)), row=st.integers(0, 2))
def test_check_token_ids_names_the_first_offender(bad, row):
    tokens = np.array(token_batch(V2))
    check_token_ids(tokens, V2)
    tokens[row, 4] = bad
    with pytest.raises(ValueError, match=f"got {bad} at position 4 of sequence {row}"):
        check_token_ids(tokens, V2)


def test_check_token_ids_refuses_a_pad_before_a_real_token():
    tokens = np.array(token_batch(V2))
    tokens[1, 2] = V2.pad_token_id
    with pytest.raises(ValueError, match=r"right padding\); sequence 1"):
        check_token_ids(tokens, V2)


def test_learned_positions_refuse_more_tokens_than_max_positions():
    model = perturbed_model(V1)  # max_positions 40
    fits = np.array([[3] + [5] * 39 + [1] * 5])  # 40 real tokens, padded to 45: fine
    over = np.array([[3] + [5] * 40])
    jax.vmap(model)(fits)
    check_token_ids(fits, V1)
    with pytest.raises(ValueError, match="max_positions = 40"):
        model(jnp.asarray(over[0]))
    with pytest.raises(ValueError, match="max_positions = 40"):
        check_token_ids(over, V1)
    out = eqx.filter_jit(lambda m, t: jax.vmap(m)(t).logits)(model, over)
    assert np.isnan(np.asarray(out)).all()


@pytest.mark.parametrize("shape", [(2, 8), (), (1, 1, 8)])
def test_batched_or_scalar_input_says_to_vmap(shape, without_runtime_typechecks):
    model = perturbed_model(V2)
    with pytest.raises(ValueError, match="one sequence per call; batch with jax.vmap"):
        model(jnp.full(shape, 5))


def test_float_tokens_and_bad_options_are_rejected(without_runtime_typechecks):
    model = perturbed_model(V2)
    tokens = jnp.asarray(token_batch(V2)[0])
    with pytest.raises(TypeError, match="integer ids"):
        model(tokens.astype(jnp.float32))
    with pytest.raises(ValueError, match="attention must be one of"):
        model(tokens, attention="flash")
    for dtype in (jnp.int8, "int32", "bogus", bool):
        with pytest.raises(ValueError, match="dtype must be one of"):
            model(tokens, dtype=dtype)


def test_all_mask_input_with_token_dropout_stays_finite():
    model = perturbed_model(V1)  # token dropout rescales by 1 / (1 - observed mask rate)
    out = model(jnp.full((10,), V1.mask_token_id))
    assert bool(jnp.isfinite(out.logits).all())


_BAD_CONFIG_VALUES = {
    "vocab_size": [0, -1, "75", 75.0, True],
    "embed_dim": [0, None],
    "num_layers": [0, 1.5],
    "num_heads": [0, -4],
    "ffn_dim": [0],
    "key_dim": [0, 2, 3, -6],
    "max_positions": [0, -10],
    "rotary_rescaling": [0.0, -1.0, float("nan"), float("inf"), "2"],
    "layer_norm_eps": [0.0, -1e-5, float("nan")],
    "embed_scale": [0.0, float("inf")],
    "masking_ratio": [-0.1, 1.5],
    "masking_prob": [2.0],
    "use_glu": [1, "yes"],
    "token_dropout": [None],
    "positional_embedding": ["alibi"],
    "ffn_activation": ["relu"],
    "pad_token_id": [-1, 75, 2],  # 2 is the mask id
    "mask_token_id": [100],
    "k_for_kmers": [0],
}


@given(st.sampled_from([(k, v) for k, vs in _BAD_CONFIG_VALUES.items() for v in vs]))
def test_bad_config_values_are_rejected(change):
    name, value = change
    with pytest.raises((ValueError, TypeError), match=name if name != "key_dim" else "key_dim"):
        V2.replace(**{name: value})

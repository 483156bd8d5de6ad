"""MKL's CPU attention (`codonnt_eqx.cpu.mkl_attention`, the cpu-bf16 extra): forward and
gradients against float64 NumPy over shapes, tile edges and key lengths (0 and full
included); padded keys holding NaN; `jit` and `vmap`; the model's choice of it for
`attention="auto"` exactly where it pays. Skips, saying why, where MKL or a compiler is
missing (the kernel itself needs no bfloat16 units, so it is tested on any CPU with MKL)."""

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings

from codonnt_eqx import ModelConfig, NucleotideTransformer, with_options
from codonnt_eqx.cpu import (
    MklGemmUnavailable,
    cpu_vendor,
    mkl_attention,
    mkl_attention_available,
    mkl_attention_pays,
    mkl_gemm_library,
)


@pytest.fixture(scope="module", autouse=True)
def _built():
    try:
        mkl_gemm_library()
    except MklGemmUnavailable as e:
        pytest.skip(str(e))


def numpy_attention(q, k, v, lengths, scale, dout):
    """float64 output and gradients (q, k, v) of sum(out * dout), written out by hand."""
    q, k, v, dout = (np.asarray(x, np.float64) for x in (q, k, v, dout))
    out, dq, dk, dv = (np.zeros_like(q) for _ in range(4))
    for b in range(q.shape[0]):
        n = int(np.clip(lengths[b], 0, q.shape[1]))
        if n == 0:
            continue
        for h in range(q.shape[2]):
            qh, kh, vh, gh = q[b, :, h], k[b, :n, h], v[b, :n, h], dout[b, :, h]
            s = scale * qh @ kh.T
            p = np.exp(s - s.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            out[b, :, h] = p @ vh
            dp = gh @ vh.T
            ds = p * (dp - np.sum(p * dp, axis=1, keepdims=True))
            dq[b, :, h] = scale * ds @ kh
            dk[b, :n, h] = scale * ds.T @ qh
            dv[b, :n, h] = p.T @ gh
    return out, dq, dk, dv


def normal(shape, seed):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def value_and_grads(q, k, v, lengths, dout, scale=None):
    def loss(q, k, v):
        out = mkl_attention(q, k, v, lengths, scale)
        return jnp.sum(out * dout), out

    (_, out), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))(q, k, v)
    return out, *grads


@settings(max_examples=25, deadline=None)
@given(
    batch=st.integers(1, 3),
    length=st.sampled_from([1, 2, 17, 127, 128, 129, 300]),
    heads=st.integers(1, 3),
    dim=st.sampled_from([1, 8, 32, 64]),
    data=st.data(),
)
def test_forward_and_gradients_match_float64(batch, length, heads, dim, data):
    lengths = np.array(
        data.draw(st.lists(st.integers(-2, length + 2), min_size=batch, max_size=batch))
    )
    # 8: scores hundreds apart, so that many probabilities underflow float32 (exp < 2^-126)
    scale = data.draw(st.sampled_from([None, 0.3, 8.0]))
    seed = data.draw(st.integers(0, 2**16))
    shape = (batch, length, heads, dim)
    q, k, v, dout = (normal(shape, seed + i) for i in range(4))
    got = value_and_grads(q, k, v, jnp.asarray(lengths, jnp.int32), dout, scale)
    scale = dim**-0.5 if scale is None else scale
    want = numpy_attention(q, k, v, lengths, scale, dout)
    # float32 throughout: errors of a few ulp per term, relative to the terms' sizes; dS's
    # rounding (dP - delta, which cancels) reaches dQ and dK multiplied by the scale.
    for g, w, gain in zip(got, want, (1, scale, scale, 1), strict=True):
        assert g.dtype == jnp.float32 and g.shape == w.shape
        atol = 2e-5 * max(1.0, gain) * (1 + np.abs(w).max())
        np.testing.assert_allclose(np.asarray(g), w, rtol=2e-4, atol=atol)


@settings(max_examples=15, deadline=None)
@given(length=st.integers(1, 40), seed=st.integers(0, 2**16))
def test_probabilities_are_float32_softmax_to_a_few_ulp(length, seed):
    # Small integer q and k and a power-of-two scale make every score exact in float32, and
    # v = identity (its first columns) makes the output the probabilities themselves: what
    # is left is the kernel's exponential, row sum and division. Scores span up to ~170, so some
    # probabilities underflow (0 below float32's normal range).
    rng = np.random.default_rng(seed)
    q, k = (jnp.asarray(rng.integers(-3, 4, (1, length, 1, 40)), jnp.float32) for _ in "qk")
    v = jnp.eye(length, 40, dtype=jnp.float32)[None, :, None, :]
    out = np.asarray(mkl_attention(q, k, v, None, 0.25), np.float64)[0, :, 0, :length]
    s = 0.25 * np.asarray(q, np.float64)[0, :, 0] @ np.asarray(k, np.float64)[0, :, 0].T
    p = np.exp(s - s.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(out, p, rtol=1e-6, atol=2e-38)


@settings(max_examples=10, deadline=None)
@given(
    length=st.sampled_from([1, 33, 128, 200]),
    dim=st.sampled_from([8, 32]),
    data=st.data(),
)
def test_bfloat16_inputs_match_float64_within_bfloat16_rounding(length, dim, data):
    lengths = np.array(data.draw(st.lists(st.integers(0, length), min_size=2, max_size=2)))
    seed = data.draw(st.integers(0, 2**16))
    q, k, v, dout = (normal((2, length, 2, dim), seed + i).astype(jnp.bfloat16) for i in range(4))
    got = value_and_grads(q, k, v, jnp.asarray(lengths, jnp.int32), dout)
    want = numpy_attention(q, k, v, lengths, dim**-0.5, dout)
    # The probabilities and dS are rounded to bfloat16 (relative 2^-9) before their products,
    # outputs and gradients to bfloat16 after: a few 2^-8 of the largest term.
    for g, w in zip(got, want, strict=True):
        assert g.dtype == jnp.bfloat16 and g.shape == w.shape
        g = np.asarray(g, np.float64)
        np.testing.assert_allclose(g, w, rtol=3e-2, atol=3e-2 * (1 + np.abs(w).max()))


def test_padded_keys_never_reach_outputs_or_gradients_even_as_nan():
    q, k, v, dout = (normal((2, 150, 2, 16), i) for i in range(4))
    lengths = jnp.array([150, 70], jnp.int32)
    poisoned = [x.at[1, 70:].set(jnp.nan) for x in (k, v)]
    clean = value_and_grads(q, k, v, lengths, dout)
    dirty = value_and_grads(q, *poisoned, lengths, dout)
    for a, b in zip(clean, dirty, strict=True):
        assert np.all(np.isfinite(np.asarray(b)))
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=0)
    assert not np.any(np.asarray(dirty[2])[1, 70:]) and not np.any(np.asarray(dirty[3])[1, 70:])


def test_a_sequence_without_valid_keys_gets_zero_output_and_gradients():
    q, k, v, dout = (normal((1, 5, 2, 8), i) for i in range(4))
    for x in value_and_grads(q, k, v, jnp.zeros((1,), jnp.int32), dout):
        np.testing.assert_array_equal(np.asarray(x), 0.0)


def test_vmap_equals_one_call_per_example_and_keeps_the_dtype():
    q, k, v = (normal((3, 1, 40, 2, 8), i).astype(jnp.bfloat16) for i in range(3))
    lengths = jnp.array([[40], [13], [1]], jnp.int32)
    batched = jax.jit(jax.vmap(mkl_attention))(q, k, v, lengths)
    assert batched.dtype == jnp.bfloat16
    for i in range(3):
        np.testing.assert_allclose(
            np.asarray(batched[i], np.float32),
            np.asarray(mkl_attention(q[i], k[i], v[i], lengths[i]), np.float32),
            rtol=1e-6,
        )


def test_gradients_under_nested_vmap_with_shared_keys_match_float64():
    # q batched over two vmapped axes, k and v shared (unbatched), lengths over the outer one.
    q = normal((2, 3, 1, 30, 2, 8), 0)
    k, v = normal((1, 30, 2, 8), 1), normal((1, 30, 2, 8), 2)
    dout = normal((2, 3, 1, 30, 2, 8), 3)
    lengths = jnp.array([[30], [11]], jnp.int32)

    def loss(q, k, v):
        inner = jax.vmap(mkl_attention, in_axes=(0, None, None, None))
        out = jax.vmap(inner, in_axes=(0, None, None, 0))(q, k, v, lengths)
        return jnp.sum(out * dout)

    dq, dk, dv = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(q, k, v)
    want_dk, want_dv = np.zeros(k.shape), np.zeros(v.shape)
    for a in range(2):
        for b in range(3):
            _, wq, wk, wv = numpy_attention(q[a, b], k, v, lengths[a], 8**-0.5, dout[a, b])
            np.testing.assert_allclose(np.asarray(dq[a, b]), wq, rtol=2e-4, atol=2e-5)
            want_dk, want_dv = want_dk + wk, want_dv + wv
    np.testing.assert_allclose(np.asarray(dk), want_dk, rtol=2e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(dv), want_dv, rtol=2e-4, atol=1e-4)


def test_float16_computes_in_float32_and_returns_float16():
    q, k, v, dout = (normal((1, 50, 2, 16), i).astype(jnp.float16) for i in range(4))
    lengths = jnp.array([37], jnp.int32)
    got = value_and_grads(q, k, v, lengths, dout)
    want = numpy_attention(q, k, v, lengths, 0.25, dout)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == jnp.float16
        np.testing.assert_allclose(np.asarray(g, np.float64), w, rtol=5e-3, atol=5e-3)


def test_a_nan_query_stays_nan_in_its_own_row_only_in_bfloat16():
    # dS rounded to bfloat16 must keep a NaN a NaN (not carry it into zero or infinity).
    q, k, v, dout = (normal((1, 20, 1, 8), i).astype(jnp.bfloat16) for i in range(4))
    q = q.at[0, 3].set(jnp.nan)
    out, dq, dk, dv = value_and_grads(q, k, v, jnp.array([20], jnp.int32), dout)
    out, dq = np.asarray(out, np.float32), np.asarray(dq, np.float32)
    assert np.all(np.isnan(out[0, 3])) and np.all(np.isfinite(np.delete(out, 3, axis=1)))
    assert np.all(np.isnan(dq[0, 3])) and np.all(np.isfinite(np.delete(dq, 3, axis=1)))
    assert np.all(np.isnan(np.asarray(dk, np.float32)))  # every key saw the NaN row


def test_no_lengths_means_every_key_and_empty_inputs_give_empty_outputs():
    q, k, v = (normal((2, 9, 2, 4), i) for i in range(3))
    full = mkl_attention(q, k, v, jnp.array([9, 9], jnp.int32))
    np.testing.assert_allclose(np.asarray(mkl_attention(q, k, v)), np.asarray(full), rtol=1e-6)
    empty = jnp.ones((2, 0, 2, 4))
    assert mkl_attention(empty, empty, empty).shape == (2, 0, 2, 4)


def test_bad_inputs_are_refused():
    x = jnp.ones((1, 4, 2, 8))
    with pytest.raises(ValueError, match="one shape"):
        mkl_attention(x, x[:, :3], x, jnp.ones((1,), jnp.int32))
    with pytest.raises(ValueError, match="kv_lengths"):
        mkl_attention(x, x, x, jnp.ones((2,), jnp.int32))
    with pytest.raises(TypeError, match="one dtype"):
        mkl_attention(x, x.astype(jnp.bfloat16), x, jnp.ones((1,), jnp.int32))
    # Under the tests' jaxtyping checks the annotation refuses these first (a TypeError too).
    with pytest.raises(TypeError, match="one dtype|Float"):
        ints = jnp.ones((1, 4, 2, 8), jnp.int32)
        mkl_attention(ints, ints, ints, jnp.ones((1,), jnp.int32))
    with pytest.raises(TypeError, match="integer array|Int"):
        mkl_attention(x, x, x, jnp.ones((1,)))
    with pytest.raises(ValueError, match="head_dim"):
        empty = jnp.ones((1, 4, 2, 0))
        mkl_attention(empty, empty, empty, jnp.ones((1,), jnp.int32))
    with pytest.raises(ValueError, match="finite"):
        mkl_attention(x, x, x, jnp.ones((1,), jnp.int32), scale=float("inf"))


@pytest.mark.parametrize(
    ("vendor", "pays"),
    [("GenuineIntel", True), ("AuthenticAMD", True), ("HygonGenuine", False), ("", False)],
)
def test_mkl_attention_is_chosen_on_intel_and_amd_only(vendor, pays):
    assert mkl_attention_pays(vendor) is pays


def test_the_model_uses_mkl_attention_exactly_where_it_pays_and_agrees_with_blocked():
    config = ModelConfig(vocab_size=12, embed_dim=32, num_layers=2, num_heads=2, ffn_dim=48)
    model = NucleotideTransformer(config, key=jax.random.key(0))
    tokens = jnp.asarray(np.random.default_rng(0).integers(3, 12, size=(2, 20)), jnp.int32)
    tokens = tokens.at[1, 15:].set(config.pad_token_id)

    def loss(model):
        return jnp.sum(jax.vmap(model)(tokens).logits ** 2)

    auto, blocked = (with_options(model, attention=a) for a in ("auto", "blocked"))
    grad = jax.jit(jax.value_and_grad(loss))
    text = grad.lower(auto).as_text()
    assert ("codonnt_mkl_attention_fwd" in text) is mkl_attention_available()
    assert mkl_attention_available() is mkl_attention_pays(cpu_vendor())  # the library builds
    assert ("codonnt_mkl_attention_bwd" in text) is mkl_attention_available()
    assert "codonnt_mkl_attention" not in grad.lower(blocked).as_text()
    (va, ga), (vb, gb) = grad(auto), grad(blocked)
    assert float(va) == pytest.approx(float(vb), rel=1e-5)
    for a, b in zip(jax.tree.leaves(ga), jax.tree.leaves(gb), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)

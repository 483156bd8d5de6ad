"""Segment ids in the attention kernels (several sequences packed into one row): each query sees
the valid keys of its own segment only, forward and gradients, against the float64 oracle run
on each segment alone."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from codonnt_eqx.kernels import attention, attention_weights, blocked_attention, reference_attention
from hypothesis import example, given, settings
from hypothesis import strategies as st

from test_kernels import assert_close, oracle, value_and_grads

SEGMENTED = ["auto", "blocked", "reference", "xla"]


def segmented_oracle(q, k, v, lengths, segments, do, scale):
    """Float64 forward and gradients: `oracle` on every segment's slice of every row (a key
    is valid where it lies before the row's length, which makes a prefix of each slice)."""
    parts = [np.zeros(x.shape, np.float64) for x in (q, q, k, v)]
    for b, n in enumerate(np.asarray(lengths)):
        ids = np.asarray(segments[b])
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
        for a, e in zip(starts, [*starts[1:], len(ids)], strict=True):
            valid = int(np.clip(n - a, 0, e - a))
            qs, ks, vs, dos = (x[b : b + 1, a:e] for x in (q, k, v, do))
            for whole, got in zip(parts, oracle(qs, ks, vs, [valid], dos, scale), strict=True):
                whole[b, a:e] = got[0]
    return parts


@st.composite
def packed_rows(draw, max_length=60):
    batch = draw(st.integers(1, 3))
    length = draw(st.integers(1, max_length))
    heads = draw(st.integers(1, 3))
    head_dim = draw(st.sampled_from([8, 33]))
    segments = [
        np.sort(draw(st.lists(st.integers(0, 5), min_size=length, max_size=length)))
        for _ in range(batch)
    ]
    lengths = draw(st.lists(st.integers(-1, length + 1), min_size=batch, max_size=batch))
    return (batch, length, heads, head_dim), np.array(segments, np.int32), lengths


@pytest.mark.parametrize("impl", SEGMENTED)
@settings(max_examples=6)
@given(case=packed_rows(), seed=st.integers(0, 2**16))
@example(case=((2, 37, 2, 32), np.array([[0] * 10 + [1] * 20 + [2] * 7] * 2), [30, 37]), seed=0)
@example(case=((1, 5, 1, 8), np.array([[0, 1, 2, 3, 4]]), [5]), seed=1)  # every token alone
def test_segments_match_each_segment_alone(impl, case, seed):
    shape, segments, lengths = case
    rng = np.random.default_rng(seed)
    q, k, v, do = (jnp.asarray(rng.normal(size=shape), jnp.float32) for _ in range(4))
    scale = shape[-1] ** -0.5
    expected = segmented_oracle(q, k, v, lengths, segments, do, scale)

    def fn(q, k, v):
        return attention(q, k, v, jnp.asarray(lengths), implementation=impl, segment_ids=segments)

    for name, a, e in zip(
        ("out", "dq", "dk", "dv"), value_and_grads(fn, q, k, v, do), expected, strict=True
    ):
        assert_close(a, e, jnp.float32, f"{impl} {name}")


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_low_precision_segments_within_dtype_tolerance(dtype):
    rng = np.random.default_rng(3)
    shape = (2, 50, 2, 16)
    q, k, v, do = (jnp.asarray(rng.normal(size=shape), dtype) for _ in range(4))
    segments = np.repeat([[0] * 12 + [1] * 30 + [2] * 8], 2, axis=0)
    lengths = [45, 50]
    expected = segmented_oracle(q, k, v, lengths, segments, do, shape[-1] ** -0.5)

    def fn(q, k, v):
        return blocked_attention(q, k, v, jnp.asarray(lengths), segment_ids=segments, block=16)

    for name, a, e in zip(
        ("out", "dq", "dk", "dv"), value_and_grads(fn, q, k, v, do), expected, strict=True
    ):
        assert a.dtype == dtype
        assert_close(a, e, dtype, name)


def test_blocked_segments_over_several_query_tiles_under_jit_and_vmap():
    rng = np.random.default_rng(0)
    q, k, v = (jnp.asarray(rng.normal(size=(3, 1, 70, 2, 8)), jnp.float32) for _ in range(3))
    segments = np.sort(rng.integers(0, 4, size=(3, 1, 70)), axis=-1).astype(np.int32)
    lengths = jnp.array([[70], [50], [3]])

    def one(q, k, v, n, s):
        return blocked_attention(q, k, v, n, segment_ids=s, block=16)

    got = jax.jit(jax.vmap(one))(q, k, v, lengths, segments)
    want = jax.vmap(lambda *a: reference_attention(*a[:4], segment_ids=a[4]))(
        q, k, v, lengths, segments
    )
    np.testing.assert_allclose(got, want, atol=2e-6)


def test_one_segment_is_no_segments():
    rng = np.random.default_rng(1)
    q, k, v = (jnp.asarray(rng.normal(size=(2, 40, 2, 16)), jnp.float32) for _ in range(3))
    lengths = jnp.array([33, 40])
    for impl in SEGMENTED:
        got = attention(q, k, v, lengths, implementation=impl, segment_ids=np.zeros((2, 40), int))
        want = attention(q, k, v, lengths, implementation=impl)
        np.testing.assert_allclose(got, want, atol=1e-6, err_msg=impl)


def test_garbage_in_other_segments_never_leaks():
    rng = np.random.default_rng(2)
    q, k, v = (jnp.asarray(rng.normal(size=(1, 30, 2, 8)), jnp.float32) for _ in range(3))
    segments = np.array([[0] * 10 + [1] * 20])
    k2, v2 = k.at[:, 10:].set(1e4), v.at[:, 10:].set(-1e4)
    for impl in SEGMENTED:
        a = attention(q, k, v, None, implementation=impl, segment_ids=segments)[:, :10]
        b = attention(q, k2, v2, None, implementation=impl, segment_ids=segments)[:, :10]
        np.testing.assert_allclose(a, b, atol=1e-6, err_msg=impl)


def test_attention_weights_are_zero_across_segments_and_rows_sum_to_one():
    rng = np.random.default_rng(4)
    q, k = (jnp.asarray(rng.normal(size=(1, 12, 2, 8)), jnp.float32) for _ in range(2))
    segments = np.array([[0] * 5 + [1] * 7])
    w = np.asarray(attention_weights(q, k, jnp.array([10]), segment_ids=segments))
    same = segments[0][:, None] == segments[0][None, :]
    assert np.all(w[0][:, ~same] == 0)
    assert np.all(w[0][..., 10:] == 0)
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="q_len == k_len"):
        attention_weights(q[:, :6], k, segment_ids=segments)


def test_kernels_without_segment_support_and_bad_segment_ids_are_refused():
    q = jnp.zeros((1, 8, 1, 8))
    for impl in ("pallas", "cudnn"):
        with pytest.raises(ValueError, match="does not take segment_ids"):
            attention(q, q, q, implementation=impl, segment_ids=np.zeros((1, 8), int))
    with pytest.raises(ValueError, match="shape"):
        attention(q, q, q, implementation="blocked", segment_ids=np.zeros((8,), int))
    with pytest.raises(TypeError, match="integer"):
        reference_attention(q, q, q, segment_ids=np.zeros((1, 8)))

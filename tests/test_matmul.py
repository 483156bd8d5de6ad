"""The model's matrix product in a narrow compute dtype: inputs rounded to it, float32
accumulation, float32 weight gradients; against float64 NumPy on the rounded inputs."""

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings

from codonnt_eqx.model import linear_product

DTYPES = {"bfloat16": ml_dtypes.bfloat16, "float16": np.float16}
# The output is rounded once to the compute dtype (8 or 11 significant bits); the products
# and sums are float32, so their error is far below that rounding.
OUTPUT_RTOL = {"bfloat16": 2**-7, "float16": 2**-10}


def rounded(x, dtype):
    return np.asarray(x).astype(DTYPES[dtype]).astype(np.float64)


def arrays(shape, seed):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


@settings(max_examples=25, deadline=None)
@given(
    rows=st.integers(1, 40),
    inner=st.integers(1, 48),
    out=st.integers(1, 40),
    dtype=st.sampled_from(sorted(DTYPES)),
    seed=st.integers(0, 2**16),
)
def test_forward_and_gradients_match_float64_on_the_rounded_inputs(rows, inner, out, dtype, seed):
    x, w, g = (
        arrays((rows, inner), seed),
        arrays((out, inner), seed + 1),
        arrays((rows, out), seed + 2),
    )
    y, pullback = jax.vjp(lambda x, w: linear_product(x, w, dtype), x, w)
    assert y.dtype == jnp.dtype(dtype)
    xr, wr, gr = rounded(x, dtype), rounded(w, dtype), rounded(g, dtype)
    ref = xr @ wr.T
    scale = np.abs(xr) @ np.abs(wr).T  # the size of the sum each entry rounds
    # Below the dtype's normal range the rounding is absolute (half a subnormal step; one
    # step of slack).
    subnormal = float(ml_dtypes.finfo(DTYPES[dtype]).smallest_subnormal)
    np.testing.assert_array_less(
        np.abs(np.asarray(y, np.float64) - ref), OUTPUT_RTOL[dtype] * scale + subnormal
    )
    dx, dw = pullback(jnp.asarray(g).astype(dtype))
    assert dx.dtype == dw.dtype == jnp.float32  # the primal dtypes, not the compute dtype
    for got, want, size in (
        (dx, gr @ wr, np.abs(gr) @ np.abs(wr)),
        (dw, gr.T @ xr, np.abs(gr).T @ np.abs(xr)),
    ):
        np.testing.assert_array_less(
            np.abs(np.asarray(got, np.float64) - want), 1e-5 * size + 1e-30
        )


def test_float32_is_the_plain_product_bit_for_bit():
    x, w = arrays((7, 5), 0), arrays((3, 5), 1)
    np.testing.assert_array_equal(linear_product(x, w, jnp.float32), jnp.dot(x, w.T))
    gx, gw = jax.grad(lambda x, w: jnp.sum(linear_product(x, w, "float32") ** 2), (0, 1))(x, w)
    rx, rw = jax.grad(lambda x, w: jnp.sum(jnp.dot(x, w.T) ** 2), (0, 1))(x, w)
    np.testing.assert_array_equal(gx, rx)
    np.testing.assert_array_equal(gw, rw)


@pytest.mark.parametrize("dtype", sorted(DTYPES))
def test_jit_vmap_and_grad_agree_with_one_call_on_the_stacked_rows(dtype):
    x, w = arrays((3, 6, 8), 2), arrays((4, 8), 3)

    def loss(w, x):
        y = jax.vmap(lambda xi: linear_product(xi, w, dtype))(x)
        return jnp.sum(y.astype(jnp.float32) ** 2)

    def flat(w, x):
        return jnp.sum(linear_product(x.reshape(-1, 8), w, dtype).astype(jnp.float32) ** 2)

    batched = jax.jit(jax.value_and_grad(loss))(w, x)
    single = jax.value_and_grad(flat)(w, x)
    for a, b in zip(jax.tree.leaves(batched), jax.tree.leaves(single), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5)

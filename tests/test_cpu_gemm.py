"""The CPU's bfloat16 GEMM through MKL (`codonnt_eqx.cpu`, the cpu-bf16 extra): built here
with the machine's compiler, numerics against float64 NumPy on the bfloat16 inputs, every
transpose and batch layout `linear_product` and `jax.vmap` give it, and the model's choice of
it per platform. Skips, saying why, where MKL or a compiler is missing."""

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings

from codonnt_eqx.cpu import (
    MklGemmUnavailable,
    bf16_units,
    cpu_vendor,
    mkl_gemm,
    mkl_gemm_available,
    mkl_gemm_library,
    mkl_pays,
)
from codonnt_eqx.model import linear_product


@pytest.fixture(scope="module", autouse=True)
def _built():
    try:
        mkl_gemm_library()
    except MklGemmUnavailable as e:
        pytest.skip(str(e))


def bf16(shape, seed):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.bfloat16)


def f64(x):
    return np.asarray(x).astype(ml_dtypes.bfloat16).astype(np.float64)


def check(got, a, b):
    # float32 accumulation of exact bfloat16 products: error far below float32's eps per term
    want, size = a @ b, np.abs(a) @ np.abs(b)
    assert got.dtype == jnp.float32 and got.shape == want.shape
    np.testing.assert_array_less(np.abs(np.asarray(got, np.float64) - want), 1e-5 * size + 1e-30)


@settings(max_examples=30, deadline=None)
@given(
    m=st.integers(0, 33),
    k=st.integers(0, 40),
    n=st.integers(0, 35),
    trans_a=st.booleans(),
    trans_b=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_every_transpose_matches_float64(m, k, n, trans_a, trans_b, seed):
    a = bf16((k, m) if trans_a else (m, k), seed)
    b = bf16((n, k) if trans_b else (k, n), seed + 1)
    got = jax.jit(lambda a, b: mkl_gemm(a, b, trans_a=trans_a, trans_b=trans_b))(a, b)
    check(got, f64(a).T if trans_a else f64(a), f64(b).T if trans_b else f64(b))


@pytest.mark.parametrize("trans_a", [False, True])
def test_vmap_batches_one_side_or_both_and_nests(trans_a):
    a, b = bf16((3, 2, 9, 7), 0), bf16((7, 5), 1)  # a batched twice, b not
    rows = (lambda x: x.T) if trans_a else (lambda x: x)
    a_in = jnp.swapaxes(a, -1, -2) if trans_a else a
    got = jax.vmap(jax.vmap(lambda x: mkl_gemm(x, b, trans_a=trans_a)))(a_in)
    for i in range(3):
        for j in range(2):
            check(got[i, j], rows(f64(a_in[i, j])), f64(b))
    both = jax.vmap(lambda x, y: mkl_gemm(x, y, trans_a=trans_a))(a_in[0], bf16((2, 7, 4), 2))
    for j in range(2):
        check(both[j], rows(f64(a_in[0, j])), f64(bf16((2, 7, 4), 2)[j]))


def test_bad_operands_are_refused_before_running():
    with pytest.raises(TypeError, match="(?i)bfloat16"):
        mkl_gemm(jnp.ones((2, 3)), jnp.ones((3, 2)))
    with pytest.raises(ValueError, match="contracting"):
        mkl_gemm(bf16((2, 3), 0), bf16((4, 2), 1))


@pytest.mark.skipif(not mkl_gemm_available(), reason="not an Intel CPU with bfloat16 units")
def test_the_model_product_runs_on_mkl_on_this_cpu_and_agrees_with_xla():
    x, w = bf16((2, 6, 8), 3).astype(jnp.float32), bf16((5, 8), 4).astype(jnp.float32)

    def loss(x, w):
        y = jax.vmap(lambda xi: linear_product(xi, w, jnp.bfloat16))(x)
        return jnp.sum(y.astype(jnp.float32) ** 2)

    grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    assert "codonnt_mkl_bf16_gemm" in grad.lower(x, w).as_text()
    value, (dx, dw) = grad(x, w)
    xr, wr = f64(x), f64(w)
    y = (xr @ wr.T).astype(ml_dtypes.bfloat16).astype(np.float64)
    assert float(value) == pytest.approx(float(np.sum(y**2)), rel=1e-5)
    g = (2 * y).astype(ml_dtypes.bfloat16).astype(np.float64)  # the cotangent, rounded
    np.testing.assert_allclose(dx, g @ wr, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dw, np.einsum("bln,bld->nd", g, xr), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(
    ("vendor", "units", "pays"),
    [
        ("GenuineIntel", ("amx_bf16", "avx512_bf16"), True),
        ("GenuineIntel", ("avx512_bf16",), True),
        ("GenuineIntel", (), False),  # MKL would emulate bfloat16
        ("AuthenticAMD", ("avx512_bf16",), False),  # MKL runs it at float32 speed there
        ("AuthenticAMD", (), False),
        ("", ("avx512_bf16",), False),
    ],
)
def test_mkl_is_chosen_only_on_intel_cpus_with_bfloat16_units(vendor, units, pays):
    assert mkl_pays(vendor, units) is pays


def test_the_model_product_uses_mkl_exactly_where_it_pays_on_this_cpu():
    x, w = bf16((6, 8), 5).astype(jnp.float32), bf16((5, 8), 6).astype(jnp.float32)
    text = jax.jit(lambda x, w: linear_product(x, w, jnp.bfloat16)).lower(x, w).as_text()
    expected = mkl_pays(cpu_vendor(), bf16_units())
    assert ("codonnt_mkl_bf16_gemm" in text) is expected
    assert mkl_gemm_available() is expected

"""x W^T in the compute dtype, with float32 accumulation and float32 weight gradients.

A bfloat16 product that returns bfloat16 runs on XLA:CPU's generic path, no faster than
float32; the same product asked to return float32 (`preferred_element_type`) reaches the
CPU's bfloat16 dot instructions (AVX512-BF16, AMX) through XLA's own kernels, several times
faster (bench/results/cpu_bf16*.md). JAX's transpose of such a product would run the
backward in float32, so the backward is written here: dX and dW are bfloat16 products with
float32 accumulation too, and dW is returned in float32 (the parameters' dtype) without a
bfloat16 rounding. XLA:CPU has no fast kernel for dW's layout (both operands contracted over
their rows: it falls back to float32), so on an Intel CPU with bfloat16 units and MKL
installed (the `cpu-bf16` extra) every bfloat16 product here runs through MKL instead
(`codonnt_eqx.cpu`; on AMD MKL's bfloat16 GEMM is no faster than float32, so XLA's is kept),
chosen per platform when compiled (`platform_dependent`: a GPU or TPU compile never sees it).
On GPUs and TPUs it is the usual mixed-precision matmul.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Float

from ..cpu import mkl_gemm, mkl_gemm_available


def linear_product(
    x: Float[Array, "*rows in"], weight: Float[Array, "out in"], dtype
) -> Float[Array, "*rows out"]:
    """x @ weight.T computed in `dtype`: float32 as it is; a narrower dtype with its inputs
    rounded to it, float32 accumulation, and the result in `dtype`."""
    if jnp.dtype(dtype) == jnp.float32:
        # Contracted in place, not as `weight.T`: a transposed copy would be a value of its
        # own, which a scan over layers saves for the backward ([layers, in, out] written
        # every step), where the weight itself is forwarded to it.
        dims = (((x.ndim - 1,), (1,)), ((), ()))
        return lax.dot_general(x.astype(jnp.float32), weight.astype(jnp.float32), dims)
    return _low_precision(x, weight, jnp.dtype(dtype))


def _product(a, b, *, trans_a: bool, trans_b: bool):
    """op(a) @ op(b) for 2-d a, b in float32: through MKL on a CPU that has it for bfloat16,
    XLA's dot elsewhere."""
    dims = (((0 if trans_a else 1,), (1 if trans_b else 0,)), ((), ()))

    def xla(a, b):
        return lax.dot_general(a, b, dims, preferred_element_type=jnp.float32)

    if a.dtype != jnp.bfloat16 or not mkl_gemm_available():
        return xla(a, b)

    def mkl(a, b):
        return mkl_gemm(a, b, trans_a=trans_a, trans_b=trans_b)

    return lax.platform_dependent(a, b, cpu=mkl, default=xla)


def _rows(x):
    return x.reshape(-1, x.shape[-1])


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _low_precision(x, weight, dtype):
    return _low_precision_fwd(x, weight, dtype)[0]


def _low_precision_fwd(x, weight, dtype):
    xd, wd = x.astype(dtype), weight.astype(dtype)
    y = _product(_rows(xd), wd, trans_a=False, trans_b=True)
    # The primal dtypes ride along as empty arrays (a residual must be an array). The weight
    # is saved as it came and rounded again in the backward: a scan over layers forwards its
    # own input to the backward, where a rounded copy would be a [layers, out, in] buffer
    # written every step.
    tags = (jnp.zeros((0,), x.dtype), jnp.zeros((0,), weight.dtype))
    return y.reshape(*x.shape[:-1], -1).astype(dtype), (xd, weight, tags)


def _low_precision_bwd(dtype, residuals, g):
    xd, weight, (x_tag, w_tag) = residuals
    wd = weight.astype(dtype)
    g = _rows(g.astype(dtype))
    dx = _product(g, wd, trans_a=False, trans_b=False).reshape(xd.shape)  # g W
    dw = _product(g, _rows(xd), trans_a=True, trans_b=False)  # g^T X over every row
    return dx.astype(x_tag.dtype), dw.astype(w_tag.dtype)


_low_precision.defvjp(_low_precision_fwd, _low_precision_bwd)

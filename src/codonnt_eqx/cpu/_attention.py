"""`mkl_attention`: self-attention with key padding on the CPU through MKL, forward and
backward (custom calls of `mkl_attention.cc`), for the model's `attention="auto"` on CPU.

XLA:CPU's blocked attention runs its [block, L] score tiles through several passes and its
head_dim-32 products at about 100 GFLOP/s; PyTorch's attention took half its time on the
same Intel Xeon (bench/results/intel_amx/). Here each (batch, head) pair runs on one core:
its products are MKL GEMMs on strided rows, its exponentials a vectorised polynomial fused
with the row sum (forward) and the softmax backward (backward).
"""

from __future__ import annotations

import functools

import jax
import jax.ffi
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from ..kernels import check_attention_inputs, empty_attention  # pyright: ignore[reportMissingImports]
from ._build import mkl_gemm_library, registers
from ._gemm import cpu_vendor

# The custom calls, by input dtype: `{name}_fwd`, `{name}_bwd` (the library's symbols
# without the "mkl_").
_TARGETS = {
    jnp.dtype(jnp.float32): "codonnt_mkl_attention",
    jnp.dtype(jnp.bfloat16): "codonnt_mkl_attention_bf16",
}


@functools.cache
def _register() -> None:
    library = mkl_gemm_library()
    for name in _TARGETS.values():
        for part in ("fwd", "bwd"):
            symbol = f"{name.replace('_mkl', '')}_{part}"
            capsule = jax.ffi.pycapsule(getattr(library, symbol))
            jax.ffi.register_ffi_target(f"{name}_{part}", capsule, platform="cpu")


def mkl_attention_pays(vendor: str) -> bool:
    """Whether MKL's attention beats XLA's blocked one on a CPU of this vendor: measured on an
    Intel Xeon (AMX) and an AMD EPYC Zen 3 (AVX2), training step included
    (`bench/results/intel_amx`, `bench/results/amd_zen3`); other vendors keep XLA's."""
    return vendor in ("GenuineIntel", "AuthenticAMD")


@functools.cache
def mkl_attention_available() -> bool:
    """Whether `mkl_attention` runs here and pays (`mkl_attention_pays`), and the library
    builds and registers."""
    return mkl_attention_pays(cpu_vendor()) and registers(_register)


def mkl_attention(
    q: Float[Array, "batch length heads dim"],
    k: Float[Array, "*k_shape"],  # q's shape: checked here, with a message that says so
    v: Float[Array, "*v_shape"],
    kv_lengths: Int[Array, " _"] | None = None,
    scale: float | None = None,
) -> Float[Array, "batch length heads dim"]:
    """softmax(scale q k^T) v with keys at positions >= `kv_lengths[b]` given zero weight
    (they never reach outputs or gradients); a query with no valid key gets 0. The kernels'
    contract (`codonnt_eqx.kernels.attention`): the same inputs, checks and errors. bfloat16 inputs
    stay bfloat16 in the products (float32 accumulation, softmax in float32, the
    probabilities rounded to bfloat16), as the blocked kernel's; other dtypes compute in
    float32. Returns q's dtype; differentiable in q, k, v; `jit` and `vmap` work. CPU only:
    choose it with `jax.lax.platform_dependent` in code that may be compiled for an
    accelerator."""
    _register()
    q, k, v, lengths, scale = check_attention_inputs(q, k, v, kv_lengths, scale)
    if q.size == 0:
        return empty_attention(q)
    if lengths is None:
        lengths = jnp.full(q.shape[:1], q.shape[1], jnp.int32)
    dtype = jnp.bfloat16 if q.dtype == jnp.bfloat16 else jnp.float32
    out = _attention(*(x.astype(dtype) for x in (q, k, v)), lengths, scale)
    return jnp.asarray(out).astype(q.dtype)


def _call(part: str, shapes, *args, scale: float):
    target = f"{_TARGETS[jnp.dtype(args[0].dtype)]}_{part}"
    call = jax.ffi.ffi_call(target, shapes, vmap_method="broadcast_all")
    return call(*args, scale=np.float32(scale))


def _forward(q, k, v, lengths, scale):
    batch, length, heads, _ = q.shape
    shapes = (
        jax.ShapeDtypeStruct(q.shape, jnp.float32),
        jax.ShapeDtypeStruct((batch, heads, length), jnp.float32),
    )
    return _call("fwd", shapes, q, k, v, lengths, scale=scale)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _attention(q, k, v, lengths, scale):
    return _forward(q, k, v, lengths, scale)[0]


def _attention_fwd(q, k, v, lengths, scale):
    out, lse = _forward(q, k, v, lengths, scale)
    return out, (q, k, v, lengths, out, lse)


def _attention_bwd(scale, residuals, dout):
    q, k, v, lengths, out, lse = residuals
    shapes = tuple(jax.ShapeDtypeStruct(q.shape, jnp.float32) for _ in range(3))
    dout = dout.astype(q.dtype)  # bfloat16 in the products, as the forward's
    dq, dk, dv = _call("bwd", shapes, q, k, v, out, lse, dout, lengths, scale=scale)
    return dq.astype(q.dtype), dk.astype(q.dtype), dv.astype(q.dtype), None


_attention.defvjp(_attention_fwd, _attention_bwd)

"""`mkl_gemm`: a bfloat16 product with float32 results through MKL, as a custom call."""

from __future__ import annotations

import functools
import pathlib

import jax
import jax.ffi
import jax.numpy as jnp
from jaxtyping import Array, BFloat16, Float

from ._build import mkl_gemm_library, registers

_TARGET = "codonnt_mkl_bf16_gemm"


def _cpuinfo() -> list[str]:
    try:
        return pathlib.Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return []


@functools.cache
def bf16_units() -> tuple[str, ...]:
    """The CPU's bfloat16 matrix features (`amx_bf16`, `avx512_bf16`) from /proc/cpuinfo."""
    flags = _cpuinfo()
    return tuple(f for f in ("amx_bf16", "avx512_bf16") if f in flags)


@functools.cache
def cpu_vendor() -> str:
    """/proc/cpuinfo's `vendor_id` (`GenuineIntel`, `AuthenticAMD`, ...); "" if unknown."""
    words = _cpuinfo()
    at = words.index("vendor_id") if "vendor_id" in words else -1
    return words[at + 2] if 0 <= at < len(words) - 2 else ""


def mkl_pays(vendor: str, units: tuple[str, ...]) -> bool:
    """Whether MKL's bfloat16 GEMM beats XLA's own on a CPU: only on Intel CPUs with bfloat16
    units. MKL picks its kernels by vendor: on AMD Zen 4 (AVX512-BF16) it ran at float32
    speed, 170-190 GFLOP/s against XLA's 380-420 (bench/results/amd_zen4_mkl/)."""
    return vendor == "GenuineIntel" and bool(units)


@functools.cache
def mkl_gemm_available() -> bool:
    """Whether `mkl_gemm` runs here and pays (`mkl_pays`: an Intel CPU with bfloat16 units),
    and the library builds and registers (`mkl_gemm_library`)."""
    return mkl_pays(cpu_vendor(), bf16_units()) and registers(_register)


@functools.cache
def _register() -> None:
    library = mkl_gemm_library()
    capsule = jax.ffi.pycapsule(library.codonnt_bf16_gemm)
    jax.ffi.register_ffi_target(_TARGET, capsule, platform="cpu")


def mkl_gemm(
    a: BFloat16[Array, "*batch_a rows_a cols_a"],
    b: BFloat16[Array, "*batch_b rows_b cols_b"],
    *,
    trans_a: bool = False,
    trans_b: bool = False,
) -> Float[Array, "*batch m n"]:
    """op(a) @ op(b) in float32 from bfloat16 operands (op: transpose when asked), on the
    CPU through MKL's `cblas_gemm_bf16bf16f32`. Leading dims are a batch (equal, or 1 on one
    side); `jax.vmap` adds one without copying the unbatched operand. CPU only: choose it
    with `jax.lax.platform_dependent` in code that may be compiled for an accelerator."""
    _register()
    if a.dtype != jnp.bfloat16 or b.dtype != jnp.bfloat16:
        raise TypeError(f"mkl_gemm takes bfloat16 operands, got {a.dtype} and {b.dtype}")
    m = a.shape[-1] if trans_a else a.shape[-2]
    k = a.shape[-2] if trans_a else a.shape[-1]
    kb, n = (b.shape[-1], b.shape[-2]) if trans_b else (b.shape[-2], b.shape[-1])
    if k != kb:
        raise ValueError(f"mkl_gemm: contracting dims differ ({a.shape}, {b.shape})")
    batch = jnp.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    for shape in (a.shape[:-2], b.shape[:-2]):
        if shape != batch and any(d != 1 for d in shape):
            raise ValueError(
                f"mkl_gemm: batch dims {a.shape[:-2]} and {b.shape[:-2]}: "
                "each must be the whole batch or all ones"
            )
    out = jax.ShapeDtypeStruct((*batch, m, n), jnp.float32)
    call = jax.ffi.ffi_call(_TARGET, out, vmap_method="expand_dims")
    return call(a, b, trans_a=trans_a, trans_b=trans_b)

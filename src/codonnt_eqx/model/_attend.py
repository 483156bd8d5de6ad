"""The model's attention call: the kernels' `attention`, and for `attention="auto"` on an
Intel or AMD CPU with MKL installed (the `cpu-bf16` extra) MKL's attention (`codonnt_eqx.cpu`),
chosen per platform when compiled (`platform_dependent`: a GPU or TPU compile never sees it).

On an Intel Xeon the model's training step went from 4.69 to 3.75 s with it in float32, 3.76
to 2.88 s in bfloat16 (bench/results/intel_amx/, the `ours-glu-blocked` / `-auto` columns).
Packed sequences (`segment_ids`) keep the kernels' implementations.
"""

from __future__ import annotations

from jax import lax
from jaxtyping import Array, Float, Int

from ..cpu import mkl_attention, mkl_attention_available
from ..kernels import attention as attention_kernel  # pyright: ignore[reportMissingImports]

Heads = Float[Array, "1 length heads dim"]


def attend(
    q: Heads,
    k: Heads,
    v: Heads,
    num_valid: Int[Array, " 1"],
    implementation: str,
    segment_ids: Int[Array, "1 length"] | None,
) -> Heads:
    """`kernels.attention(q, k, v, num_valid, implementation=..., segment_ids=...)`, through
    MKL on the CPU where that pays (see the module)."""

    def kernel(q, k, v, num_valid):
        return attention_kernel(
            q, k, v, num_valid, implementation=implementation, segment_ids=segment_ids
        )

    if implementation != "auto" or segment_ids is not None or not mkl_attention_available():
        return kernel(q, k, v, num_valid)
    return lax.platform_dependent(q, k, v, num_valid, cpu=mkl_attention, default=kernel)

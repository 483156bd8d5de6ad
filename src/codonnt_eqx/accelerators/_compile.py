"""Compiling for a target that is not here: abstract arguments placed on its devices, the
lowering for its platform, and what the compiled program holds."""

from __future__ import annotations

import re

import jax
from jax.sharding import Sharding

from ..parallel import is_dynamic
from ._targets import lowering_platform

# Custom-call targets of our Pallas kernels once lowered for real (not interpret mode), per
# kernel: Triton and Mosaic GPU ("mosaic_gpu_v2" in jax 0.10) on CUDA, Mosaic on TPU.
KERNEL_TARGETS = {
    "triton": ("__gpu$xla.gpu.triton",),
    "mosaic_gpu": ("mosaic_gpu_v2", "mosaic_gpu"),
    "mosaic_tpu": ("tpu_custom_call",),
}
KERNEL_CALLS = {
    "cuda": KERNEL_TARGETS["triton"] + KERNEL_TARGETS["mosaic_gpu"],
    "tpu": KERNEL_TARGETS["mosaic_tpu"],
}
COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "collective-permute", "all-to-all")


def abstract(tree, sharding: Sharding | None = None, shardings=None):
    """`tree` with each array (or `ShapeDtypeStruct`) leaf a `ShapeDtypeStruct` placed by
    `sharding` (one for all) or `shardings` (a matching tree, e.g. `state_shardings`); other
    leaves unchanged. Nothing is allocated."""

    def one(x, s):
        if not is_dynamic(x):
            return x
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s)

    if shardings is None:
        return jax.tree.map(lambda x: one(x, sharding), tree)
    return jax.tree.map(one, tree, shardings, is_leaf=lambda x: x is None)


# A deviceless GPU compile cannot autotune, so XLA takes its heuristic Triton GEMM config
# unmeasured, and that config's split-k does not always divide the contraction: the bf16
# weight gradient of a GLU dot over 2 x 1000 tokens fails with "Couldn't find output tile
# sizes that satisfy hlo: %dot ... bf16[4096,512]" (jaxlib 0.10.2; 4 x 1024 tokens compile).
# On a GPU the autotuner compiles each config and drops those that fail, so this is an
# artefact of compiling without one: here cuBLAS takes the dots XLA would give to Triton. Our
# Pallas kernels are custom calls, untouched by the flag. (The model's own backward,
# `linear_product`, no longer makes that dot; the flag stays for other code's dots.)
DEVICELESS_COMPILER_OPTIONS: dict[str, dict[str, bool]] = {
    "cuda": {"xla_gpu_enable_triton_gemm": False},
    "tpu": {},
}


def compile_traced(
    traced: jax.stages.Traced, device, compiler_options: dict | None = None
) -> jax.stages.Compiled:
    """Lower `traced` for the platform of `device` (an abstract device of a target) and
    compile it, with the real Pallas lowering (Triton, Mosaic), never interpret mode.

    `compiler_options` (XLA flags without the `--`, e.g. `{"xla_gpu_enable_triton_gemm":
    True}`) update the platform's `DEVICELESS_COMPILER_OPTIONS`."""
    platform = lowering_platform(device)
    options = {**DEVICELESS_COMPILER_OPTIONS.get(platform, {}), **(compiler_options or {})}
    lowered = traced.lower(lowering_platforms=(platform,))
    return lowered.compile(compiler_options=options or None)


def custom_call_targets(compiled: jax.stages.Compiled) -> set[str]:
    """The custom-call targets in the optimised HLO of `compiled`."""
    return set(re.findall(r'custom_call_target="([^"]+)"', compiled.as_text() or ""))


def kernel_calls(compiled: jax.stages.Compiled, platform: str, kernel: str | None = None) -> int:
    """How many calls of our Pallas kernels (`KERNEL_CALLS`) the compiled program holds; of one
    kernel only (a `KERNEL_TARGETS` key: "triton", "mosaic_gpu", "mosaic_tpu") if given."""
    text = compiled.as_text() or ""
    names = KERNEL_CALLS[platform] if kernel is None else KERNEL_TARGETS[kernel]
    return sum(text.count(f'custom_call_target="{name}"') for name in names)


def collectives(compiled: jax.stages.Compiled) -> dict[str, int]:
    """Collective operations in the compiled program, counted by kind (start ops of async
    pairs counted once)."""
    text = compiled.as_text() or ""
    found = {}
    for op in COLLECTIVES:
        n = len(re.findall(rf"\s{op}(?:-start)?\(", text))
        if n:
            found[op] = n
    return found


def host_callbacks(compiled: jax.stages.Compiled) -> set[str]:
    """Custom calls of the compiled program that call back into Python on the host (e.g.
    `eqx.error_if`, `jax.debug.print`): each a device-to-host round trip per step."""
    return {name for name in custom_call_targets(compiled) if "callback" in name.lower()}

"""Compiling for a target that is not here: abstract arguments placed on its devices, the
lowering for its platform, and what the compiled program holds."""

from __future__ import annotations

import re

import jax
from jax.sharding import Sharding

from .._lowerable_jit import is_dynamic
from ._targets import lowering_platform

# Custom-call targets of our Pallas kernels once lowered for real (not interpret mode).
KERNEL_CALLS = {"cuda": ("__gpu$xla.gpu.triton",), "tpu": ("tpu_custom_call",)}
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


def compile_traced(traced: jax.stages.Traced, device) -> jax.stages.Compiled:
    """Lower `traced` for the platform of `device` (an abstract device of a target) and
    compile it, with the real Pallas lowering (Triton, Mosaic), never interpret mode."""
    return traced.lower(lowering_platforms=(lowering_platform(device),)).compile()


def custom_call_targets(compiled: jax.stages.Compiled) -> set[str]:
    """The custom-call targets in the optimised HLO of `compiled`."""
    return set(re.findall(r'custom_call_target="([^"]+)"', compiled.as_text()))


def kernel_calls(compiled: jax.stages.Compiled, platform: str) -> int:
    """How many calls of our Pallas kernels (`KERNEL_CALLS`) the compiled program holds."""
    text = compiled.as_text()
    return sum(text.count(f'custom_call_target="{name}"') for name in KERNEL_CALLS[platform])


def collectives(compiled: jax.stages.Compiled) -> dict[str, int]:
    """Collective operations in the compiled program, counted by kind (start ops of async
    pairs counted once)."""
    text = compiled.as_text()
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

"""`lowerable_jit`: `eqx.filter_jit` for pure steps over Equinox modules that can also be traced
from abstract shapes, so that a step compiles ahead of time for hardware that is not here (and
a memory planner needs no real parameters)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
from jax.sharding import NamedSharding


def is_dynamic(x) -> bool:
    """What a step traces: arrays, and `jax.ShapeDtypeStruct`s standing in for them.

    `eqx.filter_jit` takes a `ShapeDtypeStruct` for a static Python value, so a step jitted
    with it cannot be traced from `eqx.filter_eval_shape(...)` outputs."""
    return eqx.is_array(x) or isinstance(x, jax.ShapeDtypeStruct)


class _Static:
    """The non-array rest of the arguments, hashable as `jax.jit`'s static argument."""

    def __init__(self, tree):
        leaves, self.treedef = jax.tree.flatten(tree)
        self.leaves = tuple(leaves)
        self.tree = tree

    def __hash__(self) -> int:
        return hash((self.treedef, self.leaves))

    def __eq__(self, other) -> bool:
        return (
            isinstance(other, _Static)
            and self.treedef == other.treedef
            and self.leaves == other.leaves
        )


def mesh_context(tree):
    """`jax.sharding.use_abstract_mesh` of the first multi-device mesh that an array of `tree`
    is placed on, or a no-op. The Pallas kernels read it to run per device
    (kernels/_partitioning.py); only the abstract mesh is set, so nothing is placed by it."""
    for x in jax.tree.leaves(tree):
        sharding = getattr(x, "sharding", None)
        if isinstance(sharding, NamedSharding) and sharding.mesh.size > 1:
            return jax.sharding.use_abstract_mesh(sharding.mesh.abstract_mesh)
    return contextlib.nullcontext()


class LowerableJit:
    """`fn(*args)` jitted with the array leaves of every argument traced and the rest static.

    `fn` must return arrays only (pytrees of arrays, `None` allowed): callers recombine returned
    parameters with the static parts they passed in (`eqx.combine`).

    - `jitted(*args)`: runs on concrete arguments.
    - `jitted.trace(*args)`: `jax.stages.Traced` from arguments whose arrays may be
      `jax.ShapeDtypeStruct`s (with shardings for a deviceless compile); then
      `.lower(lowering_platforms=("cuda",)).compile()`.
    - `jitted.compile(*args, **lower_options)`: compiled ahead of time for these arguments (may be
      abstract); returns a function called like `jitted`, on concrete arguments with the same
      static parts, shapes and dtypes, that never recompiles.

    Arguments sharded over a mesh trace with that mesh in context (`mesh_context`).
    """

    def __init__(self, fn: Callable, donate_argnums: Sequence[int] = ()):
        def core(static: _Static, *dynamic):
            return fn(*eqx.combine(list(dynamic), static.tree))

        self._jit = jax.jit(
            core, static_argnums=0, donate_argnums=tuple(i + 1 for i in donate_argnums)
        )

    @staticmethod
    def _split(args) -> tuple[_Static, list[Any]]:
        dynamic, static = eqx.partition(list(args), is_dynamic)
        return _Static(static), dynamic

    def __call__(self, *args):
        static, dynamic = self._split(args)
        with mesh_context(dynamic):
            return self._jit(static, *dynamic)

    def trace(self, *args) -> jax.stages.Traced:
        static, dynamic = self._split(args)
        with mesh_context(dynamic):
            return self._jit.trace(static, *dynamic)

    def compile(self, *args, compiler_options: dict | None = None, **lower_options) -> Callable:
        static, dynamic = self._split(args)
        with mesh_context(dynamic):
            lowered = self._jit.trace(static, *dynamic).lower(**lower_options)
        compiled = lowered.compile(compiler_options)

        def run(*call_args):
            call_static, call_dynamic = self._split(call_args)
            if call_static != static:
                raise ValueError(
                    "called with static arguments (non-array fields) other than those it was "
                    "compiled for; compile again for these"
                )
            with mesh_context(call_dynamic):
                return compiled(*call_dynamic)

        return run

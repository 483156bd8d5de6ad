"""Running the Pallas kernels on sharded arrays: each device runs a kernel on its own shard of
the batch (and heads), with no gather of the whole batch.

XLA cannot partition a custom call by itself (Mosaic refuses outright: "Mosaic kernels cannot be
automatically partitioned"; a Triton call would be replicated, every device attending the whole
global batch). Attention is independent per sequence and per head and needs all of a
sequence's keys, so batch and heads may be sharded, length and head_dim are not. Two routes:

- a mesh in context (`jax.set_mesh`, as the package's own sharded steps trace): `shard_map`
  over it, the batch split over every mesh axis that divides it. Works on every platform.
- otherwise `custom_partitioning` with that rule, so that a user's `jit` over sharded inputs
  partitions too. Its partitioner is a Python callback registered with the backend at start-up,
  which a deviceless TPU compile never starts ("Custom emitter for CustomSPMDPartitioning not
  found"): compiling for an absent TPU slice needs the mesh in context.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax
from jax.experimental.custom_partitioning import custom_partitioning
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

# Dimension names: b batch, l length, h heads, d head_dim, x a trailing size-1 axis.
SHARDABLE = ("b", "h")
_REPLICATED = ("l", "d", "x")


def _spec(layout: str, batch, heads) -> P:
    return P(*(batch if c == "b" else heads if c == "h" else None for c in layout))


def _axes(sharding, layout: str, name: str):
    """The mesh axes that dimension `name` of an operand laid out as `layout` is sharded over
    (None: replicated)."""
    spec = tuple(getattr(sharding, "spec", ()))
    i = layout.index(name)
    return spec[i] if i < len(spec) else None


def _batch_axes(mesh, batch: int) -> tuple[str, ...]:
    """Mesh axes, in order, whose sizes multiply to a divisor of `batch` (greedy)."""
    axes, size = [], 1
    for name, n in zip(mesh.axis_names, mesh.axis_sizes, strict=True):
        if n > 1 and batch % (size * n) == 0:
            axes.append(name)
            size *= n
    return tuple(axes)


def sharded_by_batch_and_heads(
    kernel: Callable, in_layouts: Sequence[str], out_layouts: Sequence[str]
) -> Callable:
    """`kernel(*arrays) -> tuple of arrays`, the arrays laid out as `in_layouts` /
    `out_layouts` (strings over b, l, h, d, x; the first input must hold b and h), made to run
    per shard when the batch or heads are sharded (see the module docstring). On one device it
    is `kernel` itself."""
    partitioned = _custom_partitioned(kernel, in_layouts, out_layouts)

    def call(*args):
        mesh = jax.sharding.get_abstract_mesh()
        if mesh.empty or math.prod(mesh.axis_sizes) == 1:
            return partitioned(*args)
        axes = _batch_axes(mesh, args[0].shape[in_layouts[0].index("b")]) or None
        return jax.shard_map(
            kernel,
            mesh=mesh,
            in_specs=tuple(_spec(lay, axes, None) for lay in in_layouts),
            out_specs=tuple(_spec(lay, axes, None) for lay in out_layouts),
            check_vma=False,  # Pallas kernels carry no varying-axes annotations
        )(*args)

    return call


def _custom_partitioned(kernel, in_layouts, out_layouts):
    @custom_partitioning
    def run(*args):
        return kernel(*args)

    def partition(mesh, arg_shapes, result_shape):
        first = arg_shapes[0].sharding
        batch = _axes(first, in_layouts[0], "b")
        heads = _axes(first, in_layouts[0], "h")
        ins = tuple(NamedSharding(mesh, _spec(lay, batch, heads)) for lay in in_layouts)
        outs = tuple(NamedSharding(mesh, _spec(lay, batch, heads)) for lay in out_layouts)
        return mesh, kernel, outs, ins

    def infer(mesh, arg_shapes, result_shape):  # the GSPMD partitioner's question (no Shardy)
        first = arg_shapes[0].sharding
        batch = _axes(first, in_layouts[0], "b")
        heads = _axes(first, in_layouts[0], "h")
        return tuple(NamedSharding(mesh, _spec(lay, batch, heads)) for lay in out_layouts)

    rule = ", ".join(" ".join(lay) for lay in in_layouts)
    rule += " -> " + ", ".join(" ".join(lay) for lay in out_layouts)
    run.def_partition(
        partition,
        infer_sharding_from_operands=infer,
        sharding_rule=rule,
        need_replication_factors=tuple(
            c for c in _REPLICATED if any(c in lay for lay in (*in_layouts, *out_layouts))
        ),
    )
    return run

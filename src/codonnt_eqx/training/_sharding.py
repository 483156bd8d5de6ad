"""Where arrays live: one mesh with a data axis and an FSDP axis, and the shardings of
parameters, optimiser state and batches. Model code never mentions devices; this file is the
only place that does."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA, FSDP = "data", "fsdp"


def make_mesh(fsdp: int = 1, devices: Sequence[Any] | None = None) -> Mesh:  # jax.Device
    """A 2-D mesh `(data, fsdp)` over `devices` (default: every device of every process).

    **Arguments:**

    - `fsdp`: devices that shard each parameter and optimiser-state array (fully sharded data
      parallel); 1 means pure data parallelism (every device holds all parameters).
    - `devices`: the devices to use, in order.

    **Returns:** a `jax.sharding.Mesh` with axes `("data", "fsdp")` of sizes
    `(len(devices) // fsdp, fsdp)`. The batch is split over both axes.
    """
    devices = list(jax.devices() if devices is None else devices)
    if isinstance(fsdp, bool) or not isinstance(fsdp, int) or fsdp < 1:
        raise ValueError(f"fsdp must be a positive integer, got {fsdp!r}")
    if len(devices) % fsdp:
        raise ValueError(f"fsdp={fsdp} does not divide the {len(devices)} devices")
    grid = np.array(devices, dtype=object).reshape(len(devices) // fsdp, fsdp)
    return Mesh(grid, (DATA, FSDP))


def _array_spec(shape: tuple[int, ...], fsdp: int) -> P:
    """Shard the largest axis that divides evenly over the FSDP axis; replicate the rest."""
    if fsdp == 1 or not shape:
        return P()
    for axis in sorted(range(len(shape)), key=lambda a: -shape[a]):
        if shape[axis] % fsdp == 0:
            return P(*(FSDP if a == axis else None for a in range(len(shape))))
    return P()


def state_shardings(tree, mesh: Mesh):
    """The `NamedSharding` of every array leaf of `tree` (parameters, optimiser state; other
    leaves get `None`): replicated over `data`, sharded over `fsdp` along each array's largest
    evenly divisible axis. Shape-based, so Adam's moments follow their parameters."""
    fsdp = mesh.shape[FSDP]

    def leaf(x):
        if not eqx.is_array(x) and not isinstance(x, jax.ShapeDtypeStruct):
            return None
        return NamedSharding(mesh, _array_spec(tuple(x.shape), fsdp))

    return jax.tree.map(leaf, tree)


def batch_sharding(mesh: Mesh, ndim: int = 3) -> NamedSharding:
    """Batches [accumulation, batch, ...] (tokens, example ids): the batch axis split over
    every device."""
    return NamedSharding(mesh, P(None, (DATA, FSDP), *(None,) * (ndim - 2)))


def put_state(tree, mesh: Mesh):
    """Place `tree` (identical on every process, e.g. initialised from one seed) on the mesh.

    Each process supplies its own devices' shards, so this works across hosts too.
    """
    shardings = state_shardings(tree, mesh)

    def put(x, sharding):
        if sharding is None:
            return x
        x = np.asarray(x) if not isinstance(x, jax.Array) else x
        if jax.process_count() == 1:
            return jax.device_put(x, sharding)
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    return jax.tree.map(put, tree, shardings)


def put_batch(local: np.ndarray, mesh: Mesh) -> jax.Array:
    """The global batch from this process's slice of it ([accumulation, batch / processes,
    ...]); with one process the slice is the whole batch."""
    return jax.make_array_from_process_local_data(batch_sharding(mesh, local.ndim), local)

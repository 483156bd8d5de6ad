"""Filling a model skeleton from named arrays, with every name, shape and dtype checked."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ..model import ModelConfig, NucleotideTransformer
from ._errors import CheckpointError

# A parameter's name is its path in the model (".blocks.attention.query.weight"); per-layer
# arrays come as (name, layer) and are stacked along the leading layer axis.
Name = tuple[str, int | None]


def parameter_arrays(model: NucleotideTransformer) -> dict[str, np.ndarray]:
    """Every parameter by name, as float32 NumPy arrays (per-layer ones stacked)."""
    leaves = jax.tree_util.tree_flatten_with_path(eqx.filter(model, eqx.is_array))[0]
    return {jax.tree_util.keystr(path): np.asarray(x, np.float32) for path, x in leaves}


def _is_float(dtype) -> bool:
    return np.issubdtype(dtype, np.floating) or dtype == jnp.bfloat16


def build_model(
    config: ModelConfig,
    arrays: dict[Name, Any],
    source: str,
    describe: Callable[[Name], str],
    dtype=None,
) -> NucleotideTransformer:
    """The model of `config` with its parameters taken from `arrays` (consumed as it goes, to
    keep peak memory near one copy). `describe` names an entry by the checkpoint's own key,
    for error messages. Every name, shape and dtype is checked before anything is read or
    allocated, so a config that claims a huge model costs nothing; non-finite weights load,
    with a warning naming them."""
    dtype = jnp.dtype(dtype or jnp.float32)
    skeleton = eqx.filter_eval_shape(NucleotideTransformer, config, key=jr.key(0))
    leaves, treedef = jax.tree_util.tree_flatten_with_path(skeleton)
    plan = []  # (name, stacked?, its entries in `arrays`) for every parameter, in leaf order
    for path, leaf in leaves:
        if not isinstance(leaf, jax.ShapeDtypeStruct):
            continue
        name = jax.tree_util.keystr(path)
        stacked = name.startswith(".blocks.")
        layers = range(config.num_layers) if stacked else [None]
        # At most three, found lazily: num_layers is the checkpoint's word, and may be huge.
        missing = itertools.islice(((name, i) for i in layers if (name, i) not in arrays), 3)
        missing = [describe(m) for m in missing]
        if missing:
            raise CheckpointError(f"{source}: missing parameter(s) {', '.join(missing)}")
        wanted = [(name, i) for i in layers]
        target = leaf.shape[1:] if stacked else leaf.shape
        for w in wanted:
            array = arrays[w]
            if not _is_float(array.dtype):
                raise CheckpointError(
                    f"{source}: {describe(w)} has dtype {array.dtype}, expected floats"
                )
            if tuple(array.shape) != target:
                raise CheckpointError(
                    f"{source}: {describe(w)} has shape {tuple(array.shape)}, expected {target} "
                    "for this config"
                )
        plan.append((name, stacked, wanted))
    used = {w for _, _, wanted in plan for w in wanted}
    extra = [k for k in arrays if k not in used]
    if extra:
        raise CheckpointError(
            f"{source}: unexpected parameter(s) {', '.join(describe(k) for k in extra[:5])}"
        )
    filled, plan, non_finite = [], iter(plan), []
    for _, leaf in leaves:
        if not isinstance(leaf, jax.ShapeDtypeStruct):
            filled.append(leaf)
            continue
        name, stacked, wanted = next(plan)
        out = np.empty(leaf.shape, np.float32) if stacked else None
        for w in wanted:
            array = arrays.pop(w)
            if hasattr(array, "load"):  # read lazily, so that it is freed once copied
                array = array.load()
            if not np.isfinite(array).all():
                non_finite.append(describe(w))
            if out is not None and stacked:
                out[w[1]] = array
            else:
                out = array
        assert out is not None  # every leaf has at least one wanted array
        if dtype == jnp.float16 and np.abs(out).max(initial=0) > np.finfo(np.float16).max:
            non_finite.append(f"{name} (beyond float16's range)")
        filled.append(jnp.asarray(out, dtype))
        del out
    if non_finite:
        warnings.warn(
            f"{source}: NaN or infinite weights in {', '.join(non_finite[:5])}"
            + (f" and {len(non_finite) - 5} more" if len(non_finite) > 5 else ""),
            RuntimeWarning,
            stacklevel=4,
        )
    return jax.tree_util.tree_unflatten(treedef, filled)

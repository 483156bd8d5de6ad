"""Filling a model skeleton from named arrays, with every name, shape and dtype checked."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .._config import ModelConfig
from .._model import NucleotideTransformer
from ._errors import CheckpointError

# A parameter's name is its path in the model (".blocks.attention.query.weight"); per-layer
# arrays come as (name, layer) and are stacked along the leading layer axis.
Name = tuple[str, int | None]


def parameter_arrays(model: NucleotideTransformer) -> dict[str, np.ndarray]:
    """Every parameter by name, as float32 NumPy arrays (per-layer ones stacked)."""
    leaves = jax.tree_util.tree_flatten_with_path(eqx.filter(model, eqx.is_array))[0]
    return {jax.tree_util.keystr(path): np.asarray(x, np.float32) for path, x in leaves}


def build_model(
    config: ModelConfig,
    arrays: dict[Name, Any],
    source: str,
    describe: Callable[[Name], str],
    dtype=None,
) -> NucleotideTransformer:
    """The model of `config` with its parameters taken from `arrays` (consumed as it goes, to
    keep peak memory near one copy). `describe` names an entry by the checkpoint's own key,
    for error messages."""
    skeleton = eqx.filter_eval_shape(NucleotideTransformer, config, key=jr.key(0))
    leaves, treedef = jax.tree_util.tree_flatten_with_path(skeleton)
    layers = config.num_layers
    filled = []
    for path, leaf in leaves:
        if not isinstance(leaf, jax.ShapeDtypeStruct):
            filled.append(leaf)
            continue
        name = jax.tree_util.keystr(path)
        stacked = name.startswith(".blocks.")
        wanted = [(name, i) for i in range(layers)] if stacked else [(name, None)]
        missing = [w for w in wanted if w not in arrays]
        if missing:
            what = ", ".join(describe(m) for m in missing[:3])
            raise CheckpointError(f"{source}: missing parameter(s) {what}")
        target = leaf.shape[1:] if stacked else leaf.shape
        out = np.empty(leaf.shape, np.float32) if stacked else None
        for w in wanted:
            array = arrays.pop(w)
            if hasattr(array, "load"):  # read lazily, so that it is freed once copied
                array = array.load()
            label = describe(w)
            if not (np.issubdtype(array.dtype, np.floating) or array.dtype == jnp.bfloat16):
                raise CheckpointError(f"{source}: {label} has dtype {array.dtype}, expected floats")
            if array.shape != target:
                raise CheckpointError(
                    f"{source}: {label} has shape {array.shape}, expected {target} for this config"
                )
            if stacked:
                out[w[1]] = array
            else:
                out = array
        filled.append(jnp.asarray(out, dtype or jnp.float32))
        del out
    if arrays:
        extra = ", ".join(describe(k) for k in list(arrays)[:5])
        raise CheckpointError(f"{source}: unexpected parameter(s) {extra}")
    return jax.tree_util.tree_unflatten(treedef, filled)

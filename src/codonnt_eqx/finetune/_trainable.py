"""Which parameters train in each fine-tuning mode: a filter spec for `eqx.partition`."""

from __future__ import annotations

from typing import Literal

import equinox as eqx
import jax

from ._adapter import Adapter

Mode = Literal["probe", "ia3", "lora", "full"]
MODES: tuple[str, ...] = ("probe", "ia3", "lora", "full")


def _is_adapter(node) -> bool:
    return isinstance(node, Adapter)


def _adapter_spec(node: Adapter):
    spec = jax.tree.map(lambda _: False, node)
    names = node.trainable()
    return eqx.tree_at(lambda s: tuple(getattr(s, n) for n in names), spec, (True,) * len(names))


def trainable_filter(tree, mode: Mode):
    """A filter spec (same structure as `tree`, bool leaves) of what trains in `mode`:
    nothing (`"probe"`: the model is frozen), the adapter vectors and matrices only (`"ia3"`,
    `"lora"`: never a base weight), or every floating array (`"full"`).

    ```python
    trainable, frozen = eqx.partition(model, trainable_filter(model, "lora"))
    model = eqx.combine(trainable, frozen)
    ```
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "full":
        return jax.tree.map(eqx.is_inexact_array, tree)
    if mode == "probe":
        return jax.tree.map(lambda _: False, tree)
    return jax.tree.map(
        lambda node: _adapter_spec(node) if _is_adapter(node) else False,
        tree,
        is_leaf=_is_adapter,
    )

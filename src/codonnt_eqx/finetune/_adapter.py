"""What an adapter is: a module wrapping a frozen base `Linear` with a few trainable arrays.
IA³ and LoRA subclass it; this file knows neither, so both can check for adapters."""

from __future__ import annotations

import equinox as eqx
import jax

from ..model import Linear


class Adapter(eqx.Module):
    """A frozen base layer plus trainable arrays, `trainable()` naming them."""

    base: eqx.AbstractVar[Linear]

    def trainable(self) -> tuple[str, ...]:
        """The names of the fields that train (the base never does)."""
        raise NotImplementedError


def _is_adapter(node) -> bool:
    return isinstance(node, Adapter)


def has_adapters(tree) -> bool:
    return any(_is_adapter(x) for x in jax.tree.leaves(tree, is_leaf=_is_adapter))


def check_no_adapters(model) -> None:
    if has_adapters(model):
        raise ValueError("the model already has adapters; add IA3 or LoRA to a base model once")

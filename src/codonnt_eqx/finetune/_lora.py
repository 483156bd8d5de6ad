"""LoRA (Hu et al. 2021): a trainable low-rank update B A beside chosen frozen projections,
added to a model by tree surgery. The base weights are not touched."""

from __future__ import annotations

import math
from collections.abc import Sequence

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from ..model import Linear, NucleotideTransformer, linear_product
from ._adapter import Adapter, check_no_adapters

# Where LoRA may go, as paths inside a block.
LORA_TARGETS: dict[str, tuple[str, str]] = {
    "query": ("attention", "query"),
    "key": ("attention", "key"),
    "value": ("attention", "value"),
    "output": ("attention", "output"),
    "fc1": ("ffn", "fc1"),
    "fc2": ("ffn", "fc2"),
}


class LoRALinear(Adapter):
    """A frozen `Linear` plus `scaling * x A^T B^T`; with B = 0 it is the base layer exactly.

    Inside a model A and B carry the blocks' stacked layer axis, like the base weights.
    """

    base: Linear
    a: Float[Array, "*layers rank in"]
    b: Float[Array, "*layers out rank"]
    scaling: float = eqx.field(static=True)

    def trainable(self) -> tuple[str, ...]:
        return ("a", "b")

    def __call__(self, x: Float[Array, "length in"]) -> Float[Array, "length out"]:
        dtype = self.base.options.compute_dtype  # the run options of the layer it adapts
        low = linear_product(x, self.a, dtype)
        return self.base(x) + linear_product(low, self.b, dtype) * self.scaling


def add_lora(
    model: NucleotideTransformer,
    *,
    rank: int = 8,
    alpha: float = 16.0,
    targets: Sequence[str] = ("query", "value"),
    key: PRNGKeyArray,
) -> NucleotideTransformer:
    """`model` with LoRA updates on the chosen projections of every block.

    **Arguments:**

    - `model`: a `NucleotideTransformer` without adapters.
    - `rank`: the rank r of each update; `alpha`: the update is scaled by alpha / r.
    - `targets`: names from `LORA_TARGETS` (`query`, `key`, `value`, `output`, `fc1`, `fc2`);
      the LoRA paper's default is query and value.
    - `key`: PRNG key for A (Gaussian, variance 1 / fan-in); B starts at zero, so the adapted
      model's outputs are the base model's exactly until B is trained.

    **Returns:** the model with `LoRALinear` layers in place of the targets.
    """

    check_no_adapters(model)
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"rank must be a positive integer, got {rank!r}")
    if not (isinstance(alpha, int | float) and math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be a positive number, got {alpha!r}")
    targets = list(dict.fromkeys(targets))
    unknown = [t for t in targets if t not in LORA_TARGETS]
    if unknown or not targets:
        raise ValueError(f"LoRA targets must be some of {list(LORA_TARGETS)}, got {targets}")
    layers = model.config.num_layers

    def where(target):
        group, name = LORA_TARGETS[target]
        return lambda m: getattr(getattr(m.blocks, group), name)

    new = []
    for target, k in zip(targets, jr.split(key, len(targets)), strict=True):
        base = where(target)(model)
        out_features, in_features = base.weight.shape[-2:]
        a = jr.normal(k, (layers, rank, in_features)) / math.sqrt(in_features)
        b = jnp.zeros((layers, out_features, rank), jnp.float32)
        new.append(LoRALinear(base, a, b, float(alpha) / rank))
    return eqx.tree_at(lambda m: tuple(where(t)(m) for t in targets), model, tuple(new))

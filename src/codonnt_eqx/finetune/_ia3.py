"""IA³ (Liu et al. 2022): learned vectors rescaling keys, values and the feed-forward hidden
activations, added to a model by tree surgery. The base weights are not touched."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

from ..model import Linear, NucleotideTransformer
from ._adapter import Adapter, check_no_adapters


class IA3Linear(Adapter):
    """A frozen `Linear` whose output (`on_input=False`) or input (`on_input=True`) is
    multiplied by a learned vector; with a vector of ones it is the base layer exactly.

    Inside a model the vector carries the blocks' stacked layer axis, like the base weights.
    """

    base: Linear
    scale: Float[Array, "*layers features"]
    on_input: bool = eqx.field(static=True)

    def trainable(self) -> tuple[str, ...]:
        return ("scale",)

    def __call__(self, x: Float[Array, "length in"]) -> Float[Array, "length out"]:
        if self.on_input:
            return self.base(x * self.scale.astype(x.dtype))
        return self.base(x) * self.scale.astype(self.base.options.compute_dtype)


def add_ia3(model: NucleotideTransformer) -> NucleotideTransformer:
    """`model` with IA³ vectors, all ones, on the key and value projections and on the input
    of the second feed-forward layer (the hidden activations) of every block, as IA³ and the
    Nucleotide Transformer fine-tuning recipe place them.

    **Arguments:**

    - `model`: a `NucleotideTransformer` without adapters.

    **Returns:** the same model with `IA3Linear` layers in place of those three `Linear`s; its
    outputs are the base model's exactly until the vectors are trained.

    ```python
    adapted = add_ia3(model)
    trainable, frozen = eqx.partition(adapted, trainable_filter(adapted, "ia3"))
    ```
    """

    check_no_adapters(model)
    attention, ffn = model.blocks.attention, model.blocks.ffn
    layers = model.config.num_layers

    def ones(n: int):
        return jnp.ones((layers, n), jnp.float32)

    return eqx.tree_at(
        lambda m: (m.blocks.attention.key, m.blocks.attention.value, m.blocks.ffn.fc2),
        model,
        (
            IA3Linear(attention.key, ones(attention.key.weight.shape[-2]), False),
            IA3Linear(attention.value, ones(attention.value.weight.shape[-2]), False),
            IA3Linear(ffn.fc2, ones(ffn.fc2.weight.shape[-1]), True),
        ),
    )

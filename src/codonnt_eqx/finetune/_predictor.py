"""A model with a task head: token ids in, one prediction per sequence or per token out."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from ..kernels import Implementation
from ..model import NucleotideTransformer
from ._heads import SequenceHead, TokenHead


def representation(
    model: NucleotideTransformer,
    tokens: Int[Array, " length"],
    layer: int,
    *,
    attention: Implementation = "auto",
    dtype=jnp.float32,
) -> Float[Array, "length embed"]:
    """One sequence's representations after `layer`: 0 is the input embedding, n the output
    of block n, and `num_layers` (or -1) the final embeddings after the last LayerNorm."""
    layers = model.config.num_layers
    index = layer + layers + 1 if layer < 0 else layer
    if not 0 <= index <= layers:
        raise ValueError(f"layer {layer} is outside 0..{layers} (or -{layers + 1}..-1)")
    if index == layers:
        return model(tokens, attention=attention, dtype=dtype).embeddings
    return model(tokens, attention=attention, dtype=dtype, hidden_states=True).hidden_states[index]


def keep_mask(
    tokens: Int[Array, " length"], special_ids: tuple[int, ...]
) -> Bool[Array, " length"]:
    """The positions that are sequence tokens (not `<cls>`, `<pad>` or another special)."""
    return ~jnp.isin(tokens, jnp.asarray(special_ids, dtype=tokens.dtype))


class Finetuned(eqx.Module):
    """A `NucleotideTransformer` (possibly with IA³/LoRA adapters) and a task head.

    One call handles one token sequence (batch with `jax.vmap`) and returns the head's output:
    [out] for a `SequenceHead`, [length, out] for a `TokenHead` (regression: standardised
    units; classes: logits).
    """

    model: NucleotideTransformer
    head: SequenceHead | TokenHead
    layer: int = eqx.field(static=True)
    special_ids: tuple[int, ...] = eqx.field(static=True)

    def __call__(
        self,
        tokens: Int[Array, " length"],
        *,
        attention: Implementation = "auto",
        dtype=jnp.float32,
    ) -> Float[Array, "*length out"]:
        reps = representation(self.model, tokens, self.layer, attention=attention, dtype=dtype)
        return self.head(reps, keep_mask(tokens, self.special_ids))

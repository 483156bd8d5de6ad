"""A model with a task head: token ids in, one prediction per sequence or per token out."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from ..model import NucleotideTransformer, with_legacy_options
from ._heads import SequenceHead, TokenHead


def representation(
    model: NucleotideTransformer,
    tokens: Int[Array, " length"],
    layer: int,
    *,
    attention: str | None = None,
    dtype=None,
) -> Float[Array, "length embed"]:
    """One sequence's representations after `layer`: 0 is the input embedding, n the output
    of block n, and `num_layers` (or -1) the final embeddings after the last LayerNorm.
    Computed with the model's run options (`attention`, `dtype` here are deprecated)."""
    model = with_legacy_options(model, "representation", attention=attention, dtype=dtype)
    layers = model.config.num_layers
    index = layer + layers + 1 if layer < 0 else layer
    if not 0 <= index <= layers:
        raise ValueError(f"layer {layer} is outside 0..{layers} (or -{layers + 1}..-1)")
    if index == layers:
        return model(tokens).embeddings
    states = model(tokens, hidden_states=True).hidden_states
    assert states is not None  # asked for
    return states[index]


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
        attention: str | None = None,
        dtype=None,
    ) -> Float[Array, "*length out"]:
        """The head's output for one sequence, with the model's run options (`attention`,
        `dtype` here are deprecated: `with_options(finetuned, ...)`)."""
        model = with_legacy_options(self.model, "Finetuned", attention=attention, dtype=dtype)
        reps = representation(model, tokens, self.layer)
        return self.head(reps, keep_mask(tokens, self.special_ids))

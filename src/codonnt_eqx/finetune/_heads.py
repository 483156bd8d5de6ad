"""Prediction heads on a model's representations: pooled per sequence, or per token."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, PRNGKeyArray


def mean_pool(
    representations: Float[Array, "length embed"], keep: Bool[Array, " length"]
) -> Float[Array, " embed"]:
    """Mean over the kept positions (the non-special, non-pad tokens); zeros if none."""
    weights = keep.astype(representations.dtype)
    total = jnp.sum(representations * weights[:, None], axis=0)
    return total / jnp.maximum(jnp.sum(weights), 1.0)


class Head(eqx.Module):
    """A linear layer (`hidden=None`) or a one-hidden-layer GELU MLP on one vector.

    **Arguments (constructor):**

    - `in_features`: the representation width (the model's `embed_dim`).
    - `out_features`: 1 for regression, the number of classes otherwise.
    - `hidden`: width of the hidden layer, or None for a linear head.
    - `key`: PRNG key.
    """

    mlp: eqx.nn.MLP
    in_features: int = eqx.field(static=True)
    out_features: int = eqx.field(static=True)
    hidden: int | None = eqx.field(static=True)

    def __init__(
        self, in_features: int, out_features: int, hidden: int | None, *, key: PRNGKeyArray
    ):
        self.mlp = eqx.nn.MLP(
            in_features,
            out_features,
            width_size=hidden or in_features,
            depth=0 if hidden is None else 1,
            activation=jax.nn.gelu,
            key=key,
        )
        self.in_features, self.out_features, self.hidden = in_features, out_features, hidden

    def __call__(self, x: Float[Array, " embed"]) -> Float[Array, " out"]:
        return self.mlp(x)


class SequenceHead(eqx.Module):
    """Mean-pools the non-special tokens of one sequence, then applies a `Head`."""

    head: Head

    def __call__(
        self, representations: Float[Array, "length embed"], keep: Bool[Array, " length"]
    ) -> Float[Array, " out"]:
        return self.head(mean_pool(representations, keep))


class TokenHead(eqx.Module):
    """Applies a `Head` to every token of one sequence (per-residue tasks)."""

    head: Head

    def __call__(
        self, representations: Float[Array, "length embed"], keep: Bool[Array, " length"]
    ) -> Float[Array, "length out"]:
        del keep  # every position gets a prediction; the loss decides which count
        return jax.vmap(self.head)(representations)

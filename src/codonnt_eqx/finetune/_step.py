"""Task losses and the pure, jitted training step (model or head alike)."""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, Int

from ..model import legacy_options, with_options
from ..parallel import LowerableJit, is_dynamic


def task_loss(
    kind: str,
    outputs: Float[Array, "batch *length out"],
    targets: Array,
    weights: Float[Array, " batch"],
) -> Float[Array, ""]:
    """Mean squared error on standardised targets (regression) or cross-entropy (classes; per
    residue over the labelled tokens, targets of -1 left out), weighted per row."""
    if kind == "regression":
        errors = jnp.square(outputs[:, 0] - targets)
        return jnp.sum(errors * weights) / jnp.maximum(jnp.sum(weights), 1.0)
    labelled = targets >= 0
    safe = jnp.where(labelled, targets, 0)
    losses = optax.softmax_cross_entropy_with_integer_labels(outputs, safe)
    mask = labelled * (weights[:, None] if targets.ndim == 2 else weights)
    return jnp.sum(losses * mask) / jnp.maximum(jnp.sum(mask), 1.0)


class FinetuneStep:
    """The jitted fine-tuning step of `make_step`: called on concrete arguments, or `.trace`d
    from abstract ones (`jax.ShapeDtypeStruct`s) to compile ahead of time."""

    def __init__(self, jitted: LowerableJit):
        self._jitted = jitted

    def __call__(self, frozen, trainable, opt_state, inputs, targets, weights):
        static = eqx.filter(trainable, is_dynamic, inverse=True)
        trainable, opt_state, loss = self._jitted(
            frozen, trainable, opt_state, inputs, targets, weights
        )
        return eqx.combine(trainable, static), opt_state, loss

    def trace(self, *args) -> jax.stages.Traced:
        return self._jitted.trace(*args)


def make_step(
    forward: Callable, kind: str, optimizer: optax.GradientTransformation
) -> FinetuneStep:
    """`step(frozen, trainable, opt_state, inputs, targets, weights) -> (trainable, opt_state,
    loss)`: one Adam step on `trainable`, jitted once per input shape. `forward(combined,
    inputs)` maps the recombined module and a batch of inputs to outputs. The trainable part
    and the optimiser state are donated; the frozen part (the base weights) is never written.
    `step.trace(...)` takes the same arguments with `jax.ShapeDtypeStruct`s for arrays and
    returns the traced step, to compile ahead of time (see `TrainStep`).
    """

    def loss_fn(trainable, frozen, inputs, targets, weights):
        return task_loss(kind, forward(eqx.combine(trainable, frozen), inputs), targets, weights)

    def update(frozen, trainable, opt_state, inputs, targets, weights):
        loss, grads = eqx.filter_value_and_grad(loss_fn)(
            trainable, frozen, inputs, targets, weights
        )
        updates, opt_state = optimizer.update(grads, opt_state, trainable)
        trainable = eqx.filter(eqx.apply_updates(trainable, updates), eqx.is_array)
        return trainable, opt_state, loss

    return FinetuneStep(LowerableJit(update, donate_argnums=(1, 2)))


def sequence_forward(attention: str | None = None, dtype=None) -> Callable:
    """forward(finetuned, tokens [B, L]) -> outputs, for fine-tuning through the model, with
    its run options (`attention`, `dtype` here are deprecated: `with_options(finetuned, ...)`).
    """
    legacy = legacy_options("sequence_forward", attention=attention, dtype=dtype)

    def forward(finetuned, tokens: Int[Array, "batch length"]):
        if legacy:
            finetuned = with_options(finetuned, **legacy)
        return jax.vmap(finetuned)(tokens)

    return forward


def feature_forward(head, features: Float[Array, "batch embed"]):
    """forward(head, features [B, embed]) -> outputs [B, out], for the probe."""
    return jax.vmap(head)(features)

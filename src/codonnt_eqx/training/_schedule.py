"""The Codon-NT learning-rate schedule and optimiser (the seed's recipe)."""

from __future__ import annotations

import math

import jax.numpy as jnp
import optax
from jaxtyping import Array, ArrayLike, Float, Int


def _check_positive(name: str, value: float) -> float:
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be positive and finite, got {value!r}")
    return value


def warmup_sqrt_decay(
    *, init_value: float = 5e-5, peak_value: float = 1e-4, warmup_steps: int = 16_000
) -> optax.Schedule:
    """Linear warmup, then inverse-square-root decay: Codon-NT's learning-rate schedule.

    `lr(t) = init_value + (peak_value - init_value) * t / warmup_steps` for
    `t < warmup_steps`, and `lr(t) = peak_value * sqrt(warmup_steps / t)` from
    `t = warmup_steps` on; the two pieces meet at `peak_value`. Negative steps count as 0.

    **Arguments:**

    - `init_value`: learning rate at step 0 (Codon-NT: 5e-5).
    - `peak_value`: learning rate at the end of the warmup (1e-4).
    - `warmup_steps`: length of the warmup in optimiser steps, an int >= 1 (16,000).

    **Returns:**

    An `optax.Schedule`: step (int, or an int array such as optax's int32 count) -> float32
    learning rate. Jit-able.

    ```python
    schedule = warmup_sqrt_decay()
    schedule(0), schedule(16_000), schedule(64_000)  # 5e-5, 1e-4, 5e-5
    ```
    """
    init_value = _check_positive("init_value", init_value)
    peak_value = _check_positive("peak_value", peak_value)
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 1:
        raise ValueError(f"warmup_steps must be an int >= 1, got {warmup_steps!r}")
    warmup = float(warmup_steps)

    def schedule(step: Int[ArrayLike, ""]) -> Float[Array, ""]:
        t = jnp.maximum(jnp.asarray(step).astype(jnp.float32), 0.0)
        # Weights warmup - t and t are exact in float32 (steps < 2^24), so the interpolation
        # stays accurate to a few ulps when init_value > peak_value too.
        rising = (init_value * (warmup - t) + peak_value * t) / warmup
        # The maximum keeps the untaken branch finite at t = 0 (no division by zero).
        decaying = peak_value * jnp.sqrt(warmup / jnp.maximum(t, warmup))
        return jnp.where(t < warmup, rising, decaying)

    return schedule


def codon_nt_optimizer(
    schedule: optax.ScalarOrSchedule | None = None,
    *,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
) -> optax.GradientTransformation:
    """Adam with Codon-NT's learning-rate schedule.

    **Arguments:**

    - `schedule`: learning rate, a float or an `optax.Schedule` of the step; default
      `warmup_sqrt_decay()`.
    - `b1`, `b2`: Adam's decay rates of the first and second moment estimates, in [0, 1).
    - `eps`: Adam's epsilon, added to the root of the second moment, > 0.

    **Returns:**

    An `optax.GradientTransformation` (`optax.adam`): the first update uses the schedule at
    step 0.

    ```python
    optimiser = codon_nt_optimizer()
    state = optimiser.init(eqx.filter(model, eqx.is_array))
    ```
    """
    for name, value in (("b1", b1), ("b2", b2)):
        if not 0.0 <= float(value) < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    _check_positive("eps", eps)
    if schedule is None:
        schedule = warmup_sqrt_decay()
    return optax.adam(learning_rate=schedule, b1=b1, b2=b2, eps=eps)

"""The warmup + inverse-square-root schedule against a float64 formula, and the optimiser
against a NumPy Adam."""

import math

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings

from codonnt_eqx.training._schedule import codon_nt_optimizer, warmup_sqrt_decay


def reference_lr(step, init_value=5e-5, peak_value=1e-4, warmup_steps=16_000):
    step = max(step, 0)
    if step < warmup_steps:
        return init_value + (peak_value - init_value) * step / warmup_steps
    return peak_value * math.sqrt(warmup_steps / step)


def test_codon_nt_values():
    schedule = warmup_sqrt_decay()
    expected = {0: 5e-5, 8_000: 7.5e-5, 16_000: 1e-4, 64_000: 5e-5, 1_600_000: 1e-5}
    for step, value in expected.items():
        np.testing.assert_allclose(float(schedule(step)), value, rtol=1e-6, err_msg=step)
    assert schedule(jnp.int32(0)).dtype == jnp.float32


@settings(max_examples=25)  # one compilation each
@given(
    init_value=st.floats(1e-7, 1e-2),
    peak_value=st.floats(1e-6, 1e-1),
    warmup_steps=st.integers(1, 50_000),
    steps=st.lists(st.integers(0, 2_000_000), min_size=11, max_size=11),
)
def test_schedule_matches_the_formula(init_value, peak_value, warmup_steps, steps):
    schedule = warmup_sqrt_decay(
        init_value=init_value, peak_value=peak_value, warmup_steps=warmup_steps
    )
    steps = [*steps, 0, warmup_steps - 1, warmup_steps, warmup_steps + 1, 4 * warmup_steps]
    # The step arrives as optax's int32 count, inside jit; vmap feeds it one step at a time.
    got = jax.jit(jax.vmap(schedule))(jnp.asarray(steps, jnp.int32))
    expected = [reference_lr(s, init_value, peak_value, warmup_steps) for s in steps]
    np.testing.assert_allclose(np.asarray(got), expected, rtol=2e-6)


def test_schedule_is_continuous_and_rises_then_falls():
    warmup = 1000
    schedule = jax.jit(jax.vmap(warmup_sqrt_decay(warmup_steps=warmup)))
    lr = np.asarray(schedule(jnp.arange(20 * warmup, dtype=jnp.int32)), np.float64)
    assert np.all(np.diff(lr[: warmup + 1]) > 0)  # rising up to the join
    assert np.all(np.diff(lr[warmup:]) < 0)  # falling after it
    assert lr.argmax() == warmup and lr.max() == pytest.approx(1e-4, rel=1e-6)
    # Steps on either side of the join differ by about one warmup increment, (peak-init)/warmup.
    np.testing.assert_allclose(lr[warmup] - lr[warmup - 1], 5e-5 / warmup, rtol=1e-2)
    np.testing.assert_allclose(lr[warmup] - lr[warmup + 1], 1e-4 / (2 * warmup), rtol=1e-2)
    assert float(schedule(jnp.array([-5], jnp.int32))[0]) == pytest.approx(5e-5, rel=1e-6)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(init_value=0.0),
        dict(init_value=-1e-5),
        dict(peak_value=math.inf),
        dict(peak_value=math.nan),
        dict(warmup_steps=0),
        dict(warmup_steps=-3),
    ],
)
def test_invalid_schedule_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        warmup_sqrt_decay(**kwargs)


def test_non_integer_warmup_raises():
    with pytest.raises((ValueError, TypeError)):  # TypeError from the test run's type checker
        warmup_sqrt_decay(warmup_steps=1.5)


def numpy_adam(params, grads_per_step, lrs, b1, b2, eps):
    """Adam (Kingma & Ba, algorithm 1) in float64."""
    m = np.zeros_like(params)
    v = np.zeros_like(params)
    updates = []
    for t, (g, lr) in enumerate(zip(grads_per_step, lrs, strict=True), start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        m_hat = m / (1 - b1**t)
        v_hat = v / (1 - b2**t)
        updates.append(-lr * m_hat / (np.sqrt(v_hat) + eps))
    return updates


def test_optimizer_is_adam_with_the_schedule():
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)}
    # The last row's gradients are tiny, so that eps (1e-6 here) changes their updates.
    scale = np.array([[1.0], [30.0], [1e-6]])
    grads = [(scale * rng.normal(size=(3, 4))).astype(np.float32) for _ in range(3)]
    schedule = warmup_sqrt_decay(init_value=1e-3, peak_value=2e-3, warmup_steps=2)
    b1, b2, eps = 0.8, 0.95, 1e-6
    optimizer = codon_nt_optimizer(schedule, b1=b1, b2=b2, eps=eps)
    state = optimizer.init(params)
    got = []
    for g in grads:
        update, state = jax.jit(optimizer.update)({"w": jnp.asarray(g)}, state, params)
        got.append(np.asarray(update["w"]))
    # Steps 0, 1, 2 of the schedule: 1e-3, 1.5e-3, 2e-3.
    expected = numpy_adam(np.asarray(params["w"]), grads, [1e-3, 1.5e-3, 2e-3], b1, b2, eps)
    for step, (g, e) in enumerate(zip(got, expected, strict=True)):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-12, err_msg=f"step {step}")


def test_default_optimizer_first_step_is_the_initial_rate_times_the_sign():
    grads = {"w": jnp.array([3.0, -0.5, 2e-3, -40.0])}
    optimizer = codon_nt_optimizer()
    update, _ = optimizer.update(grads, optimizer.init(grads))
    # Adam's first step is -lr * g / (|g| + eps) with lr = lr(0) = 5e-5. float32 Adam's bias
    # correction 1 - 0.999 is 1.3e-5 off (0.999 is not a float32), hence the tolerance.
    expected = -5e-5 * np.asarray(grads["w"]) / (np.abs(np.asarray(grads["w"])) + 1e-8)
    np.testing.assert_allclose(update["w"], expected, rtol=2e-5)


def test_optimizer_accepts_a_constant_rate():
    grads = {"w": jnp.array([1.0, -2.0])}
    optimizer = codon_nt_optimizer(1e-2)
    update, _ = optimizer.update(grads, optimizer.init(grads))
    np.testing.assert_allclose(update["w"], [-1e-2, 1e-2], rtol=2e-5)
    assert isinstance(optimizer, optax.GradientTransformation)


@pytest.mark.parametrize("kwargs", [dict(b1=1.0), dict(b2=-0.1), dict(eps=0.0)])
def test_invalid_optimizer_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        codon_nt_optimizer(**kwargs)

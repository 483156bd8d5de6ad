"""Several `Linear`s on one input as one product (the attention's q, k, v projections):
same outputs and gradients as the layers one by one, against float64 NumPy; adapters keep
their own call."""

import equinox as eqx
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings

from codonnt_eqx.model import Linear, with_options
from codonnt_eqx.model._layers import _stacked_linear


def layers(sizes, inner, seed, dtype):
    keys = jax.random.split(jax.random.key(seed), 2 * len(sizes))
    out = []
    for i, size in enumerate(sizes):
        layer = Linear(inner, size, True, key=keys[2 * i])
        bias = jax.random.normal(keys[2 * i + 1], (size,))
        out.append(with_options(eqx_replace(layer, bias=bias), dtype=dtype))
    return tuple(out)


def eqx_replace(layer, **fields):
    return eqx.tree_at(lambda m: [getattr(m, f) for f in fields], layer, list(fields.values()))


# bfloat16: inputs and outputs rounded to 8 significant bits; float32: accumulation only.
RTOL = {"float32": 1e-5, "bfloat16": 2**-6}


@settings(max_examples=10, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 24), min_size=1, max_size=4),
    rows=st.integers(1, 20),
    inner=st.integers(1, 32),
    dtype=st.sampled_from(sorted(RTOL)),
    seed=st.integers(0, 2**16),
)
def test_stacked_outputs_and_gradients_match_float64_and_the_layers_one_by_one(
    sizes, rows, inner, dtype, seed
):
    stack = layers(sizes, inner, seed, dtype)
    x = jax.random.normal(jax.random.key(seed + 1), (rows, inner))
    ys = _stacked_linear(stack, x)
    assert [y.shape for y in ys] == [(rows, s) for s in sizes]
    xr = np.asarray(x, np.float64)
    for y, layer in zip(ys, stack, strict=True):
        w, b = np.asarray(layer.weight, np.float64), np.asarray(layer.bias, np.float64)
        want = xr @ w.T + b
        size = np.abs(xr) @ np.abs(w).T + np.abs(b)
        assert y.dtype == jnp.dtype(dtype)
        np.testing.assert_array_less(
            np.abs(np.asarray(y, np.float64) - want), RTOL[dtype] * size + 1e-30
        )

    def loss(stack, x, stacked):
        outs = _stacked_linear(stack, x) if stacked else tuple(layer(x) for layer in stack)
        # A different weight per output so a swapped or misplaced slice changes the loss.
        return sum(jnp.sum(jnp.sin(y.astype(jnp.float32) * (i + 1))) for i, y in enumerate(outs))

    got = jax.grad(loss, argnums=(0, 1))(stack, x, True)
    want = jax.grad(loss, argnums=(0, 1))(stack, x, False)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        scale = float(jnp.max(jnp.abs(w))) + 1e-6
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), atol=RTOL[dtype] * 4 * scale)


class Scaled(Linear):
    """A `Linear` subclass standing in for an adapter: its own call must be used."""

    def __call__(self, x):
        return 2.0 * super().__call__(x)


def test_a_layer_that_is_not_a_plain_linear_keeps_its_own_call():
    plain = layers([5, 6], 7, 0, "float32")
    odd = Scaled(7, 6, True, key=jax.random.key(3))
    x = jax.random.normal(jax.random.key(1), (3, 7))
    first, second = _stacked_linear((plain[0], odd), x)
    np.testing.assert_allclose(np.asarray(first), np.asarray(plain[0](x)), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(second), np.asarray(odd(x)), rtol=1e-6)
    assert not np.allclose(np.asarray(second), np.asarray(Linear.__call__(odd, x)))


def test_layers_without_bias_or_in_different_dtypes_are_called_one_by_one():
    a, b = layers([4, 4], 5, 2, "float32")
    no_bias = eqx_replace(b, bias=None)
    narrow = with_options(b, dtype="bfloat16")
    x = jax.random.normal(jax.random.key(1), (3, 5))
    for other in (no_bias, narrow):
        y0, y1 = _stacked_linear((a, other), x)
        np.testing.assert_allclose(np.asarray(y1, np.float32), np.asarray(other(x), np.float32))
        assert y1.dtype == other(x).dtype

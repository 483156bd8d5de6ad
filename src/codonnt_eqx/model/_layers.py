"""The layers of a Nucleotide Transformer: each works on one sequence [length, embed]."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, Int, PRNGKeyArray

from ..kernels import attention_weights  # pyright: ignore[reportMissingImports]
from ._attend import attend
from ._config import ModelConfig
from ._matmul import linear_product
from ._options import RunOptions

# cos and sin tables [length, head_dim] of the rotary embedding.
Rotary = tuple[Float[Array, "length head_dim"], Float[Array, "length head_dim"]]

# A checkpoint policy: keep only the checkpointed function's inputs for the backward.
_SAVE_NOTHING = jax.checkpoint_policies.nothing_saveable

# Haiku's TruncatedNormal divides by this so that the truncated draw has the asked stddev.
_TRUNCATED_STD = 0.87962566103423978


def truncated_normal(key: PRNGKeyArray, shape: tuple[int, ...], std: float) -> Array:
    return jr.truncated_normal(key, -2.0, 2.0, shape) * (std / _TRUNCATED_STD)


class Linear(eqx.Module):
    """y = x W^T + b with W [out, in] (PyTorch's layout); fan-in variance-scaling init.

    Computes in `options.dtype` (the run options, set by `with_options`)."""

    weight: Float[Array, "out in"]
    bias: Float[Array, " out"] | None
    options: RunOptions = eqx.field(static=True)

    def __init__(self, in_features: int, out_features: int, use_bias: bool, *, key: PRNGKeyArray):
        self.weight = truncated_normal(key, (out_features, in_features), 1 / math.sqrt(in_features))
        self.bias = jnp.zeros((out_features,)) if use_bias else None
        self.options = RunOptions()

    def __call__(self, x: Float[Array, "length in"]) -> Float[Array, "length out"]:
        dtype = self.options.compute_dtype
        y = linear_product(x, self.weight, dtype)
        return y if self.bias is None else y + self.bias.astype(dtype)


class LayerNorm(eqx.Module):
    """LayerNorm over the last axis with statistics in float32 whatever the input dtype."""

    weight: Float[Array, " dim"]
    bias: Float[Array, " dim"]
    eps: float = eqx.field(static=True)

    def __init__(self, dim: int, eps: float):
        self.weight = jnp.ones((dim,))
        self.bias = jnp.zeros((dim,))
        self.eps = eps

    def __call__(self, x: Float[Array, "length dim"]) -> Float[Array, "length dim"]:
        # Checkpointed (see `FeedForward`): the backward keeps x and recomputes the statistics.
        return jax.checkpoint(_layer_norm, policy=_SAVE_NOTHING, static_argnums=(3,))(
            x, self.weight, self.bias, self.eps
        )


def _layer_norm(x: Array, weight: Array, bias: Array, eps: float) -> Array:
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
    y = (x32 - mean) * jax.lax.rsqrt(var + eps) * weight + bias
    return y.astype(x.dtype)


class RotaryEmbedding(eqx.Module):
    """Rotary position embedding, rotate-half convention (cos/sin of concat(freqs, freqs)).

    With rescaling factor s the base 10000 becomes 10000 * s^(dim / (dim - 2)).
    """

    dim: int = eqx.field(static=True)
    rescaling: float = eqx.field(static=True)

    def inverse_frequencies(self) -> Float[Array, " half"]:
        base = 10000.0 * self.rescaling ** (self.dim / (self.dim - 2))
        return 1.0 / base ** (jnp.arange(0, self.dim, 2, dtype=jnp.float32) / self.dim)

    def tables(
        self, length: int, positions: Int[Array, " length"] | None = None
    ) -> tuple[Float[Array, "length dim"], Float[Array, "length dim"]]:
        """cos and sin at positions 0..length-1, or at `positions` (e.g. restarting at 0 at
        each packed sequence)."""
        at = jnp.arange(length) if positions is None else positions
        freqs = jnp.outer(at.astype(jnp.float32), self.inverse_frequencies())
        angles = jnp.concatenate([freqs, freqs], axis=-1)
        return jnp.cos(angles), jnp.sin(angles)

    @staticmethod
    def apply(
        x: Float[Array, "length heads dim"],
        cos: Float[Array, "length dim"],
        sin: Float[Array, "length dim"],
    ) -> Float[Array, "length heads dim"]:
        # In float32 with one rounding at the end: a chain of bfloat16 ops rounds after each
        # and, on XLA:CPU, ran 10-20x slower than the float32 chain (bench/results/amd_zen4/).
        x32 = x.astype(jnp.float32)
        first, second = jnp.split(x32, 2, axis=-1)
        rotated = jnp.concatenate([-second, first], axis=-1)
        y = x32 * cos[:, None, :] + rotated * sin[:, None, :]
        return y.astype(x.dtype)


def _stacked_linear(layers: tuple, x: Float[Array, "length in"]) -> tuple[Array, ...]:
    """Each layer applied to `x`; plain `Linear`s with biases as one product with their weights
    stacked (one pass over `x`, one larger GEMM: faster on CPU, forward and backward), any
    other layer (an adapter of fine-tuning) on its own."""
    plain = all(type(layer) is Linear and layer.bias is not None for layer in layers)
    if not plain or len({layer.options for layer in layers}) != 1:
        return tuple(layer(x) for layer in layers)
    # Checkpointed (see `FeedForward`): the backward concatenates the weights again rather
    # than keep the concatenation, a [layers, sum(out), in] buffer in a scan over layers.
    y = jax.checkpoint(_concatenated, policy=_SAVE_NOTHING)(layers, x)
    sizes = [layer.weight.shape[0] for layer in layers]
    return tuple(jnp.split(y, list(itertools.accumulate(sizes[:-1])), axis=-1))


def _concatenated(layers: tuple, x: Array) -> Array:
    weight = jnp.concatenate([layer.weight for layer in layers])
    bias = jnp.concatenate([layer.bias for layer in layers])
    return eqx.tree_at(lambda m: (m.weight, m.bias), layers[0], (weight, bias))(x)


class SelfAttention(eqx.Module):
    """Multi-head self-attention with biases, optional rotary embeddings and key padding.

    The attention implementation is `options.attention` (set by `with_options`)."""

    query: Linear
    key: Linear
    value: Linear
    output: Linear
    num_heads: int = eqx.field(static=True)
    head_dim: int = eqx.field(static=True)
    options: RunOptions = eqx.field(static=True)

    def __init__(self, config: ModelConfig, *, key: PRNGKeyArray):
        d, h, k = config.embed_dim, config.num_heads, config.head_dim
        kq, kk, kv, ko = jr.split(key, 4)
        self.query = Linear(d, h * k, True, key=kq)
        self.key = Linear(d, h * k, True, key=kk)
        self.value = Linear(d, h * k, True, key=kv)
        self.output = Linear(h * k, d, True, key=ko)
        self.num_heads, self.head_dim = h, k
        self.options = RunOptions()

    def _project(self, x, rotary):
        """Queries, keys and values [length, heads, head_dim], rotary applied."""
        split = (x.shape[0], self.num_heads, self.head_dim)
        q, k, v = (y.reshape(split) for y in _stacked_linear((self.query, self.key, self.value), x))
        if rotary is not None:
            q, k = RotaryEmbedding.apply(q, *rotary), RotaryEmbedding.apply(k, *rotary)
        return q, k, v

    def __call__(
        self,
        x: Float[Array, "length embed"],
        num_valid: Int[Array, ""],
        rotary: Rotary | None,
        segments: Int[Array, " length"] | None = None,
    ) -> Float[Array, "length embed"]:
        q, k, v = self._project(x, rotary)
        ids = None if segments is None else segments[None]
        out = attend(q[None], k[None], v[None], num_valid[None], self.options.attention, ids)[0]
        return self.output(out.reshape(x.shape[0], -1))

    def weights(
        self,
        x: Float[Array, "length embed"],
        num_valid: Int[Array, ""],
        rotary: Rotary | None,
        segments: Int[Array, " length"] | None = None,
    ) -> Float[Array, "heads length length"]:
        """The softmax weights this layer gives `x` (float32; zero on padded keys and on keys
        of other segments)."""
        q, k, _ = self._project(x, rotary)
        ids = None if segments is None else segments[None]
        return attention_weights(q[None], k[None], num_valid[None], segment_ids=ids)[0]


class FeedForward(eqx.Module):
    """GLU (`activation(a) * b` of the two halves of fc1) or classic two-layer MLP."""

    fc1: Linear
    fc2: Linear
    use_glu: bool = eqx.field(static=True)
    activation: str = eqx.field(static=True)

    def __init__(self, config: ModelConfig, *, key: PRNGKeyArray):
        k1, k2 = jr.split(key)
        hidden = config.ffn_dim * (2 if config.use_glu else 1)
        self.fc1 = Linear(config.embed_dim, hidden, config.add_bias_ffn, key=k1)
        self.fc2 = Linear(config.ffn_dim, config.embed_dim, config.add_bias_ffn, key=k2)
        self.use_glu = config.use_glu
        self.activation = config.ffn_activation

    def __call__(self, x: Float[Array, "length embed"]) -> Float[Array, "length embed"]:
        # The activation and fc2 under a checkpoint that saves nothing: the backward keeps fc1's
        # output alone and recomputes the activation from it (elementwise; fc2's product is
        # not needed again), where autodiff would save each of the activation's intermediates
        # (in a scan over layers, [layers, length, hidden] buffers written every step).
        return jax.checkpoint(_activated, policy=_SAVE_NOTHING, static_argnums=(2, 3))(
            self.fc2, self.fc1(x), self.use_glu, self.activation
        )


def _activated(fc2: Callable[[Array], Array], h: Array, use_glu: bool, activation: str) -> Array:
    act = jax.nn.swish if activation == "swish" else _exact_gelu
    # The activation in float32, rounded once (as the rotary embedding's, and faster).
    h32 = h.astype(jnp.float32)
    if use_glu:
        gate, linear = jnp.split(h32, 2, axis=-1)
        h32 = act(gate) * linear
    else:
        h32 = act(h32)
    return fc2(h32.astype(h.dtype))


def _exact_gelu(x):
    return jax.nn.gelu(x, approximate=False)


class Block(eqx.Module):
    """Pre-LayerNorm transformer block: x + MHA(LN(x)), then x + FFN(LN(x))."""

    attention_norm: LayerNorm
    attention: SelfAttention
    ffn_norm: LayerNorm
    ffn: FeedForward

    def __init__(self, config: ModelConfig, *, key: PRNGKeyArray):
        ka, kf = jr.split(key)
        self.attention_norm = LayerNorm(config.embed_dim, config.layer_norm_eps)
        self.attention = SelfAttention(config, key=ka)
        self.ffn_norm = LayerNorm(config.embed_dim, config.layer_norm_eps)
        self.ffn = FeedForward(config, key=kf)

    def __call__(
        self,
        x: Float[Array, "length embed"],
        num_valid: Int[Array, ""],
        rotary: Rotary | None,
        segments: Int[Array, " length"] | None = None,
    ) -> Float[Array, "length embed"]:
        h = self.attention(self.attention_norm(x), num_valid, rotary, segments)
        x = x + h.astype(x.dtype)
        return x + self.ffn(self.ffn_norm(x)).astype(x.dtype)

    def attention_weights(
        self,
        x: Float[Array, "length embed"],
        num_valid: Int[Array, ""],
        rotary: Rotary | None,
        segments: Int[Array, " length"] | None = None,
    ) -> Float[Array, "heads length length"]:
        """The attention weights of this block for its input `x`."""
        return self.attention.weights(self.attention_norm(x), num_valid, rotary, segments)


class LMHead(eqx.Module):
    """RoBERTa LM head: Linear(d, d) -> exact GELU -> LayerNorm -> Linear(d, vocab)."""

    dense: Linear
    norm: LayerNorm
    decoder: Linear

    def __init__(self, config: ModelConfig, *, key: PRNGKeyArray):
        k1, k2 = jr.split(key)
        self.dense = Linear(config.embed_dim, config.embed_dim, True, key=k1)
        self.norm = LayerNorm(config.embed_dim, config.layer_norm_eps)
        self.decoder = Linear(config.embed_dim, config.vocab_size, True, key=k2)

    def __call__(self, x: Float[Array, "length embed"]) -> Float[Array, "length vocab"]:
        return self.decoder(self.norm(_exact_gelu(self.dense(x))))

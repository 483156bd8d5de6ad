"""Plain-JAX attention with the kernels' exact semantics: the attention weights (for the model's
attention maps), and the reference attention built on them (CPU fallback and test oracle)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from ._contract import check_attention_inputs, check_weights_inputs, empty_attention
from ._masking import key_padding, masked_softmax, zero_padded


def _weights(q, k, valid, scale: float) -> jax.Array:
    """float32 [batch, heads, q_len, k_len]; `valid` bool [batch, k_len]."""
    (k,) = zero_padded(valid[:, :, None, None], k)
    f32 = jnp.float32
    s = jnp.einsum("bqhd,bkhd->bhqk", q.astype(f32), k.astype(f32)) * scale
    return masked_softmax(s, valid[:, None, None, :])[0]


def attention_weights(
    q: jax.Array,
    k: jax.Array,
    kv_lengths: ArrayLike | None = None,
    *,
    scale: float | None = None,
) -> jax.Array:
    """Softmax attention weights with key padding, in float32.

    **Arguments:**

    - `q`: [batch, q_len, heads, head_dim]; `k`: [batch, k_len, heads, head_dim], the same
      float32/bfloat16/float16 dtype.
    - `kv_lengths`: int [batch]; keys at positions >= `kv_lengths[b]` get exactly zero weight,
      whatever they hold (even NaN or inf). Clipped to [0, k_len]. `None`: no padding.
    - `scale`: logit scale, default 1/sqrt(head_dim).

    **Returns:** float32 [batch, heads, q_len, k_len]: each row sums to 1 over the valid keys;
    a query with no valid key gets an all-zero row.

    ```python
    w = attention_weights(q, k, jnp.array([5]))  # w[0, h, i, 5:] == 0
    ```
    """
    q, k, lengths, scale = check_weights_inputs(q, k, kv_lengths, scale)
    return _weights(q, k, key_padding(lengths, k.shape[0], k.shape[1]), scale)


def _reference_attention(q, k, v, kv_lengths, scale: float) -> jax.Array:
    """`reference_attention` on checked inputs."""
    valid = key_padding(kv_lengths, k.shape[0], k.shape[1])
    (v,) = zero_padded(valid[:, :, None, None], v)
    p = _weights(q, k, valid, scale)
    return jnp.einsum("bhqk,bkhd->bqhd", p, v.astype(jnp.float32)).astype(q.dtype)


def reference_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    kv_lengths: ArrayLike | None = None,
    *,
    scale: float | None = None,
) -> jax.Array:
    """Bidirectional attention with key padding: `attention_weights` applied to `v`, computed
    in float32 with the full L x L matrix.

    **Arguments:** as `flash_attention`: `q, k, v` [batch, length, heads, head_dim],
    `kv_lengths` int [batch] (keys at positions >= length get zero weight), `scale`
    (default 1/sqrt(head_dim)).

    **Returns:** [batch, length, heads, head_dim] in the dtype of `q`. A query whose keys are all
    padding gets zeros (and zero gradients).
    """
    q, k, v, lengths, scale = check_attention_inputs(q, k, v, kv_lengths, scale)
    if q.size == 0:
        return empty_attention(q)
    return _reference_attention(q, k, v, lengths, scale)

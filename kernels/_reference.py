"""Plain-JAX attention with the kernels' exact semantics: the attention weights (for the model's
attention maps), and the reference attention built on them (CPU fallback and test oracle)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from ._contract import (
    check_attention_inputs,
    check_segment_ids,
    check_weights_inputs,
    empty_attention,
)
from ._masking import attendable, key_padding, masked_softmax, zero_padded


def _weights(q, k, valid, scale: float, segment_ids=None) -> jax.Array:
    """float32 [batch, heads, q_len, k_len]; `valid` bool [batch, k_len]; `segment_ids` int
    [batch, length] or None (q_len == k_len then)."""
    (k,) = zero_padded(valid[:, :, None, None], k)
    f32 = jnp.float32
    s = jnp.einsum("bqhd,bkhd->bhqk", q.astype(f32), k.astype(f32)) * scale
    return masked_softmax(s, attendable(valid, segment_ids))[0]


def attention_weights(
    q: jax.Array,
    k: jax.Array,
    kv_lengths: ArrayLike | None = None,
    *,
    scale: float | None = None,
    segment_ids: ArrayLike | None = None,
) -> jax.Array:
    """Softmax attention weights with key padding, in float32.

    **Arguments:**

    - `q`: [batch, q_len, heads, head_dim]; `k`: [batch, k_len, heads, head_dim], the same
      float32/bfloat16/float16 dtype.
    - `kv_lengths`: int [batch]; keys at positions >= `kv_lengths[b]` get exactly zero weight,
      whatever they hold (even NaN or inf). Clipped to [0, k_len]. `None`: no padding.
    - `scale`: logit scale, default 1/sqrt(head_dim).
    - `segment_ids`: int [batch, length] (q_len == k_len), or None: a query gets weight on
      the keys of its own segment only.

    **Returns:** float32 [batch, heads, q_len, k_len]: each row sums to 1 over the valid keys;
    a query with no valid key gets an all-zero row.

    ```python
    w = attention_weights(q, k, jnp.array([5]))  # w[0, h, i, 5:] == 0
    ```
    """
    q, k, lengths, scale = check_weights_inputs(q, k, kv_lengths, scale)
    if segment_ids is not None and q.shape[1] != k.shape[1]:
        raise ValueError(f"segment_ids need q_len == k_len, got {q.shape[1]} and {k.shape[1]}")
    segments = check_segment_ids(segment_ids, k.shape[0], k.shape[1])
    return _weights(q, k, key_padding(lengths, k.shape[0], k.shape[1]), scale, segments)


def _reference_attention(q, k, v, kv_lengths, scale: float, segment_ids=None) -> jax.Array:
    """`reference_attention` on checked inputs."""
    valid = key_padding(kv_lengths, k.shape[0], k.shape[1])
    (v,) = zero_padded(valid[:, :, None, None], v)
    p = _weights(q, k, valid, scale, segment_ids)
    return jnp.einsum("bhqk,bkhd->bqhd", p, v.astype(jnp.float32)).astype(q.dtype)


def reference_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    kv_lengths: ArrayLike | None = None,
    *,
    scale: float | None = None,
    segment_ids: ArrayLike | None = None,
) -> jax.Array:
    """Bidirectional attention with key padding: `attention_weights` applied to `v`, computed
    in float32 with the full L x L matrix.

    **Arguments:** as `flash_attention`: `q, k, v` [batch, length, heads, head_dim],
    `kv_lengths` int [batch] (keys at positions >= length get zero weight), `scale`
    (default 1/sqrt(head_dim)), `segment_ids` int [batch, length] or None (a query attends
    to keys of its own segment only: several sequences packed in one row).

    **Returns:** [batch, length, heads, head_dim] in the dtype of `q`. A query whose keys are all
    padding gets zeros (and zero gradients).
    """
    q, k, v, lengths, scale = check_attention_inputs(q, k, v, kv_lengths, scale)
    segments = check_segment_ids(segment_ids, *q.shape[:2])
    if q.size == 0:
        return empty_attention(q)
    return _reference_attention(q, k, v, lengths, scale, segments)

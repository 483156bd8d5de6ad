"""Plain-JAX attention with the kernels' exact semantics: the CPU fallback and test oracle."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._tiles import MASK_VALUE


def key_padding(kv_lengths: jax.Array | None, batch: int, length: int) -> jax.Array:
    """bool [batch, length]: True for real keys. `None` means no padding."""
    if kv_lengths is None:
        return jnp.ones((batch, length), bool)
    return jnp.arange(length)[None, :] < jnp.asarray(kv_lengths).reshape(batch, 1)


def zero_padded_keys(k: jax.Array, v: jax.Array, valid: jax.Array):
    """Zero key/value rows at padding: whatever they hold (even NaN) must not reach outputs or
    gradients, and 0 * NaN = NaN."""
    rows = valid[:, :, None, None]
    return jnp.where(rows, k, jnp.zeros_like(k)), jnp.where(rows, v, jnp.zeros_like(v))


def reference_attention(q, k, v, kv_lengths=None, *, scale=None):
    """Bidirectional attention with key padding, computed in float32 with the full L x L matrix.

    **Arguments:** as `flash_attention`: `q, k, v` [batch, length, heads, head_dim],
    `kv_lengths` int [batch] (keys at positions >= length get zero weight), `scale`
    (default 1/sqrt(head_dim)).

    **Returns:** [batch, length, heads, head_dim] in the dtype of `q`. A query whose keys are all
    padding gets zeros (and zero gradients).
    """
    batch, length, _, head_dim = k.shape
    scale = head_dim**-0.5 if scale is None else scale
    valid = key_padding(kv_lengths, batch, length)
    k, v = zero_padded_keys(k, v, valid)
    f32 = jnp.float32
    s = jnp.einsum("bqhd,bkhd->bhqk", q.astype(f32), k.astype(f32)) * scale
    mask = valid[:, None, None, :]
    s = jnp.where(mask, s, MASK_VALUE)
    p = jnp.where(mask, jnp.exp(s - jnp.max(s, axis=-1, keepdims=True)), 0.0)
    total = jnp.sum(p, axis=-1, keepdims=True)
    p = p / jnp.where(total == 0.0, 1.0, total)
    return jnp.einsum("bhqk,bkhd->bqhd", p, v.astype(f32)).astype(q.dtype)

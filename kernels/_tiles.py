"""Tile math shared by every flash-attention backend (pure functions on one tile).

Conventions: a query tile is [block_q, D], a key/value tile [block_k, D]; row statistics are
kept as [block_q, 1] so the same code lowers on Triton and Mosaic TPU (which dislikes 1-D
vectors). Scores and statistics are float32 whatever the input dtype.

The padding rule is `_masking`'s (zeroed key/value rows, masked scores, zeroed masked
probabilities); `forward_update` is `masked_softmax` in streaming form (a running max and sum
over key tiles instead of one pass over all keys), and `backward_tile` rebuilds its
probabilities with `probabilities_from_lse`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from ._masking import MASK_VALUE, probabilities_from_lse, zero_padded


def dot_nt(a: jax.Array, b: jax.Array, precision) -> jax.Array:
    """a @ b.T with float32 accumulation."""
    return lax.dot_general(
        a, b, (((1,), (1,)), ((), ())), precision=precision, preferred_element_type=jnp.float32
    )


def dot_nn(a: jax.Array, b: jax.Array, precision) -> jax.Array:
    return lax.dot_general(
        a, b, (((1,), (0,)), ((), ())), precision=precision, preferred_element_type=jnp.float32
    )


def dot_tn(a: jax.Array, b: jax.Array, precision) -> jax.Array:
    """a.T @ b with float32 accumulation."""
    return lax.dot_general(
        a, b, (((0,), (0,)), ((), ())), precision=precision, preferred_element_type=jnp.float32
    )


def key_validity(start, block_k: int, kv_len) -> tuple[jax.Array, jax.Array]:
    """Which keys of the tile starting at `start` are not padding, as bool [1, block_k] (for
    score columns) and [block_k, 1] (for key/value rows); built twice rather than transposed
    because Mosaic TPU relayouts are costly."""
    cols = start + lax.broadcasted_iota(jnp.int32, (1, block_k), 1) < kv_len
    rows = start + lax.broadcasted_iota(jnp.int32, (block_k, 1), 0) < kv_len
    return cols, rows


def forward_init(block_q: int, head_dim: int):
    m = jnp.full((block_q, 1), MASK_VALUE, jnp.float32)
    l = jnp.zeros((block_q, 1), jnp.float32)
    acc = jnp.zeros((block_q, head_dim), jnp.float32)
    return m, l, acc


def forward_update(state, q, k, v, valid, scale: float, precision):
    """Fold one key/value tile into the running (max, sum, accumulator).

    Invariant after every tile: m = max of the valid scores seen (MASK_VALUE if none),
    l = sum of exp(s - m) over them, acc = sum of exp(s - m) * v over them. `valid` is None
    for tiles known to be entirely inside the length (no mask work), else `key_validity(...)`.
    """
    m, l, acc = state
    if valid is not None:
        valid, rows = valid
        k, v = zero_padded(rows, k, v)
    s = dot_nt(q, k, precision) * scale
    if valid is not None:
        s = jnp.where(valid, s, MASK_VALUE)
    m_new = jnp.maximum(m, jnp.max(s, axis=1, keepdims=True))
    p = jnp.exp(s - m_new)
    if valid is not None:
        p = jnp.where(valid, p, 0.0)
    alpha = jnp.exp(m - m_new)
    l = alpha * l + jnp.sum(p, axis=1, keepdims=True)
    acc = alpha * acc + dot_nn(p.astype(v.dtype), v, precision)
    return m_new, l, acc


def forward_finalize(state):
    """(output f32 [block_q, D], log-sum-exp f32 [block_q, 1]); a row with no valid key gives
    output 0 and lse -inf."""
    m, l, acc = state
    empty = l == 0.0
    o = acc / jnp.where(empty, 1.0, l)
    lse = jnp.where(empty, -jnp.inf, m + jnp.log(jnp.where(empty, 1.0, l)))
    return o, lse


def backward_tile(q, k, v, do, lse, delta, valid, scale: float, precision):
    """(dS, P, K) of one tile: dS and P float32 [block_q, block_k], K the key tile with its
    invalid rows zeroed (as dQ needs it).

    With them: dV += P^T dO, dK += scale * dS^T Q, dQ += scale * dS K. P is recomputed from
    the saved lse by `probabilities_from_lse`, the same rule as the blocked backward.
    """
    if valid is not None:
        valid, rows = valid
        k, v = zero_padded(rows, k, v)
    p = probabilities_from_lse(dot_nt(q, k, precision) * scale, lse, valid)
    dp = dot_nt(do, v, precision)
    ds = p * (dp - delta)
    return ds, p, k

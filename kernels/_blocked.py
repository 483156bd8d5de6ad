"""Blocked attention in plain JAX: the fast path on CPU, forward and backward.

The reference materialises [batch, heads, L, L] scores and streams them through memory
several times; on a CPU that is memory-bound (at L=1000 and 16 heads, ~10x the matmul time).
Here `block` queries (all heads) are handled at a time, so each score tile stays in cache, and
the backward pass (a custom VJP) recomputes the probabilities tile by tile from the saved
log-sum-exp, as the flash kernels do, instead of saving them. A vmapped call batches every
tile, so tiles are kept small. Timings: bench/results/attention_cpu_*.md.

Each query tile goes through the same `masked_softmax` as `attention_weights`, so the two agree
on every tile by construction.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from ._contract import check_attention_inputs, empty_attention
from ._masking import key_padding, masked_softmax, probabilities_from_lse, zero_padded


def _query_tiles(x, block: int):
    """[heads, batch, length, dim] -> [blocks, heads, batch, block, dim], zero-padded."""
    heads, batch, length, dim = x.shape
    num = -(-length // block)
    x = jnp.pad(x, ((0, 0), (0, 0), (0, num * block - length), (0, 0)))
    return x.reshape(heads, batch, num, block, dim).transpose(2, 0, 1, 3, 4)


def _untile(x, length: int):
    num, heads, batch, block = x.shape[:4]
    x = x.transpose(1, 2, 0, 3, *range(4, x.ndim)).reshape(heads, batch, num * block, *x.shape[4:])
    return x[:, :, :length]


def _scores(q, k, scale: float):
    """q [H, B, bq, D], k [H, B, L, D] -> [H, B, bq, L]."""
    return jnp.einsum("hbqd,hbkd->hbqk", q, k) * scale


def _forward(q, k, v, valid, scale, block):
    length = q.shape[2]
    mask = valid[None, :, None, :]

    def tile(qb):
        p, lse = masked_softmax(_scores(qb, k, scale), mask)
        return jnp.einsum("hbqk,hbkd->hbqd", p, v), lse

    out, lse = jax.lax.map(tile, _query_tiles(q, block))
    return _untile(out, length), _untile(lse, length)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def _blocked(q, k, v, valid, scale, block):
    return _forward(q, k, v, valid, scale, block)[0]


def _blocked_fwd(q, k, v, valid, scale, block):
    out, lse = _forward(q, k, v, valid, scale, block)
    return out, (q, k, v, valid, out, lse)


def _blocked_bwd(scale, block, residuals, do):
    q, k, v, valid, out, lse = residuals
    length = q.shape[2]
    mask = valid[None, :, None, :]
    # delta_i = sum_d O_id dO_id = sum_j P_ij dP_ij: the softmax backward's row term.
    delta = jnp.sum(out * do, axis=-1, keepdims=True)

    def tile(carry, xs):
        # Invariant: after a tile, dk and dv hold the contributions of all queries so far.
        dk, dv = carry
        qb, dob, lseb, deltab = xs
        p = probabilities_from_lse(_scores(qb, k, scale), lseb, mask)
        ds = p * (jnp.einsum("hbqd,hbkd->hbqk", dob, v) - deltab)
        dq = jnp.einsum("hbqk,hbkd->hbqd", ds, k) * scale
        dk = dk + jnp.einsum("hbqk,hbqd->hbkd", ds, qb) * scale
        dv = dv + jnp.einsum("hbqk,hbqd->hbkd", p, dob)
        return (dk, dv), dq

    xs = tuple(_query_tiles(x, block) for x in (q, do, lse, delta))
    (dk, dv), dq = jax.lax.scan(tile, (jnp.zeros_like(k), jnp.zeros_like(v)), xs)
    return _untile(dq, length), dk, dv, None


_blocked.defvjp(_blocked_fwd, _blocked_bwd)


def _blocked_attention(q, k, v, kv_lengths, scale: float, block: int = 256) -> jax.Array:
    """`blocked_attention` on checked, non-empty inputs."""
    batch, length = q.shape[:2]
    valid = key_padding(kv_lengths, batch, length)
    k, v = zero_padded(valid[:, :, None, None], k, v)
    heads_major = [x.astype(jnp.float32).transpose(2, 0, 1, 3) for x in (q, k, v)]
    out = _blocked(*heads_major, valid, scale, min(block, length))
    return out.transpose(1, 2, 0, 3).astype(q.dtype)


def blocked_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    kv_lengths: ArrayLike | None = None,
    *,
    scale: float | None = None,
    block: int = 256,
) -> jax.Array:
    """`reference_attention` computed `block` queries at a time, with a memory-light backward:
    same signature and contract, same results (float32 inside), O(batch x heads x block x L)
    score memory. `block`: queries per tile, at least 1."""
    if isinstance(block, bool) or not isinstance(block, int) or block < 1:
        raise ValueError(f"block must be a positive int, got {block!r}")
    q, k, v, lengths, scale = check_attention_inputs(q, k, v, kv_lengths, scale)
    if q.size == 0:
        return empty_attention(q)
    return _blocked_attention(q, k, v, lengths, scale, block)

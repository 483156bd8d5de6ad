"""Blocked attention in plain JAX: the fast path on CPU, forward and backward.

The reference materialises [batch, heads, L, L] scores and streams them through memory
several times; on a CPU that is memory-bound (at L=1000 and 16 heads, ~10x the matmul time).
Here `block` queries (all heads) are handled at a time, so each score tile stays in cache, and
the backward pass (a custom VJP) recomputes the probabilities tile by tile from the saved
log-sum-exp, as the flash kernels do, instead of saving them. A vmapped call batches every
tile, so tiles are kept small. Timings: bench/results/attention_cpu_*.md.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from ._reference import key_padding, zero_padded_keys
from ._tiles import MASK_VALUE


def _tiles(x, block: int):
    """[heads, batch, length, dim] -> [blocks, heads, batch, block, dim], zero-padded."""
    heads, batch, length, dim = x.shape
    num = -(-length // block)
    x = jnp.pad(x, ((0, 0), (0, 0), (0, num * block - length), (0, 0)))
    return x.reshape(heads, batch, num, block, dim).transpose(2, 0, 1, 3, 4)


def _untile(x, length: int):
    num, heads, batch, block = x.shape[:4]
    x = x.transpose(1, 2, 0, 3, *range(4, x.ndim)).reshape(heads, batch, num * block, *x.shape[4:])
    return x[:, :, :length]


def _probabilities(q, k, valid, scale, lse=None):
    """Scores -> (unnormalised p, lse) for a tile; q [H, B, bq, D], k [H, B, L, D]."""
    s = jnp.einsum("hbqd,hbkd->hbqk", q, k) * scale
    mask = valid[None, :, None, :]
    if lse is None:
        s = jnp.where(mask, s, MASK_VALUE)
        m = jnp.max(s, axis=-1, keepdims=True)
        p = jnp.where(mask, jnp.exp(s - m), 0.0)
        total = jnp.sum(p, axis=-1, keepdims=True)
        lse = jnp.where(total == 0.0, -jnp.inf, m + jnp.log(jnp.where(total == 0.0, 1.0, total)))
        return p / jnp.where(total == 0.0, 1.0, total), lse
    return jnp.where(mask, jnp.exp(s - lse), 0.0), lse


def _forward(q, k, v, valid, scale, block):
    length = q.shape[2]

    def tile(qb):
        p, lse = _probabilities(qb, k, valid, scale)
        return jnp.einsum("hbqk,hbkd->hbqd", p, v), lse

    out, lse = jax.lax.map(tile, _tiles(q, block))
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
    delta = jnp.sum(out * do, axis=-1, keepdims=True)

    def tile(carry, xs):
        dk, dv = carry
        qb, dob, lseb, deltab = xs
        p, _ = _probabilities(qb, k, valid, scale, lseb)
        ds = p * (jnp.einsum("hbqd,hbkd->hbqk", dob, v) - deltab)
        dq = jnp.einsum("hbqk,hbkd->hbqd", ds, k) * scale
        dk = dk + jnp.einsum("hbqk,hbqd->hbkd", ds, qb) * scale
        dv = dv + jnp.einsum("hbqk,hbqd->hbkd", p, dob)
        return (dk, dv), dq

    xs = tuple(_tiles(x, block) for x in (q, do, lse, delta))
    (dk, dv), dq = jax.lax.scan(tile, (jnp.zeros_like(k), jnp.zeros_like(v)), xs)
    return _untile(dq, length), dk, dv, None


_blocked.defvjp(_blocked_fwd, _blocked_bwd)


def blocked_attention(q, k, v, kv_lengths=None, *, scale=None, block: int = 256):
    """`reference_attention` computed `block` queries at a time, with a memory-light backward:
    same signature, same results (float32 inside), O(batch x heads x block x L) score memory."""
    batch, length, _, head_dim = q.shape
    scale = head_dim**-0.5 if scale is None else scale
    valid = key_padding(kv_lengths, batch, length)
    k, v = zero_padded_keys(k, v, valid)
    heads_major = [x.astype(jnp.float32).transpose(2, 0, 1, 3) for x in (q, k, v)]
    out = _blocked(*heads_major, valid, scale, min(block, length))
    return out.transpose(1, 2, 0, 3).astype(q.dtype)

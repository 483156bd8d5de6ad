"""Blocked attention in plain JAX: the fast path on CPU, forward and backward.

The reference materialises [batch, heads, L, L] scores and streams them through memory
several times; on a CPU that is memory-bound (at L=1000 and 16 heads, ~10x the matmul time).
Here one head and `block` queries are handled at a time (a loop over heads, inside it one over
query blocks), so each score tile stays in cache even when `jax.vmap` adds a batch axis, and
the backward pass (a custom VJP) recomputes the probabilities tile by tile from the saved
log-sum-exp, as the flash kernels do, instead of saving them (saving them was measured slower:
the tiles' memory traffic costs more than the recomputation). A vmapped call batches every
tile, so tiles are kept small: [batch, 256, L] per head measured fastest at L = 1,000 (all heads
at once, or 128 queries, were 1.5-2x slower). Timings: bench/results/attention_cpu_*.md.

On a CPU the time goes in passes over the [block, L] score tiles, not in the matmuls, so every
per-element step here is written to touch a tile as few times as possible: the scale is applied
to the [block, D] queries, padded keys copy a real one (so the row maximum needs no mask) and
are zeroed in the exponential's pass, and the output is normalised after the weighted sum
([block, D]) rather than the probabilities ([block, L]). The rule is `masked_softmax`'s (a
padded key gets exactly zero weight; a row with no valid key gives zeros); tests check the two
agree. bfloat16 inputs stay bfloat16 in the products (float32 accumulation, softmax in float32,
the probabilities rounded to bfloat16 for the weighted sum), which reaches the CPU's bfloat16
dot units; other dtypes compute in float32.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from ._contract import check_attention_inputs, check_segment_ids, empty_attention
from ._masking import MASK_VALUE, key_padding, zero_padded


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


def _scores(q, k, valid, segments=None):
    """q [H, B, bq, D] (scaled), k [H, B, L, D] -> float32 [H, B, bq, L]; `segments`: None,
    or the query tile's ids [1, B, bq, 1] and the keys' [1, B, 1, L], which set the scores of
    other segments' keys and of padded ones (`valid` [1, B, 1, L]) to -inf."""
    s = _dot("hbqd,hbkd->hbqk", q, k)
    if segments is None:
        return s
    query_ids, key_ids = segments
    return jnp.where((query_ids == key_ids) & valid, s, -jnp.inf)


def _dot(spec: str, a, b):
    """einsum of `a` (cast to `b`'s dtype) and `b`, accumulated and returned in float32."""
    return jnp.einsum(spec, a.astype(b.dtype), b, preferred_element_type=jnp.float32)


def _segment_tiles(segment_ids, block: int):
    """None, or (query ids as [blocks, 1, B, block, 1] tiles, key ids [1, B, 1, L])."""
    if segment_ids is None:
        return None, None
    ids = segment_ids[None, :, :, None]
    return _query_tiles(ids, block), segment_ids[None, :, None, :]


def _forward(q, k, v, valid, segment_ids, block):
    """Output and log-sum-exp per query; a query with no valid key gets output 0 and lse +inf
    (not -inf: the backward's exp(s - lse) must then be 0 rather than exp(-inf + inf))."""
    length = q.shape[2]

    query_ids, key_ids = _segment_tiles(segment_ids, block)

    def tile(xs):
        qb, qids = xs
        s = _scores(qb, k, valid, None if qids is None else (qids, key_ids))
        # `initial`: a row with every key masked (all -inf) keeps a finite maximum. Padded
        # keys' scores are a real key's (see `_blocked_attention`), so they need no mask here.
        m = jnp.max(s, axis=-1, keepdims=True, initial=MASK_VALUE)
        # Rounded to the value dtype once, in the exponential's pass; the total sums the
        # rounded weights, so the output is their exact normalised average.
        p = jnp.where(valid, jnp.exp(s - m), 0.0).astype(v.dtype)
        total = jnp.sum(p, axis=-1, keepdims=True, dtype=jnp.float32)
        # total >= 1 when a row has a valid key (its maximum contributes exp(0)), else 0.
        empty = total == 0.0
        out = _dot("hbqk,hbkd->hbqd", p, v) / jnp.where(empty, 1.0, total)
        return out, jnp.where(empty, jnp.inf, m + jnp.log(jnp.where(empty, 1.0, total)))

    out, lse = jax.lax.map(tile, (_query_tiles(q, block), query_ids))
    return _untile(out, length), _untile(lse, length)


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6))
def _blocked(q, k, v, valid, segment_ids, scale, block):
    return _forward(_scaled(q, scale), k, v, valid, segment_ids, block)[0]


def _scaled(q, scale: float):
    """q * scale, rounded once to q's dtype."""
    return (q.astype(jnp.float32) * scale).astype(q.dtype)


def _blocked_fwd(q, k, v, valid, segment_ids, scale, block):
    out, lse = _forward(_scaled(q, scale), k, v, valid, segment_ids, block)
    return out, (q, k, v, valid, segment_ids, out, lse)


def _blocked_bwd(scale, block, residuals, do):
    q, k, v, valid, segment_ids, out, lse = residuals
    length = q.shape[2]
    # delta_i = sum_d O_id dO_id = sum_j P_ij dP_ij: the softmax backward's row term.
    delta = jnp.sum(out * do, axis=-1, keepdims=True)

    query_ids, key_ids = _segment_tiles(segment_ids, block)

    def tile(carry, xs):
        # Invariant: after a tile, dk and dv hold the contributions of all queries so far.
        dk, dv = carry
        qb, dob, lseb, deltab, qids = xs
        segments = None if qids is None else (qids, key_ids)
        p = jnp.where(valid, jnp.exp(_scores(qb, k, valid, segments) - lseb), 0.0)
        ds = p * (_dot("hbqd,hbkd->hbqk", dob, v) - deltab)
        dq = _dot("hbqk,hbkd->hbqd", ds, k) * scale
        dk = dk + _dot("hbqk,hbqd->hbkd", ds, qb)
        dv = dv + _dot("hbqk,hbqd->hbkd", p, dob.astype(v.dtype))
        return (dk, dv), dq

    # Scores from scaled queries, as in the forward; dk = dS^T (q * scale) takes the scale too.
    xs = (*(_query_tiles(x, block) for x in (_scaled(q, scale), do, lse, delta)), query_ids)
    zeros = (jnp.zeros(k.shape, jnp.float32), jnp.zeros(v.shape, jnp.float32))
    (dk, dv), dq = jax.lax.scan(tile, zeros, xs)
    return _untile(dq, length).astype(q.dtype), dk.astype(k.dtype), dv.astype(v.dtype), None, None


_blocked.defvjp(_blocked_fwd, _blocked_bwd)


def _blocked_attention(
    q, k, v, kv_lengths, scale: float, block: int = 256, segment_ids=None
) -> jax.Array:
    """`blocked_attention` on checked, non-empty inputs."""
    batch, length = q.shape[:2]
    valid = key_padding(kv_lengths, batch, length)
    rows = valid[:, :, None, None]
    k, v = zero_padded(rows, k, v)
    # Padded keys take the first key (zero if there is none): their scores then never exceed
    # a real key's, so a row's maximum needs no masked pass over the [block, L] scores, and
    # the mask is applied in the exponential's pass instead.
    k = jnp.where(rows, k, k[:, :1])
    # bfloat16 products reach the CPU's bfloat16 dot units (AVX512-BF16, AMX) when they
    # accumulate in float32; every other dtype (float16 has no such units) computes in float32.
    dtype = jnp.bfloat16 if q.dtype == jnp.bfloat16 else jnp.float32
    # [heads, 1, batch, length, dim]: the loop runs over heads, each body sees one.
    heads_major = [x.astype(dtype).transpose(2, 0, 1, 3)[:, None] for x in (q, k, v)]
    # Evened out: 1,000 queries as 4 tiles of 250, not 4 of 256 with 24 rows of padding.
    tiles = -(-length // block)
    block = -(-length // tiles)
    out = jax.lax.map(
        lambda qkv: _blocked(*qkv, valid[None, :, None, :], segment_ids, scale, block), heads_major
    )[:, 0]
    return out.transpose(1, 2, 0, 3).astype(q.dtype)


def blocked_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    kv_lengths: ArrayLike | None = None,
    *,
    scale: float | None = None,
    block: int = 256,
    segment_ids: ArrayLike | None = None,
) -> jax.Array:
    """`reference_attention` computed `block` queries at a time, with a memory-light backward:
    same signature and contract, same results (float32 inside), O(batch x block x L) score
    memory. `block`: most queries per tile, at least 1 (the tiles are evened out so the last
    is not mostly padding); `segment_ids` as `reference_attention`."""
    if isinstance(block, bool) or not isinstance(block, int) or block < 1:
        raise ValueError(f"block must be a positive int, got {block!r}")
    q, k, v, lengths, scale = check_attention_inputs(q, k, v, kv_lengths, scale)
    segments = check_segment_ids(segment_ids, *q.shape[:2])
    if q.size == 0:
        return empty_attention(q)
    return _blocked_attention(q, k, v, lengths, scale, block, segments)

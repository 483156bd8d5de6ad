"""GPU flash attention as Triton-lowered Pallas kernels: forward, dQ and dK/dV.

Layout [batch, length, heads, head_dim]; `lse`/`delta` are float32 [batch, heads, length, 1].
Triton has no scratch memory, so each program walks its key (or query) tiles with a
`fori_loop`, carrying the accumulators. Lengths must be multiples of the block sizes and
head_dim a power of two >= 16 (the wrapper pads).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

from ._blocks import BlockSizes, num_warps
from ._tiles import (
    backward_tile,
    dot_nn,
    dot_tn,
    forward_finalize,
    forward_init,
    forward_update,
    key_validity,
)


def _params(blocks: BlockSizes, head_dim: int, interpret):
    if interpret:  # Triton settings mean nothing there, and InterpretParams rejects them
        return None
    return pltriton.CompilerParams(
        num_warps=num_warps(blocks, head_dim), num_stages=blocks.num_stages
    )


def _length_spec():
    return pl.BlockSpec((1,), lambda b, h, i: (b,))


def _tile_spec(block: int, head_dim: int):
    return pl.BlockSpec((None, block, None, head_dim), lambda b, h, i: (b, i, h, 0))


def _whole_spec(length: int, head_dim: int):
    return pl.BlockSpec((None, length, None, head_dim), lambda b, h, i: (b, 0, h, 0))


def _stat_tile_spec(block: int):
    return pl.BlockSpec((None, None, block, 1), lambda b, h, i: (b, h, i, 0))


def _stat_whole_spec(length: int):
    return pl.BlockSpec((None, None, length, 1), lambda b, h, i: (b, h, 0, 0))


def _key_tiles(kv_len, block_k: int, body, init):
    """Run `body(start, valid, carry)` over the key tiles below `kv_len`: the full ones with
    no mask work, then the partial tail (if any) masked; fully padded tiles are skipped."""
    full = kv_len // block_k

    def step(masked):
        def loop_body(j, carry):
            start = j * block_k
            valid = key_validity(start, block_k, kv_len) if masked else None
            return body(start, valid, carry)

        return loop_body

    carry = lax.fori_loop(0, full, step(False), init)
    return lax.fori_loop(full, pl.cdiv(kv_len, block_k), step(True), carry)


def _forward_kernel(len_ref, q_ref, k_ref, v_ref, o_ref, lse_ref, *, scale, block_k, precision):
    q = q_ref[...]

    def body(start, valid, state):
        k = k_ref[pl.ds(start, block_k), :]
        v = v_ref[pl.ds(start, block_k), :]
        return forward_update(state, q, k, v, valid, scale, precision)

    state = _key_tiles(len_ref[0], block_k, body, forward_init(*q.shape))
    o, lse = forward_finalize(state)
    o_ref[...] = o.astype(o_ref.dtype)
    lse_ref[...] = lse


def forward(q, k, v, lengths, *, scale, blocks: BlockSizes, precision, interpret):
    batch, length, heads, head_dim = q.shape
    bq = blocks.block_q
    kernel = functools.partial(
        _forward_kernel, scale=scale, block_k=blocks.block_k, precision=precision
    )
    return pl.pallas_call(
        kernel,
        grid=(batch, heads, length // bq),
        in_specs=[
            _length_spec(),
            _tile_spec(bq, head_dim),
            _whole_spec(length, head_dim),
            _whole_spec(length, head_dim),
        ],
        out_specs=[_tile_spec(bq, head_dim), _stat_tile_spec(bq)],
        out_shape=[
            jax.ShapeDtypeStruct(q.shape, q.dtype),
            jax.ShapeDtypeStruct((batch, heads, length, 1), jnp.float32),
        ],
        compiler_params=_params(blocks, head_dim, interpret),
        interpret=interpret,
        name="codonnt_flash_forward",
    )(lengths, q, k, v)


def _dq_kernel(
    len_ref, q_ref, k_ref, v_ref, do_ref, lse_ref, delta_ref, dq_ref, *, scale, block_k, precision
):
    q, do, lse, delta = q_ref[...], do_ref[...], lse_ref[...], delta_ref[...]

    def body(start, valid, dq):
        k = k_ref[pl.ds(start, block_k), :]
        v = v_ref[pl.ds(start, block_k), :]
        ds, _, k = backward_tile(q, k, v, do, lse, delta, valid, scale, precision)
        return dq + dot_nn(ds.astype(k.dtype), k, precision)

    dq = _key_tiles(len_ref[0], block_k, body, jnp.zeros(q.shape, jnp.float32))
    dq_ref[...] = (dq * scale).astype(dq_ref.dtype)


def _dkdv_kernel(
    len_ref,
    q_ref,
    k_ref,
    v_ref,
    do_ref,
    lse_ref,
    delta_ref,
    dk_ref,
    dv_ref,
    *,
    scale,
    block_q,
    precision,
):
    kv_len = len_ref[0]
    k, v = k_ref[...], v_ref[...]
    block_k = k.shape[0]
    start = pl.program_id(2) * block_k
    valid = key_validity(start, block_k, kv_len)

    def body(i, carry):
        dk, dv = carry
        rows = pl.ds(i * block_q, block_q)
        q, do = q_ref[rows, :], do_ref[rows, :]
        ds, p, _ = backward_tile(
            q, k, v, do, lse_ref[rows, :], delta_ref[rows, :], valid, scale, precision
        )
        dv = dv + dot_tn(p.astype(do.dtype), do, precision)
        dk = dk + dot_tn(ds.astype(q.dtype), q, precision)
        return dk, dv

    zeros = jnp.zeros(k.shape, jnp.float32)
    # Key tiles entirely past the length get no query tiles: their gradients stay exactly 0.
    # A product, not jnp.where: Triton lowers a scalar select to a type that scf.for does not
    # accept beside its int32 lower bound ("all of {lowerBound, upperBound, step} have same type").
    num_q_tiles = (start < kv_len).astype(jnp.int32) * (q_ref.shape[0] // block_q)
    dk, dv = lax.fori_loop(0, num_q_tiles, body, (zeros, zeros))
    dk_ref[...] = (dk * scale).astype(dk_ref.dtype)
    dv_ref[...] = dv.astype(dv_ref.dtype)


def backward(q, k, v, lengths, do, lse, delta, *, scale, blocks: BlockSizes, precision, interpret):
    batch, length, heads, head_dim = q.shape
    bq, bk = blocks.block_q_bwd, blocks.block_k_bwd
    params = _params(blocks, head_dim, interpret)
    whole, whole_stat = _whole_spec(length, head_dim), _stat_whole_spec(length)
    dq = pl.pallas_call(
        functools.partial(_dq_kernel, scale=scale, block_k=bk, precision=precision),
        grid=(batch, heads, length // bq),
        in_specs=[
            _length_spec(),
            _tile_spec(bq, head_dim),
            whole,
            whole,
            _tile_spec(bq, head_dim),
            _stat_tile_spec(bq),
            _stat_tile_spec(bq),
        ],
        out_specs=_tile_spec(bq, head_dim),
        out_shape=jax.ShapeDtypeStruct(q.shape, q.dtype),
        name="codonnt_flash_dq",
        compiler_params=params,
        interpret=interpret,
    )(lengths, q, k, v, do, lse, delta)
    dk, dv = pl.pallas_call(
        functools.partial(_dkdv_kernel, scale=scale, block_q=bq, precision=precision),
        grid=(batch, heads, length // bk),
        in_specs=[
            _length_spec(),
            whole,
            _tile_spec(bk, head_dim),
            _tile_spec(bk, head_dim),
            whole,
            whole_stat,
            whole_stat,
        ],
        out_specs=[_tile_spec(bk, head_dim), _tile_spec(bk, head_dim)],
        out_shape=[
            jax.ShapeDtypeStruct(k.shape, k.dtype),
            jax.ShapeDtypeStruct(v.shape, v.dtype),
        ],
        name="codonnt_flash_dkdv",
        compiler_params=params,
        interpret=interpret,
    )(lengths, q, k, v, do, lse, delta)
    return dq, dk, dv

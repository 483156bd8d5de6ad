"""TPU flash attention as Mosaic Pallas kernels: forward, dQ and dK/dV.

Takes the public layout [batch, length, heads, head_dim] and works in [batch, heads, length,
head_dim], so that a tile's last two dims are (sequence block, head_dim) as Mosaic's (8, 128)
tiling wants. The reduction runs over the last grid axis ("arbitrary") with VMEM accumulators.
Key tiles past a sequence's length are skipped with `pl.when` (their DMA still happens:
skipping it needs the lengths as scalar prefetch, which vmap turns into a serial loop).
float16 is computed as float32 (Mosaic has no f16 matmul).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu

from ._blocks import BlockSizes
from ._tiles import (
    backward_tile,
    dot_nn,
    dot_tn,
    forward_finalize,
    forward_init,
    forward_update,
    key_validity,
)

_SEMANTICS = pltpu.CompilerParams(
    dimension_semantics=("parallel", "parallel", "parallel", "arbitrary")
)


def _heads_major(*xs):
    return [x.transpose(0, 2, 1, 3) for x in xs]


def _compute_dtype(x):
    return x.astype(jnp.float32) if x.dtype == jnp.float16 else x


def _tile(block: int, head_dim: int, outer: bool):
    """Tile of [B, H, L, D] indexed by the grid's outer (i) or reduction (j) axis."""
    if outer:
        return pl.BlockSpec((None, None, block, head_dim), lambda b, h, i, j: (b, h, i, 0))
    return pl.BlockSpec((None, None, block, head_dim), lambda b, h, i, j: (b, h, j, 0))


_LENGTHS = pl.BlockSpec(memory_space=pltpu.SMEM)


def _forward_kernel(
    len_ref, q_ref, k_ref, v_ref, o_ref, lse_ref, m_scr, l_scr, acc_scr, *, scale, precision
):
    kv_len = len_ref[pl.program_id(0)]
    j = pl.program_id(3)
    block_k = k_ref.shape[0]
    start = j * block_k

    @pl.when(j == 0)
    def _():
        m_scr[...], l_scr[...], acc_scr[...] = forward_init(*acc_scr.shape)

    @pl.when(start < kv_len)
    def _():
        state = (m_scr[...], l_scr[...], acc_scr[...])
        valid = key_validity(start, block_k, kv_len)
        state = forward_update(state, q_ref[...], k_ref[...], v_ref[...], valid, scale, precision)
        m_scr[...], l_scr[...], acc_scr[...] = state

    @pl.when(j == pl.num_programs(3) - 1)
    def _():
        o, lse = forward_finalize((m_scr[...], l_scr[...], acc_scr[...]))
        o_ref[...] = o.astype(o_ref.dtype)
        lse_ref[...] = lse


def forward(q, k, v, lengths, *, scale, blocks: BlockSizes, precision, interpret):
    dtype = q.dtype
    q, k, v = _heads_major(*map(_compute_dtype, (q, k, v)))
    batch, heads, length, head_dim = q.shape
    bq, bk = blocks.block_q, blocks.block_k
    o, lse = pl.pallas_call(
        functools.partial(_forward_kernel, scale=scale, precision=precision),
        grid=(batch, heads, length // bq, length // bk),
        in_specs=[
            _LENGTHS,
            _tile(bq, head_dim, True),
            _tile(bk, head_dim, False),
            _tile(bk, head_dim, False),
        ],
        out_specs=[_tile(bq, head_dim, True), _tile(bq, 1, True)],
        out_shape=[
            jax.ShapeDtypeStruct(q.shape, q.dtype),
            jax.ShapeDtypeStruct((batch, heads, length, 1), jnp.float32),
        ],
        scratch_shapes=[
            pltpu.VMEM((bq, 1), jnp.float32),
            pltpu.VMEM((bq, 1), jnp.float32),
            pltpu.VMEM((bq, head_dim), jnp.float32),
        ],
        compiler_params=_SEMANTICS,
        interpret=interpret,
        name="codonnt_flash_forward_tpu",
    )(lengths, q, k, v)
    return o.transpose(0, 2, 1, 3).astype(dtype), lse


def _dq_kernel(
    len_ref, q_ref, k_ref, v_ref, do_ref, lse_ref, delta_ref, dq_ref, dq_scr, *, scale, precision
):
    kv_len = len_ref[pl.program_id(0)]
    j = pl.program_id(3)
    block_k = k_ref.shape[0]
    start = j * block_k

    @pl.when(j == 0)
    def _():
        dq_scr[...] = jnp.zeros(dq_scr.shape, jnp.float32)

    @pl.when(start < kv_len)
    def _():
        valid = key_validity(start, block_k, kv_len)
        ds, _, k = backward_tile(
            q_ref[...],
            k_ref[...],
            v_ref[...],
            do_ref[...],
            lse_ref[...],
            delta_ref[...],
            valid,
            scale,
            precision,
        )
        dq_scr[...] += dot_nn(ds.astype(k.dtype), k, precision)

    @pl.when(j == pl.num_programs(3) - 1)
    def _():
        dq_ref[...] = (dq_scr[...] * scale).astype(dq_ref.dtype)


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
    dk_scr,
    dv_scr,
    *,
    scale,
    precision,
):
    kv_len = len_ref[pl.program_id(0)]
    i = pl.program_id(3)
    block_k = k_ref.shape[0]
    start = pl.program_id(2) * block_k

    @pl.when(i == 0)
    def _():
        dk_scr[...] = jnp.zeros(dk_scr.shape, jnp.float32)
        dv_scr[...] = jnp.zeros(dv_scr.shape, jnp.float32)

    @pl.when(start < kv_len)
    def _():
        valid = key_validity(start, block_k, kv_len)
        q, do = q_ref[...], do_ref[...]
        ds, p, _ = backward_tile(
            q, k_ref[...], v_ref[...], do, lse_ref[...], delta_ref[...], valid, scale, precision
        )
        dv_scr[...] += dot_tn(p.astype(do.dtype), do, precision)
        dk_scr[...] += dot_tn(ds.astype(q.dtype), q, precision)

    @pl.when(i == pl.num_programs(3) - 1)
    def _():
        dk_ref[...] = (dk_scr[...] * scale).astype(dk_ref.dtype)
        dv_ref[...] = dv_scr[...].astype(dv_ref.dtype)


def backward(q, k, v, lengths, do, lse, delta, *, scale, blocks: BlockSizes, precision, interpret):
    dtype = q.dtype
    q, k, v, do = _heads_major(*map(_compute_dtype, (q, k, v, do)))
    batch, heads, length, head_dim = q.shape
    bq, bk = blocks.block_q_bwd, blocks.block_k_bwd
    params = _SEMANTICS
    dq = pl.pallas_call(
        functools.partial(_dq_kernel, scale=scale, precision=precision),
        grid=(batch, heads, length // bq, length // bk),
        in_specs=[
            _LENGTHS,
            _tile(bq, head_dim, True),
            _tile(bk, head_dim, False),
            _tile(bk, head_dim, False),
            _tile(bq, head_dim, True),
            _tile(bq, 1, True),
            _tile(bq, 1, True),
        ],
        out_specs=_tile(bq, head_dim, True),
        out_shape=jax.ShapeDtypeStruct(q.shape, q.dtype),
        scratch_shapes=[pltpu.VMEM((bq, head_dim), jnp.float32)],
        name="codonnt_flash_dq_tpu",
        compiler_params=params,
        interpret=interpret,
    )(lengths, q, k, v, do, lse, delta)
    # Here the grid's outer axis walks key tiles and the reduction axis query tiles.
    dk, dv = pl.pallas_call(
        functools.partial(_dkdv_kernel, scale=scale, precision=precision),
        grid=(batch, heads, length // bk, length // bq),
        in_specs=[
            _LENGTHS,
            _tile(bq, head_dim, False),
            _tile(bk, head_dim, True),
            _tile(bk, head_dim, True),
            _tile(bq, head_dim, False),
            _tile(bq, 1, False),
            _tile(bq, 1, False),
        ],
        out_specs=[_tile(bk, head_dim, True), _tile(bk, head_dim, True)],
        out_shape=[
            jax.ShapeDtypeStruct(k.shape, k.dtype),
            jax.ShapeDtypeStruct(v.shape, v.dtype),
        ],
        scratch_shapes=[
            pltpu.VMEM((bk, head_dim), jnp.float32),
            pltpu.VMEM((bk, head_dim), jnp.float32),
        ],
        name="codonnt_flash_dkdv_tpu",
        compiler_params=params,
        interpret=interpret,
    )(lengths, q, k, v, do, lse, delta)
    back = [x.transpose(0, 2, 1, 3).astype(dtype) for x in (dq, dk, dv)]
    return tuple(back)

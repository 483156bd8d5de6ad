"""Hopper flash attention as Mosaic GPU Pallas kernels: forward, dQ and dK/dV.

Each program is one warpgroup (128 threads) owning a [64k, D] tile: the resident operands
are copied to shared memory once by TMA, the streamed ones (K/V in the forward and dQ
kernels, Q/dO/lse/delta in the dK/dV kernel) go through `num_stages` shared-memory slots
refilled by TMA while earlier slots are computed on, and every matmul is a `wgmma` with a
float32 accumulator.

Layout [batch, length, heads, head_dim]; `lse`/`delta` are float32 [batch, heads, length, 1]
at the interface, [batch, heads, length] inside (1-D TMA rows of a query tile). Inputs are
bfloat16 or float16; lengths are multiples of the block sizes and head_dim a power of two
>= 16 (the wrapper pads). Padded key/value rows are zeroed before the kernels run
(`_zero_padded_keys`), so whatever they held never meets a `wgmma`; scores of padded keys are
masked in the tail tile and key tiles entirely past the length are never loaded.

The same code runs in Mosaic GPU's interpret mode on a CPU (`interpret=` an
`InterpretGPUParams`); the interpreter has no register layouts, so `_layout` applies them
only when lowering for a GPU.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import mosaic_gpu as plgpu

from ._blocks import BlockSizes
from ._masking import MASK_VALUE

DTYPES = (jnp.bfloat16, jnp.float16)


try:  # jax 0.10 does not export the interpreter's parameters yet
    from jax._src.pallas.mosaic_gpu.interpret.params import (
        InterpretGPUParams as _PRIVATE_INTERPRET_PARAMS,
    )
except ImportError:  # moved in a later jax, which exports it publicly instead
    _PRIVATE_INTERPRET_PARAMS = None


def _params_type():
    return (
        getattr(plgpu, "InterpretGPUParams", None)
        or getattr(pl, "InterpretGPUParams", None)
        or _PRIVATE_INTERPRET_PARAMS
    )


def is_interpret_params(interpret) -> bool:
    """Whether `interpret` asks for Mosaic GPU's interpreter."""
    params = _params_type()
    return params is not None and isinstance(interpret, params)


def interpret_params():
    """Mosaic GPU's interpret mode (runs the kernels on a CPU), wherever this jax keeps it."""
    params = _params_type()
    if params is None:
        raise NotImplementedError(
            f"this jax ({jax.__version__}) has no Mosaic GPU interpreter; "
            "interpret the Triton kernel (backend='gpu') instead"
        )
    return params()


def _layout(x: jax.Array, layout, interpret) -> jax.Array:
    return x if interpret else plgpu.layout_cast(x, layout)


def _full(shape, value, layout, interpret) -> jax.Array:
    return _layout(jnp.full(shape, value, jnp.float32), layout, interpret)


def _iota(shape, dimension: int, interpret) -> jax.Array:
    if interpret:
        return lax.broadcasted_iota(jnp.int32, shape, dimension)
    return plgpu.broadcasted_iota(jnp.int32, shape, dimension, layout=plgpu.Layout.WGMMA)


def _load_row_stat(ref, axis: int, interpret) -> jax.Array:
    """A [block] float32 vector from shared memory, laid out to broadcast along `axis` of a
    wgmma accumulator tile (reduce(1): one value per tile row; reduce(0): per column)."""
    if interpret:
        return ref[...]
    return plgpu.load(ref, (), layout=plgpu.Layout.WGMMA.reduce(axis))


def _row(x, shape):
    return lax.broadcast_in_dim(x, shape, [0])


def _col(x, shape):
    return lax.broadcast_in_dim(x, shape, [1])


def _tile_smem(shape, dtype):
    """Shared memory for a [..., rows, head_dim] tile in wgmma's swizzled layout: rows of
    head_dim * itemsize bytes, swizzled by up to 128 bytes (64 for head_dim 32 in 16 bits)."""
    itemsize = jnp.dtype(dtype).itemsize
    swizzle = min(128, shape[-1] * itemsize)
    transforms = (
        plgpu.TilingTransform((8, swizzle // itemsize)),
        plgpu.SwizzleTransform(swizzle),
    )
    return plgpu.SMEM(shape, dtype, transforms=transforms)


def _dot(a, b, shape, b_transposed: bool, interpret) -> jax.Array:
    """a @ b (or a @ b.T) with a float32 result [shape]: `a` a shared-memory ref or a 16-bit
    register tile, `b` a shared-memory ref. On the GPU one `wgmma`; in interpret mode a
    plain dot of the loaded tiles, because the interpreter's wgmma takes neither a register
    operand nor a transposed one (jax 0.10.2)."""
    if interpret:
        a = a if isinstance(a, jax.Array) else a[...]
        contract = ((1,), (1,)) if b_transposed else ((1,), (0,))
        return lax.dot_general(a, b[...], (contract, ((), ())), preferred_element_type=jnp.float32)
    return _dots([(a, b, b_transposed, shape)])[0]


def _dots(products):
    """Independent `wgmma`s [(a, b, b_transposed, shape)] issued together and waited on once."""

    def run(*accs):
        for acc, (a, b, transposed, _) in zip(accs, products, strict=True):
            plgpu.wgmma(acc, a, plgpu.transpose_ref(b, (1, 0)) if transposed else b)
        return tuple(acc[...] for acc in accs)

    return pl.run_scoped(
        run,
        *(
            plgpu.ACC(shape, jnp.float32)  # pyright: ignore[reportPrivateImportUsage]
            for *_, shape in products
        ),
    )


def _two_dots(first, second, interpret):
    if interpret:
        return tuple(_dot(a, b, shape, t, interpret) for a, b, t, shape in (first, second))
    return _dots([first, second])


def _stream(segments, stages: int, max_steps: int, fetch, carry):
    """A software pipeline over `num_steps` tiles in `stages` shared-memory slots.

    `segments`: [(start, stop, body)] covering 0..num_steps in order, `body(step, slot,
    carry) -> carry` waiting for its slot's copies; `fetch(step, slot)` starts the copies of a
    tile; `max_steps` bounds `num_steps` statically. The first `stages` tiles are requested
    up front, and tile `step + stages` as soon as `step` is done with its slot.
    """
    num_steps = segments[-1][1]
    for s in range(min(stages, max_steps)):
        pl.when(s < num_steps)(functools.partial(fetch, s, s))

    def loop(body):
        def run(step, carry):
            slot = lax.rem(step, stages)
            carry = body(step, slot, carry)
            pl.when(step + stages < num_steps)(lambda: fetch(step + stages, slot))
            return carry

        return run

    for start, stop, body in segments:
        carry = lax.fori_loop(start, stop, loop(body), carry)
    return carry


def _copy_in(src, dst, barrier):
    plgpu.copy_gmem_to_smem(src, dst, barrier)


def _store(pairs):
    """Registers -> shared memory -> global memory for each (value, smem, gmem) pair."""
    for value, smem, _ in pairs:
        smem[...] = value.astype(smem.dtype)
    plgpu.commit_smem()
    for _, smem, gmem in pairs:
        plgpu.copy_smem_to_gmem(smem, gmem)
    plgpu.wait_smem_to_gmem(0)


GRID_NAMES = ("heads", "tile", "batch")  # grid (heads, tiles, batch): heads vary fastest


def _launch(kernel, name: str, args, out_shape, scratch, grid, interpret):
    """`kernel(*argument_refs, *output_refs, scratch_refs)` over `grid` (heads, tiles, batch),
    one warpgroup per program; the body is named for profiles."""
    num_refs = len(args) + len(jax.tree.leaves(out_shape))

    def body(*refs):
        kernel(*refs[:num_refs], refs[num_refs:])

    body.__name__ = body.__qualname__ = name
    return plgpu.kernel(
        body,
        out_type=out_shape,
        scratch_types=scratch,
        compiler_params=None if interpret else plgpu.CompilerParams(approx_math=True),
        interpret=interpret,
        grid=grid,
        grid_names=GRID_NAMES,
    )(*args)


def _program():
    return lax.axis_index("batch"), lax.axis_index("heads"), lax.axis_index("tile")


def _forward_kernel(
    len_ref, q_ref, k_ref, v_ref, o_ref, lse_ref, scratch, *, scale, bq, bk, stages, interpret
):
    q_smem, k_smem, v_smem, lse_smem, q_bar, k_bar, v_bar = scratch
    b, h, i = _program()
    rows = pl.ds(i * bq, bq)
    kv_len = len_ref[b]
    head_dim = q_smem.shape[-1]
    _copy_in(q_ref.at[b, rows, h], q_smem, q_bar.at[0])

    def fetch(step, slot):
        keys = pl.ds(step * bk, bk)
        _copy_in(k_ref.at[b, keys, h], k_smem.at[slot], k_bar.at[slot])
        _copy_in(v_ref.at[b, keys, h], v_smem.at[slot], v_bar.at[slot])

    def body(masked: bool):
        def run(step, slot, state):
            m, l, acc = state
            plgpu.barrier_wait(k_bar.at[slot])
            s = _dot(q_smem, k_smem.at[slot], (bq, bk), True, interpret) * scale
            if masked:
                s = jnp.where(step * bk + _iota((bq, bk), 1, interpret) < kv_len, s, MASK_VALUE)
            m_new = jnp.maximum(m, s.max(axis=1))
            p = jnp.exp(s - _row(m_new, s.shape))
            alpha = jnp.exp(m - m_new)
            l = l * alpha + p.sum(axis=1)
            plgpu.barrier_wait(v_bar.at[slot])
            pv = _dot(p.astype(q_smem.dtype), v_smem.at[slot], (bq, head_dim), False, interpret)
            return m_new, l, acc * _row(alpha, acc.shape) + pv

        return run

    plgpu.barrier_wait(q_bar.at[0])
    full, steps = kv_len // bk, pl.cdiv(kv_len, bk)
    reduced = plgpu.Layout.WGMMA.reduce(1)
    state = (
        _full((bq,), MASK_VALUE, reduced, interpret),
        _full((bq,), 0.0, reduced, interpret),
        _full((bq, head_dim), 0.0, plgpu.Layout.WGMMA, interpret),
    )
    segments = [(0, full, body(False)), (full, steps, body(True))]
    m, l, acc = _stream(segments, stages, k_ref.shape[1] // bk, fetch, state)
    # A query with no valid key (kv_len == 0) has l == 0: output 0, lse -inf.
    empty = l == 0.0
    safe_l = jnp.where(empty, 1.0, l)
    lse = jnp.where(empty, -jnp.inf, m + jnp.log(safe_l))
    _store(
        [
            (acc / _row(safe_l, acc.shape), q_smem, o_ref.at[b, rows, h]),
            (lse, lse_smem, lse_ref.at[b, h, rows]),
        ]
    )


def _zero_padded_keys(lengths, *arrays):
    """Key/value rows at positions >= length set to 0, so NaN or inf there reaches nothing."""
    length = arrays[0].shape[1]
    valid = jnp.arange(length)[None, :, None, None] < lengths[:, None, None, None]
    return tuple(jnp.where(valid, x, jnp.zeros((), x.dtype)) for x in arrays)


def check_dtype(dtype) -> None:
    if jnp.dtype(dtype) not in map(jnp.dtype, DTYPES):
        raise TypeError(
            "the Mosaic GPU kernel takes bfloat16 or float16 inputs (float32 accumulation), "
            f"got {jnp.dtype(dtype).name}; float32 runs exactly on backend='gpu' (Triton)"
        )


def forward(q, k, v, lengths, *, scale, blocks: BlockSizes, precision, interpret):
    del precision  # 16-bit inputs only: wgmma's products are exact, accumulation float32
    batch, length, heads, head_dim = q.shape
    bq, bk, stages = blocks.block_q, blocks.block_k, blocks.num_stages
    k, v = _zero_padded_keys(lengths, k, v)
    kernel = functools.partial(
        _forward_kernel, scale=scale, bq=bq, bk=bk, stages=stages, interpret=interpret
    )
    o, lse = _launch(
        kernel,
        "codonnt_mgpu_flash_forward",
        (lengths, q, k, v),
        [
            jax.ShapeDtypeStruct(q.shape, q.dtype),
            jax.ShapeDtypeStruct((batch, heads, length), jnp.float32),
        ],
        [
            _tile_smem((bq, head_dim), q.dtype),
            _tile_smem((stages, bk, head_dim), q.dtype),
            _tile_smem((stages, bk, head_dim), q.dtype),
            plgpu.SMEM((bq,), jnp.float32),
            plgpu.Barrier(num_barriers=1),
            plgpu.Barrier(num_barriers=stages),
            plgpu.Barrier(num_barriers=stages),
        ],
        (heads, length // bq, batch),
        interpret,
    )
    return o, lse[..., None]


def _dq_kernel(
    len_ref,
    q_ref,
    k_ref,
    v_ref,
    do_ref,
    lse_ref,
    delta_ref,
    dq_ref,
    scratch,
    *,
    scale,
    bq,
    bk,
    stages,
    interpret,
):
    q_smem, do_smem, lse_smem, delta_smem, k_smem, v_smem, in_bar, k_bar, v_bar = scratch
    b, h, i = _program()
    rows = pl.ds(i * bq, bq)
    kv_len = len_ref[b]
    head_dim = q_smem.shape[-1]
    for n, (src, dst) in enumerate(
        (
            (q_ref.at[b, rows, h], q_smem),
            (do_ref.at[b, rows, h], do_smem),
            (lse_ref.at[b, h, rows], lse_smem),
            (delta_ref.at[b, h, rows], delta_smem),
        )
    ):
        _copy_in(src, dst, in_bar.at[n])

    def fetch(step, slot):
        keys = pl.ds(step * bk, bk)
        _copy_in(k_ref.at[b, keys, h], k_smem.at[slot], k_bar.at[slot])
        _copy_in(v_ref.at[b, keys, h], v_smem.at[slot], v_bar.at[slot])

    for n in range(4):
        plgpu.barrier_wait(in_bar.at[n])
    lse = _load_row_stat(lse_smem, 1, interpret)
    delta = _load_row_stat(delta_smem, 1, interpret)

    def body(masked: bool):
        def run(step, slot, dq):
            plgpu.barrier_wait(k_bar.at[slot])
            plgpu.barrier_wait(v_bar.at[slot])
            s, dp = _two_dots(
                (q_smem, k_smem.at[slot], True, (bq, bk)),
                (do_smem, v_smem.at[slot], True, (bq, bk)),
                interpret,
            )
            p = jnp.exp(s * scale - _row(lse, s.shape))
            if masked:
                p = jnp.where(step * bk + _iota((bq, bk), 1, interpret) < kv_len, p, 0.0)
            ds = p * (dp - _row(delta, dp.shape))
            ds = ds.astype(q_smem.dtype)
            return dq + _dot(ds, k_smem.at[slot], (bq, head_dim), False, interpret)

        return run

    full, steps = kv_len // bk, pl.cdiv(kv_len, bk)
    dq = _full((bq, head_dim), 0.0, plgpu.Layout.WGMMA, interpret)
    segments = [(0, full, body(False)), (full, steps, body(True))]
    dq = _stream(segments, stages, k_ref.shape[1] // bk, fetch, dq)
    _store([(dq * scale, q_smem, dq_ref.at[b, rows, h])])


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
    scratch,
    *,
    scale,
    bq,
    bk,
    stages,
    interpret,
):
    k_smem, v_smem, q_smem, do_smem, lse_smem, delta_smem, kv_bar, *bars = scratch
    b, h, j = _program()
    keys = pl.ds(j * bk, bk)
    kv_len = len_ref[b]
    head_dim = k_smem.shape[-1]
    _copy_in(k_ref.at[b, keys, h], k_smem, kv_bar.at[0])
    _copy_in(v_ref.at[b, keys, h], v_smem, kv_bar.at[1])
    streams = (q_smem, do_smem, lse_smem, delta_smem)

    def fetch(step, slot):
        rows = pl.ds(step * bq, bq)
        sources = (
            q_ref.at[b, rows, h],
            do_ref.at[b, rows, h],
            lse_ref.at[b, h, rows],
            delta_ref.at[b, h, rows],
        )
        for src, dst, bar in zip(sources, streams, bars, strict=True):
            _copy_in(src, dst.at[slot], bar.at[slot])

    key_valid = j * bk + _iota((bk, bq), 0, interpret) < kv_len

    def body(step, slot, carry):
        dk, dv = carry
        for bar in bars:
            plgpu.barrier_wait(bar.at[slot])
        q, do = q_smem.at[slot], do_smem.at[slot]
        s_t, dp_t = _two_dots(
            (k_smem, q, True, (bk, bq)),
            (v_smem, do, True, (bk, bq)),
            interpret,
        )
        lse = _load_row_stat(lse_smem.at[slot], 0, interpret)
        delta = _load_row_stat(delta_smem.at[slot], 0, interpret)
        p_t = jnp.where(key_valid, jnp.exp(s_t * scale - _col(lse, s_t.shape)), 0.0)
        ds_t = p_t * (dp_t - _col(delta, dp_t.shape))
        dv_step, dk_step = _two_dots(
            (p_t.astype(q.dtype), do, False, (bk, head_dim)),
            (ds_t.astype(q.dtype), q, False, (bk, head_dim)),
            interpret,
        )
        return dk + dk_step, dv + dv_step

    plgpu.barrier_wait(kv_bar.at[0])
    plgpu.barrier_wait(kv_bar.at[1])
    # Key tiles entirely past the length meet no query tile: their gradients stay exactly 0.
    steps = jnp.where(j * bk < kv_len, q_ref.shape[1] // bq, 0)
    zeros = _full((bk, head_dim), 0.0, plgpu.Layout.WGMMA, interpret)
    dk, dv = _stream([(0, steps, body)], stages, q_ref.shape[1] // bq, fetch, (zeros, zeros))
    _store([(dk * scale, k_smem, dk_ref.at[b, keys, h]), (dv, v_smem, dv_ref.at[b, keys, h])])


def backward(q, k, v, lengths, do, lse, delta, *, scale, blocks: BlockSizes, precision, interpret):
    del precision
    batch, length, heads, head_dim = q.shape
    bq, bk, stages = blocks.block_q_bwd, blocks.block_k_bwd, blocks.num_stages
    k, v = _zero_padded_keys(lengths, k, v)
    lse, delta = lse[..., 0], delta[..., 0]
    options = dict(scale=scale, bq=bq, bk=bk, stages=stages, interpret=interpret)
    args = (lengths, q, k, v, do, lse, delta)
    dq = _launch(
        functools.partial(_dq_kernel, **options),
        "codonnt_mgpu_flash_dq",
        args,
        jax.ShapeDtypeStruct(q.shape, q.dtype),
        [
            _tile_smem((bq, head_dim), q.dtype),
            _tile_smem((bq, head_dim), q.dtype),
            plgpu.SMEM((bq,), jnp.float32),
            plgpu.SMEM((bq,), jnp.float32),
            _tile_smem((stages, bk, head_dim), q.dtype),
            _tile_smem((stages, bk, head_dim), q.dtype),
            plgpu.Barrier(num_barriers=4),
            plgpu.Barrier(num_barriers=stages),
            plgpu.Barrier(num_barriers=stages),
        ],
        (heads, length // bq, batch),
        interpret,
    )
    dk, dv = _launch(
        functools.partial(_dkdv_kernel, **options),
        "codonnt_mgpu_flash_dkdv",
        args,
        [jax.ShapeDtypeStruct(k.shape, k.dtype), jax.ShapeDtypeStruct(v.shape, v.dtype)],
        [
            _tile_smem((bk, head_dim), q.dtype),
            _tile_smem((bk, head_dim), q.dtype),
            _tile_smem((stages, bq, head_dim), q.dtype),
            _tile_smem((stages, bq, head_dim), q.dtype),
            plgpu.SMEM((stages, bq), jnp.float32),
            plgpu.SMEM((stages, bq), jnp.float32),
            plgpu.Barrier(num_barriers=2),
            *(plgpu.Barrier(num_barriers=stages) for _ in range(4)),
        ],
        (heads, length // bk, batch),
        interpret,
    )
    return dq, dk, dv

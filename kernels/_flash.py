"""`flash_attention`: padding, the custom VJP, and the choice of backend kernel."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any, Literal, cast

import jax
import jax.numpy as jnp
from jax import lax
from jax.ad_checkpoint import checkpoint_name
from jax.typing import ArrayLike

from . import _mosaic_tpu, _triton
from ._blocks import DEFAULT_BLOCK_SIZES, BlockSizes
from ._contract import check_attention_inputs, empty_attention
from ._partitioning import sharded_by_batch_and_heads

_KERNELS = {"gpu": _triton, "tpu": _mosaic_tpu}
MAX_HEAD_DIM = 256


@dataclasses.dataclass(frozen=True)
class _Config:
    backend: str
    scale: float
    blocks: BlockSizes
    precision: Any
    interpret: Any


def _folding_vmap(kernel):
    """`kernel` (arrays with a leading batch axis in, a tuple of such arrays out) whose `vmap`
    folds the mapped axis into that batch axis, so that one `pallas_call` covers the whole
    batch.

    The model calls attention once per sequence under `jax.vmap`. Pallas' own batching rule
    would add a grid axis and turn the TPU kernels' SMEM lengths [batch] into a [batch, 1]
    block, which Mosaic rejects; folding keeps every kernel's shapes those it was written for.
    """

    @jax.custom_batching.custom_vmap
    def run(*args):
        return kernel(*args)

    @run.def_vmap
    def _(axis_size, in_batched, *args):
        args = [
            x if batched else jnp.broadcast_to(x, (axis_size, *x.shape))
            for x, batched in zip(args, in_batched, strict=True)
        ]
        outs = run(*(x.reshape(-1, *x.shape[2:]) for x in args))
        outs = tuple(y.reshape(axis_size, -1, *y.shape[1:]) for y in outs)
        return outs, tuple(True for _ in outs)

    return run


def _kernel_options(cfg: _Config) -> dict:
    return dict(
        scale=cfg.scale, blocks=cfg.blocks, precision=cfg.precision, interpret=cfg.interpret
    )


_BLHD, _STATS = "blhd", "bhlx"  # the kernels' layouts: arrays [b, l, h, d], lse/delta [b, h, l, 1]


def _kernel_call(kernel, in_layouts, out_layouts):
    """`kernel` made to batch by folding (`_folding_vmap`) and to shard by batch and heads."""
    return _folding_vmap(
        sharded_by_batch_and_heads(lambda *args: tuple(kernel(*args)), in_layouts, out_layouts)
    )


def _forward_impl(cfg: _Config, q, k, v, lengths):
    forward = functools.partial(_KERNELS[cfg.backend].forward, **_kernel_options(cfg))
    call = _kernel_call(forward, (_BLHD, _BLHD, _BLHD, "b"), (_BLHD, _STATS))
    return call(q, k, v, lengths)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _attention(cfg: _Config, q, k, v, lengths):
    return _forward_impl(cfg, q, k, v, lengths)[0]


def _attention_fwd(cfg: _Config, q, k, v, lengths):
    o, lse = _forward_impl(cfg, q, k, v, lengths)
    o, lse = checkpoint_name(o, "attn_out"), checkpoint_name(lse, "attn_lse")
    return o, (q, k, v, lengths, o, lse)


def _attention_bwd(cfg: _Config, residuals, do):
    q, k, v, lengths, o, lse = residuals
    # delta_i = sum_d O_id dO_id = sum_j P_ij dP_ij: the softmax backward's row term.
    delta = jnp.einsum("blhd,blhd->bhl", o.astype(jnp.float32), do.astype(jnp.float32))
    backward = functools.partial(_KERNELS[cfg.backend].backward, **_kernel_options(cfg))
    call = _kernel_call(
        backward, (_BLHD, _BLHD, _BLHD, "b", _BLHD, _STATS, _STATS), (_BLHD, _BLHD, _BLHD)
    )
    dq, dk, dv = call(q, k, v, lengths, do, lse, delta[..., None])
    return dq, dk, dv, None


_attention.defvjp(_attention_fwd, _attention_bwd)


def _next_power_of_two(n: int) -> int:
    return 1 << (n - 1).bit_length()


def _run(backend: str, interpret, q, k, v, lengths, *, scale, block_sizes, precision):
    """Pad to the backend's tile grid, run the kernels, and cut the padding off."""
    blocks = block_sizes.get(backend, DEFAULT_BLOCK_SIZES[backend])
    blocks.check(backend)
    _, length, _, head_dim = q.shape
    padded_length = -(-length // blocks.multiple) * blocks.multiple
    padded_dim = max(16, _next_power_of_two(head_dim))
    pad = ((0, 0), (0, padded_length - length), (0, 0), (0, padded_dim - head_dim))
    if precision is None and q.dtype == jnp.float32:
        precision = lax.Precision.HIGHEST  # Triton would silently use TF32 otherwise
    cfg = _Config(backend, scale, blocks, precision, interpret)
    # custom_vjp hides the return type from type checkers
    out = cast(jax.Array, _attention(cfg, *(jnp.pad(x, pad) for x in (q, k, v)), lengths))
    return out[:, :length, :, :head_dim]


def check_head_dim(head_dim: int) -> None:
    """The one limit of the Pallas kernels beyond the common contract."""
    # They pad head_dim to a power of two and keep a [block, head_dim] float32 accumulator per
    # program; past 256 that no longer fits GPU registers or a sensible share of TPU VMEM.
    if head_dim > MAX_HEAD_DIM:
        raise ValueError(
            f"the Pallas kernels support head_dim up to {MAX_HEAD_DIM}, got {head_dim}; "
            "use implementation='blocked', 'reference' or 'xla'"
        )


def _flash_attention(
    q,
    k,
    v,
    lengths,
    scale: float,
    *,
    block_sizes=None,
    precision=None,
    backend=None,
    interpret=None,
) -> jax.Array:
    """`flash_attention` on checked, non-empty inputs."""
    if lengths is None:
        lengths = jnp.full((q.shape[0],), q.shape[1], jnp.int32)
    if isinstance(block_sizes, BlockSizes):
        block_sizes = {backend or "gpu": block_sizes}
    run = functools.partial(_run, scale=scale, block_sizes=block_sizes or {}, precision=precision)
    # Chosen per platform the computation is compiled for, not by the default backend: a
    # deviceless compile for a GPU from a CPU host must get Triton, not interpret mode.
    on_cpu = True if interpret is None else interpret
    on_device = False if interpret is None else interpret
    return lax.platform_dependent(
        q,
        k,
        v,
        lengths,
        cpu=functools.partial(run, backend or "gpu", on_cpu),
        cuda=functools.partial(run, backend or "gpu", on_device),
        rocm=functools.partial(run, backend or "gpu", on_device),
        tpu=functools.partial(run, backend or "tpu", on_device),
    )


def flash_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    kv_lengths: ArrayLike | None = None,
    *,
    scale: float | None = None,
    block_sizes: BlockSizes | Mapping[str, BlockSizes] | None = None,
    precision: Any = None,
    backend: Literal["gpu", "tpu"] | None = None,
    interpret: Any = None,
) -> jax.Array:
    """Memory-efficient bidirectional self-attention with key padding (Pallas kernels).

    **Arguments:**

    - `q, k, v`: [batch, length, heads, head_dim], one dtype: float32, bfloat16 or float16
      (accumulation is float32). Any length, 0 included; head_dim 1..256 (zero-padded to a
      power of two >= 16).
    - `kv_lengths`: int [batch]; keys at positions >= `kv_lengths[b]` get zero weight, and
      whatever they hold (even NaN) never reaches outputs or gradients. Clipped to
      [0, length]. `None`: no padding.
    - `scale`: logit scale, a finite number; default 1/sqrt(head_dim).
    - `block_sizes`: `BlockSizes` for the kernels that run (with `backend=None`: the GPU
      kernels, also used in interpret mode on CPU), or a mapping `{"gpu": ..., "tpu": ...}`;
      defaults per backend.
    - `precision`: matmul precision; float32 inputs default to HIGHEST (no TF32).
    - `backend`: `"gpu"` (Triton) or `"tpu"` (Mosaic); `None` picks by the platform the
      computation is compiled for, running the GPU kernels in interpret mode on CPU.
    - `interpret`: Pallas interpret mode (`True`, or e.g. `pltpu.InterpretParams()`); `None`:
      interpret when compiled for the CPU, the real lowering when compiled for a GPU or TPU
      (also ahead of time from a CPU host).

    **Returns:** [batch, length, heads, head_dim] in the dtype of `q`. A query with no valid key
    gets zeros and zero gradients (`jax.nn.dot_product_attention` returns mean(V) there).

    Inputs are checked as for every implementation (`attention`): `ValueError` for shapes,
    `TypeError` for dtypes. Differentiable (custom VJP with Pallas backward kernels; not
    twice); works under `jit`, `vmap` and `jax.checkpoint`; the L x L matrix is never
    materialised.
    """
    q, k, v, lengths, scale = check_attention_inputs(q, k, v, kv_lengths, scale)
    check_head_dim(q.shape[-1])
    if backend not in (None, "gpu", "tpu"):
        raise ValueError(f"backend must be None, 'gpu' or 'tpu', got {backend!r}")
    if q.size == 0:
        return empty_attention(q)
    return _flash_attention(
        q,
        k,
        v,
        lengths,
        scale,
        block_sizes=block_sizes,
        precision=precision,
        backend=backend,
        interpret=interpret,
    )

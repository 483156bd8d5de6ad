"""`flash_attention`: padding, the custom VJP, and the choice of backend kernel.

Which kernel runs where (`backend=None`):

| compiled for                      | inputs                     | kernel (`backend`)          |
|-----------------------------------|----------------------------|-----------------------------|
| CUDA, capability 9.x (Hopper)     | bf16/f16, head_dim <= 128  | Mosaic GPU (`"mosaic_gpu"`) |
| CUDA, capability 9.x (Hopper)     | float32, or head_dim > 128 | Triton (`"gpu"`)            |
| other CUDA (A100, L4, B200), ROCm | any                        | Triton (`"gpu"`)            |
| TPU                               | any                        | Mosaic TPU (`"tpu"`)        |
| CPU                               | any                        | Triton, interpret mode      |

On CPU `backend="mosaic_gpu"` also interprets the Triton kernels (the same contract) unless
`interpret` asks for Mosaic GPU's own interpreter (`True` or `InterpretGPUParams`).

The Mosaic GPU kernel is built on wgmma, which only sm_90a has: Blackwell (10.x, 12.x) runs
Triton until a tcgen05 kernel exists.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any, Literal, cast

import jax
import jax.numpy as jnp
from jax import lax
from jax.ad_checkpoint import checkpoint_name
from jax.experimental.pallas import tpu as pltpu
from jax.typing import ArrayLike

from . import _mosaic_gpu, _mosaic_tpu, _triton
from ._blocks import MOSAIC_GPU_HEAD_DIMS, BlockSizes, default_block_sizes, mosaic_gpu_head_dim
from ._contract import check_attention_inputs, empty_attention
from ._partitioning import sharded_by_batch_and_heads

_KERNELS = {"gpu": _triton, "mosaic_gpu": _mosaic_gpu, "tpu": _mosaic_tpu}
BACKENDS = tuple(_KERNELS)
MAX_HEAD_DIM = 256
HOPPER = (9, 0)


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


def _kernel_call(kernel, in_layouts, out_layouts, interpret):
    """`kernel` made to batch by folding (`_folding_vmap`) and to shard by batch and heads.

    Not sharded under the callback-based interpreters (`pltpu.InterpretParams`, Mosaic GPU's
    `InterpretGPUParams`): their ordered io_callback effects cannot be lowered inside
    `custom_partitioning`, and they are single-device debugging tools.
    """
    call = lambda *args: tuple(kernel(*args))  # noqa: E731
    if interpret is None or isinstance(interpret, bool):
        call = sharded_by_batch_and_heads(call, in_layouts, out_layouts)
    return _folding_vmap(call)


def _forward_impl(cfg: _Config, q, k, v, lengths):
    forward = functools.partial(_KERNELS[cfg.backend].forward, **_kernel_options(cfg))
    call = _kernel_call(forward, (_BLHD, _BLHD, _BLHD, "b"), (_BLHD, _STATS), cfg.interpret)
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
        backward,
        (_BLHD, _BLHD, _BLHD, "b", _BLHD, _STATS, _STATS),
        (_BLHD, _BLHD, _BLHD),
        cfg.interpret,
    )
    dq, dk, dv = call(q, k, v, lengths, do, lse, delta[..., None])
    return dq, dk, dv, None


_attention.defvjp(_attention_fwd, _attention_bwd)


def _next_power_of_two(n: int) -> int:
    return 1 << (n - 1).bit_length()


# Compute capability by device kind, for abstract devices (deviceless compiles), which name
# the kind but carry no capability; first match wins, so the longer names come first.
_CAPABILITY_BY_KIND = (
    ("GH200", (9, 0)),
    ("H100", (9, 0)),
    ("H200", (9, 0)),
    ("H800", (9, 0)),
    ("H20", (9, 0)),
    ("B200", (10, 0)),
    ("B100", (10, 0)),
    ("A100", (8, 0)),
    ("A800", (8, 0)),
    ("A10", (8, 6)),
    ("L40", (8, 9)),
    ("L4", (8, 9)),
    ("RTX 40", (8, 9)),
    ("RTX 30", (8, 6)),
    ("T4", (7, 5)),
    ("V100", (7, 0)),
)


def cuda_compute_capability() -> tuple[int, int]:
    """The compute capability of the CUDA device being compiled for: the abstract mesh's
    device (its capability, else its kind's, e.g. "NVIDIA A100-SXM4-80GB" -> (8, 0)), else
    the first CUDA device of this process; (9, 0) when nothing says, as Mosaic GPU assumes (a
    deviceless compile from a CPU host without a mesh)."""
    device = jax.sharding.get_abstract_mesh().abstract_device
    if device is None:
        try:
            device = jax.devices("cuda")[0]
        except RuntimeError:  # no CUDA backend in this process
            return HOPPER
    capability = getattr(device, "compute_capability", None)
    if isinstance(capability, str) and capability[:1].isdigit():
        major, _, minor = capability.partition(".")
        return int(major), int(minor or 0)
    kind = str(getattr(device, "device_kind", "")).upper()
    return next((cc for name, cc in _CAPABILITY_BY_KIND if name in kind), HOPPER)


def gpu_backend(dtype, head_dim: int) -> str:
    """The kernel `backend=None` runs on a CUDA GPU: Mosaic GPU (wgmma, TMA) on Hopper
    (compute capability 9.x) for 16-bit inputs with head_dim <= 128, Triton otherwise (A100
    and older, Blackwell, whose tensor cores take tcgen05 instead of wgmma, float32, wider
    heads)."""
    if (
        jnp.dtype(dtype) in map(jnp.dtype, _mosaic_gpu.DTYPES)
        and head_dim <= MOSAIC_GPU_HEAD_DIMS[-1]
        and cuda_compute_capability()[0] == HOPPER[0]
    ):
        return "mosaic_gpu"
    return "gpu"


def _padded_head_dim(backend: str, head_dim: int) -> int:
    if backend == "mosaic_gpu":
        return mosaic_gpu_head_dim(head_dim)
    return max(16, _next_power_of_two(head_dim))


def _run(backend: str, interpret, q, k, v, lengths, *, scale, block_sizes, precision):
    """Pad to the backend's tile grid, run the kernels, and cut the padding off."""
    _, length, _, head_dim = q.shape
    padded_dim = _padded_head_dim(backend, head_dim)
    blocks = block_sizes.get(backend) or default_block_sizes(backend, padded_dim)
    blocks.check(backend)
    padded_length = -(-length // blocks.multiple) * blocks.multiple
    pad = ((0, 0), (0, padded_length - length), (0, 0), (0, padded_dim - head_dim))
    if precision is None and q.dtype == jnp.float32:
        precision = lax.Precision.HIGHEST  # Triton would silently use TF32 otherwise
    if backend == "mosaic_gpu" and interpret is True:
        interpret = _mosaic_gpu.interpret_params()
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
    # asked for: the one kernel, interpreted, whatever the platform (chosen before the blocks
    # are keyed by it)
    interpreted = None if interpret is None else backend or _interpreted_backend(interpret)
    backend = interpreted or backend
    if isinstance(block_sizes, BlockSizes):
        # backend=None: Triton's, the kernel of CPU interpret mode. Not every backend's: under
        # jit every platform's branch is traced, and blocks valid for one are not for another.
        block_sizes = {backend or "gpu": block_sizes}
    run = functools.partial(_run, scale=scale, block_sizes=block_sizes or {}, precision=precision)
    if interpreted is not None:
        return run(interpreted, interpret, q, k, v, lengths)
    # Chosen per platform the computation is compiled for, not by the default backend: a
    # deviceless compile for a GPU from a CPU host must get Triton, not interpret mode. Every
    # branch is traced, so none may carry effects the others lack: Mosaic GPU's interpreter
    # (ordered io_callbacks) would break the lowering for CUDA, and CPU interprets Triton's.
    on_cpu = "gpu" if backend in (None, "mosaic_gpu") else backend
    return lax.platform_dependent(
        q,
        k,
        v,
        lengths,
        cpu=functools.partial(run, on_cpu, True),
        cuda=functools.partial(run, backend or gpu_backend(q.dtype, q.shape[-1]), False),
        rocm=functools.partial(run, backend or "gpu", False),
        tpu=functools.partial(run, backend or "tpu", False),
    )


def _interpreted_backend(interpret) -> str:
    """The kernel an explicit `interpret` with `backend=None` means: the one its interpreter
    simulates (Mosaic TPU's or Mosaic GPU's parameters), Triton's for `True`."""
    if isinstance(interpret, pltpu.InterpretParams):
        return "tpu"
    if _mosaic_gpu.is_interpret_params(interpret):
        return "mosaic_gpu"
    return "gpu"


def flash_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    kv_lengths: ArrayLike | None = None,
    *,
    scale: float | None = None,
    block_sizes: BlockSizes | Mapping[str, BlockSizes] | None = None,
    precision: Any = None,
    backend: Literal["gpu", "mosaic_gpu", "tpu"] | None = None,
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
    - `block_sizes`: `BlockSizes` for `backend` (with `backend=None`: the Triton kernels,
      also used in interpret mode on CPU), or a mapping from backend name (`{"gpu": ...,
      "mosaic_gpu": ..., "tpu": ...}`); defaults per backend (Mosaic GPU's per head dim,
      `MOSAIC_GPU_BLOCK_SIZES`).
    - `precision`: matmul precision; float32 inputs default to HIGHEST (no TF32).
    - `backend`: `"gpu"` (Triton), `"mosaic_gpu"` (Hopper: bfloat16/float16, head_dim <= 128;
      else `TypeError`/`ValueError`) or `"tpu"` (Mosaic TPU); `None` picks by the platform
      the computation is compiled for (the table in this module's docstring), running the
      Triton kernels in interpret mode on CPU.
    - `interpret`: Pallas interpret mode for `backend`'s kernel on any platform (`True`, or
      an interpreter's parameters, e.g. `pltpu.InterpretParams()`, which with `backend=None`
      also pick the kernel they simulate; `True` with `"mosaic_gpu"` means its GPU
      interpreter); `None`: interpret (Triton's kernels, or Mosaic TPU's for `"tpu"`) when
      compiled for the CPU, the real lowering when compiled for a GPU or TPU (also ahead of
      time from a CPU host).

    **Returns:** [batch, length, heads, head_dim] in the dtype of `q`. A query with no valid key
    gets zeros and zero gradients (`jax.nn.dot_product_attention` returns mean(V) there).

    Inputs are checked as for every implementation (`attention`): `ValueError` for shapes,
    `TypeError` for dtypes. Differentiable (custom VJP with Pallas backward kernels; not
    twice); works under `jit`, `vmap` and `jax.checkpoint`; the L x L matrix is never
    materialised.
    """
    q, k, v, lengths, scale = check_attention_inputs(q, k, v, kv_lengths, scale)
    check_head_dim(q.shape[-1])
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"backend must be None or one of {BACKENDS}, got {backend!r}")
    if backend == "mosaic_gpu":
        _mosaic_gpu.check_dtype(q.dtype)
        mosaic_gpu_head_dim(q.shape[-1])
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

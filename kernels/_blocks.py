"""Block sizes and compiler settings, one table per backend."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class BlockSizes:
    """Tile sizes of the forward (`block_q`, `block_k`) and backward kernels.

    GPU (Triton): powers of two >= 16. Mosaic GPU: multiples of 64 (a warpgroup's wgmma
    rows). TPU (Mosaic): multiples of 128 (the lane width). `num_warps` is Triton's;
    `num_stages` is the pipelining depth of Triton and Mosaic GPU, ignored on TPU.
    """

    block_q: int = 64
    block_k: int = 64
    block_q_bwd: int = 64
    block_k_bwd: int = 64
    num_warps: int | None = None
    num_stages: int = 2

    def check(self, backend: str) -> None:
        sizes = (self.block_q, self.block_k, self.block_q_bwd, self.block_k_bwd)
        if backend == "tpu":
            if any(b % 128 for b in sizes):
                raise ValueError(f"TPU block sizes must be multiples of 128, got {self}")
        elif backend == "mosaic_gpu":
            if any(b % 64 for b in sizes) or self.num_stages < 1:
                raise ValueError(
                    f"Mosaic GPU block sizes must be multiples of 64 with num_stages >= 1, "
                    f"got {self}"
                )
        elif any(b < 16 or b & (b - 1) for b in sizes):
            raise ValueError(f"GPU block sizes must be powers of two >= 16, got {self}")

    @property
    def multiple(self) -> int:
        """Sequence lengths are zero-padded to a multiple of this."""
        return max(self.block_q, self.block_k, self.block_q_bwd, self.block_k_bwd)


# Untuned starting points (no GPU or TPU has measured them yet; bench/attention.py is how to).
# GPU: with 64 x 64 tiles a program's [64, 64] float32 scores and [64, head_dim <= 64]
# accumulator are 2 x 4096 values, 32 + 32 registers per thread of 4 warps (`num_warps` goes
# to 8 past head_dim 64), and a short sequence is padded by at most 63 positions; two
# pipeline stages overlap the next K/V load with this tile's matmuls.
# TPU: Mosaic lays the last dim of a tile on the 128 lanes, and the key block is the last dim
# of the score tile; 128 is also the MXU's side, so 128 is the smallest block that leaves
# neither lanes nor the matrix unit idle.
# Mosaic GPU, per (padded) head dim; one warpgroup per program, so block_q (forward and dQ)
# and block_k_bwd (dK/dV) are 64, the rows of one wgmma. Registers per thread of the forward:
# the [64, block_k] float32 scores are block_k / 2, their 16-bit copy block_k / 4, the
# accumulator head_dim / 2. Shared memory per stage: a K and a V tile, 4 * block_k * head_dim
# bytes. Head dim 32: 128-key tiles (64 + 32 + 16 registers) and three 16 KiB stages, since
# each tile's matmuls are short and loads must run further ahead; 64: 128-key tiles, two
# 32 KiB stages; 128: 64-key tiles (32 + 16 + 64 registers), two 32 KiB stages. The
# backward keeps 64 x 64 tiles (two score-sized tiles, dS and dP, live at once).
MOSAIC_GPU_BLOCK_SIZES = {
    32: BlockSizes(block_q=64, block_k=128, block_q_bwd=64, block_k_bwd=64, num_stages=3),
    64: BlockSizes(block_q=64, block_k=128, block_q_bwd=64, block_k_bwd=64, num_stages=2),
    128: BlockSizes(block_q=64, block_k=64, block_q_bwd=64, block_k_bwd=64, num_stages=2),
}
MOSAIC_GPU_HEAD_DIMS = tuple(MOSAIC_GPU_BLOCK_SIZES)  # head dims are zero-padded to one of these

DEFAULT_BLOCK_SIZES = {
    "gpu": BlockSizes(block_q=64, block_k=64, block_q_bwd=64, block_k_bwd=64, num_stages=2),
    "mosaic_gpu": MOSAIC_GPU_BLOCK_SIZES[64],
    "tpu": BlockSizes(block_q=128, block_k=128, block_q_bwd=128, block_k_bwd=128),
}


def mosaic_gpu_head_dim(head_dim: int) -> int:
    """The head dim the Mosaic GPU kernel runs at (zero-padded), or ValueError past 128."""
    for d in MOSAIC_GPU_HEAD_DIMS:
        if head_dim <= d:
            return d
    raise ValueError(
        f"the Mosaic GPU kernel supports head_dim up to {MOSAIC_GPU_HEAD_DIMS[-1]}, got "
        f"{head_dim}; use backend='gpu' (Triton)"
    )


def default_block_sizes(backend: str, head_dim: int) -> BlockSizes:
    """The block sizes a backend runs with when none are given (Mosaic GPU's per head dim)."""
    if backend == "mosaic_gpu":
        return MOSAIC_GPU_BLOCK_SIZES[mosaic_gpu_head_dim(head_dim)]
    return DEFAULT_BLOCK_SIZES[backend]


def num_warps(blocks: BlockSizes, head_dim: int) -> int:
    if blocks.num_warps is not None:
        return blocks.num_warps
    return 4 if head_dim <= 64 else 8


def _uniform(q: int, k: int, **options) -> BlockSizes:
    return BlockSizes(block_q=q, block_k=k, block_q_bwd=q, block_k_bwd=k, **options)


# What a block-size sweep (bench/gpu/run.py) may pick from, the defaults first: each one that
# `candidate_block_sizes` keeps for a head dim and dtype is compiled deviceless for H100 and
# TPU v5e in the accelerator-compile tests. GPU: square and oblong tiles of 32..128 (past 128
# a [block, block] float32 score tile alone is 64 KiB of registers per program); TPU:
# multiples of the 128 lanes up to 512.
CANDIDATE_BLOCK_SIZES = {
    "gpu": (
        DEFAULT_BLOCK_SIZES["gpu"],
        _uniform(32, 32),
        _uniform(128, 64),
        _uniform(64, 128),
        _uniform(128, 128),
        _uniform(64, 64, num_stages=3),
    ),
    "mosaic_gpu": (
        *MOSAIC_GPU_BLOCK_SIZES.values(),
        BlockSizes(block_q=64, block_k=64, block_q_bwd=64, block_k_bwd=64, num_stages=3),
        BlockSizes(block_q=64, block_k=256, block_q_bwd=64, block_k_bwd=64, num_stages=2),
        BlockSizes(block_q=64, block_k=128, block_q_bwd=128, block_k_bwd=64, num_stages=2),
        BlockSizes(block_q=64, block_k=128, block_q_bwd=64, block_k_bwd=64, num_stages=4),
    ),
    "tpu": (DEFAULT_BLOCK_SIZES["tpu"], _uniform(256, 256), _uniform(512, 512), _uniform(128, 512)),
}

H100_SHARED_MEMORY = 232_448  # bytes per block (opt-in) on sm90: XLA's H100 description


def triton_shared_memory(blocks: BlockSizes, head_dim: int, itemsize: int) -> int:
    """Estimated shared memory (bytes) of the largest of the three Triton kernels: the tiles a
    program loads once, plus `num_stages` copies of the two tiles its loop streams.

    Forward: Q resident, K and V streamed; dQ: Q and dO resident, K and V streamed; dK/dV: K
    and V resident, Q and dO streamed. It reproduces Triton's own figure where the compile
    fails (128 x 64 tiles, head_dim 128, float32: 262,144 bytes requested).
    """
    row = head_dim * itemsize
    stages = blocks.num_stages
    forward = blocks.block_q * row + 2 * stages * blocks.block_k * row
    dq = 2 * blocks.block_q_bwd * row + 2 * stages * blocks.block_k_bwd * row
    dkdv = 2 * blocks.block_k_bwd * row + 2 * stages * blocks.block_q_bwd * row
    return max(forward, dq, dkdv)


def mosaic_gpu_shared_memory(blocks: BlockSizes, head_dim: int, itemsize: int) -> int:
    """Shared memory (bytes) of the largest of the three Mosaic GPU kernels: resident tiles
    once, streamed tiles `num_stages` times, float32 row statistics [block] at 4 bytes each."""
    row, stages = head_dim * itemsize, blocks.num_stages
    forward = blocks.block_q * (row + 4) + 2 * stages * blocks.block_k * row
    dq = 2 * blocks.block_q_bwd * (row + 4) + 2 * stages * blocks.block_k_bwd * row
    dkdv = 2 * blocks.block_k_bwd * row + 2 * stages * blocks.block_q_bwd * (row + 4)
    return max(forward, dq, dkdv)


def candidate_block_sizes(
    backend: str, head_dim: int, itemsize: int, shared_memory: int = H100_SHARED_MEMORY
) -> tuple[BlockSizes, ...]:
    """The `CANDIDATE_BLOCK_SIZES` of `backend` that fit a head dim (padded as the kernels pad
    it) and an input itemsize (bytes; float32 is 4); on GPU, within `shared_memory` bytes."""
    if backend == "tpu":
        return CANDIDATE_BLOCK_SIZES["tpu"]
    if backend == "mosaic_gpu":
        padded = mosaic_gpu_head_dim(head_dim)
        fits = (
            b
            for b in CANDIDATE_BLOCK_SIZES["mosaic_gpu"]
            if mosaic_gpu_shared_memory(b, padded, itemsize) <= shared_memory
        )
        return tuple(dict.fromkeys((default_block_sizes(backend, head_dim), *fits)))
    padded = max(16, 1 << (head_dim - 1).bit_length())
    return tuple(
        b
        for b in CANDIDATE_BLOCK_SIZES["gpu"]
        if triton_shared_memory(b, padded, itemsize) <= shared_memory
    )

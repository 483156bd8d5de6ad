"""Block sizes and compiler settings, one table per backend."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class BlockSizes:
    """Tile sizes of the forward (`block_q`, `block_k`) and backward kernels.

    GPU (Triton): powers of two >= 16. TPU (Mosaic): multiples of 128 (the lane width).
    `num_warps`/`num_stages` are Triton's and ignored on TPU.
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
DEFAULT_BLOCK_SIZES = {
    "gpu": BlockSizes(block_q=64, block_k=64, block_q_bwd=64, block_k_bwd=64, num_stages=2),
    "tpu": BlockSizes(block_q=128, block_k=128, block_q_bwd=128, block_k_bwd=128),
}


def num_warps(blocks: BlockSizes, head_dim: int) -> int:
    if blocks.num_warps is not None:
        return blocks.num_warps
    return 4 if head_dim <= 64 else 8


def _uniform(q: int, k: int, **options) -> BlockSizes:
    return BlockSizes(block_q=q, block_k=k, block_q_bwd=q, block_k_bwd=k, **options)


# What a block-size sweep (bench/gpu/run.py) may pick from, the defaults included: every one is
# compiled deviceless for H100 and TPU v5e in the accelerator-compile tests at each head dim and
# dtype. GPU: square and oblong tiles of 32..128 (past 128 a [block, block] float32 score tile
# alone is 64 KiB of registers per program); TPU: multiples of the 128 lanes up to 512.
CANDIDATE_BLOCK_SIZES = {
    "gpu": (
        DEFAULT_BLOCK_SIZES["gpu"],
        _uniform(32, 32),
        _uniform(128, 64),
        _uniform(64, 128),
        _uniform(128, 128),
        _uniform(64, 64, num_stages=3),
    ),
    "tpu": (DEFAULT_BLOCK_SIZES["tpu"], _uniform(256, 256), _uniform(512, 512), _uniform(128, 512)),
}

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


# Starting points from the brief (shared/research/PALLAS.md §5.4); tune on the device.
DEFAULT_BLOCK_SIZES = {
    "gpu": BlockSizes(block_q=64, block_k=64, block_q_bwd=64, block_k_bwd=64, num_stages=2),
    "tpu": BlockSizes(block_q=128, block_k=128, block_q_bwd=128, block_k_bwd=128),
}


def num_warps(blocks: BlockSizes, head_dim: int) -> int:
    if blocks.num_warps is not None:
        return blocks.num_warps
    return 4 if head_dim <= 64 else 8

"""Attention kernels: Pallas flash attention (GPU via Triton, Hopper via Mosaic GPU, TPU via
Mosaic, interpret mode on CPU), a blocked plain-JAX implementation for CPU, and a plain-JAX
reference, all with one contract (see `attention`). Depends on jax alone."""

# Imported eagerly: on jax 0.11+ its lazy import during the first interpret-mode call adds a
# trace-context entry and makes the second call recompile.
import jax.experimental.pallas.tpu  # noqa: F401

from ._attention import IMPLEMENTATIONS as IMPLEMENTATIONS
from ._attention import SEGMENT_IMPLEMENTATIONS as SEGMENT_IMPLEMENTATIONS
from ._attention import Implementation as Implementation
from ._attention import attention as attention
from ._blocked import blocked_attention as blocked_attention
from ._blocks import CANDIDATE_BLOCK_SIZES as CANDIDATE_BLOCK_SIZES
from ._blocks import DEFAULT_BLOCK_SIZES as DEFAULT_BLOCK_SIZES
from ._blocks import MOSAIC_GPU_BLOCK_SIZES as MOSAIC_GPU_BLOCK_SIZES
from ._blocks import BlockSizes as BlockSizes
from ._blocks import candidate_block_sizes as candidate_block_sizes
from ._blocks import default_block_sizes as default_block_sizes
from ._contract import check_attention_inputs as check_attention_inputs
from ._contract import empty_attention as empty_attention
from ._flash import BACKENDS as BACKENDS
from ._flash import flash_attention as flash_attention
from ._reference import attention_weights as attention_weights
from ._reference import reference_attention as reference_attention

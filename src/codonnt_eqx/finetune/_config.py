"""The fine-tuning recipe: mode, head, optimiser and stopping, as one frozen config."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from ..model import RunOptions
from ._lora import LORA_TARGETS
from ._trainable import MODES, Mode

# Adam learning rates that worked on the offline tasks; the head trains with the adapters.
DEFAULT_LEARNING_RATES = {"probe": 1e-3, "ia3": 3e-3, "lora": 1e-3, "full": 1e-4}


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """How to fit a task.

    - `mode`: `"probe"` (frozen model; representations computed once, then only the head
      trains), `"ia3"`, `"lora"` (frozen model plus adapters), or `"full"` (everything trains).
    - `hidden`: hidden width of an MLP head, or None for a linear head.
    - `layer`: which representations the head reads: 0 the input embedding, n block n's
      output, -1 the final embeddings.
    - `learning_rate`: Adam's (default per mode: `DEFAULT_LEARNING_RATES`); `weight_decay`:
      AdamW's decoupled decay on what trains.
    - `batch_size`: sequences per step (fine-tuning); `probe_batch_size`: feature rows per
      step (probe; per residue, one row is one residue).
    - `epochs`, `patience`: at most `epochs` passes over the training split; stop when the
      validation split's primary metric (Spearman, MCC, per-residue accuracy) has not improved
      for `patience` epochs, and keep the best epoch's parameters.
    - `lora_rank`, `lora_alpha`, `lora_targets`: LoRA's r, alpha and projections.
    - `max_codons`: cut longer sequences (and their residue labels) to this many codons.
    - `bucket`: pad batches to a multiple of this many tokens (fewer compiled shapes).
    - `seed`.
    - `attention`, `dtype`, `remat`: the model's run options (`RunOptions`, validated the
      same way in every entry point).
    """

    mode: Mode = "probe"
    hidden: int | None = None
    layer: int = -1
    learning_rate: float | None = None
    weight_decay: float = 0.0
    batch_size: int = 8
    probe_batch_size: int = 256
    epochs: int = 20
    patience: int = 4
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_targets: tuple[str, ...] = ("query", "value")
    max_codons: int | None = None
    bucket: int = 32
    seed: int = 0
    dtype: Any = "float32"  # a name or a jnp dtype; stored as its name
    attention: str = "auto"
    remat: bool = False

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        for name in ("batch_size", "probe_batch_size", "epochs", "patience", "lora_rank", "bucket"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("hidden", "max_codons"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
        if self.learning_rate is not None and not (
            math.isfinite(self.learning_rate) and self.learning_rate > 0
        ):
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not (math.isfinite(self.lora_alpha) and self.lora_alpha > 0):
            raise ValueError(f"lora_alpha must be positive, got {self.lora_alpha}")
        unknown = [t for t in self.lora_targets if t not in LORA_TARGETS]
        if unknown or not self.lora_targets:
            raise ValueError(f"lora_targets must be some of {list(LORA_TARGETS)}")
        object.__setattr__(self, "dtype", self.run_options.dtype)  # jnp.bfloat16 -> its name

    @property
    def run_options(self) -> RunOptions:
        """`attention`, `dtype`, `remat` as the model's `RunOptions` (validated)."""
        return RunOptions(attention=self.attention, dtype=self.dtype, remat=self.remat)

    @property
    def lr(self) -> float:
        return self.learning_rate or DEFAULT_LEARNING_RATES[self.mode]

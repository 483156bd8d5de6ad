"""The pretraining recipe as one frozen config; defaults are Codon-NT's (its model card)."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..model import RunOptions


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """How to pretrain (the model's size is a `ModelConfig`, the data a `GenomeCorpus`).

    - `seq_length`: tokens per training window, `<cls>` included (Codon-NT: 1000).
    - `tokens_per_batch`: the effective batch in tokens (Codon-NT: 1M); the batch is
      `tokens_per_batch // seq_length` sequences.
    - `micro_batch_size`: sequences per forward/backward pass over all devices (`None`: the
      whole batch); the batch is reached by accumulating `batch / micro_batch` of them.
    - `steps`, `seed`: the run is a function of its config and seed.
    - `mask_rate`, `mask_prob`, `random_prob`: BERT masking (15% selected; 80/10/10).
    - `init_lr`, `peak_lr`, `warmup_steps`: linear warmup then square-root decay.
    - `b1`, `b2`, `eps`: Adam.
    - `attention`, `dtype`, `remat`: the model's run options (`RunOptions`, validated the
      same way in every entry point); parameters and optimiser state stay float32.
    - `fsdp`: devices sharding each parameter (1: pure data parallelism).
    - `log_every`, `eval_every`, `eval_windows`, `checkpoint_every`, `keep_checkpoints`:
      bookkeeping; validation uses at most `eval_windows` held-out windows.
    """

    seq_length: int = 1000
    tokens_per_batch: int = 1_000_000
    micro_batch_size: int | None = None
    steps: int = 100_000
    seed: int = 0
    mask_rate: float = 0.15
    mask_prob: float = 0.8
    random_prob: float = 0.1
    init_lr: float = 5e-5
    peak_lr: float = 1e-4
    warmup_steps: int = 16_000
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    dtype: Any = "bfloat16"  # a name or a jnp dtype; stored as its name
    remat: bool = False
    attention: str = "auto"
    fsdp: int = 1
    log_every: int = 10
    eval_every: int = 1000
    eval_windows: int = 512
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3

    def __post_init__(self):
        for name in (
            "seq_length",
            "tokens_per_batch",
            "steps",
            "warmup_steps",
            "fsdp",
            "log_every",
            "eval_every",
            "eval_windows",
            "checkpoint_every",
            "keep_checkpoints",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.seq_length < 2:
            raise ValueError("seq_length must be at least 2 (<cls> and one token)")
        if self.tokens_per_batch < self.seq_length:
            raise ValueError(
                f"tokens_per_batch {self.tokens_per_batch} is less than one sequence of "
                f"{self.seq_length} tokens"
            )
        micro = self.micro_batch_size
        if micro is not None:
            if isinstance(micro, bool) or not isinstance(micro, int) or micro < 1:
                raise ValueError(f"micro_batch_size must be a positive integer, got {micro!r}")
            if self.batch_size % micro:
                raise ValueError(
                    f"micro_batch_size {micro} does not divide the batch of {self.batch_size} "
                    f"sequences ({self.tokens_per_batch} tokens / {self.seq_length})"
                )
        object.__setattr__(self, "dtype", self.run_options.dtype)  # jnp.bfloat16 -> its name
        for name in ("init_lr", "peak_lr", "eps"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("b1", "b2"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")

    @property
    def run_options(self) -> RunOptions:
        """`attention`, `dtype`, `remat` as the model's `RunOptions` (validated)."""
        return RunOptions(attention=self.attention, dtype=self.dtype, remat=self.remat)

    @property
    def batch_size(self) -> int:
        """Sequences per optimiser step."""
        return self.tokens_per_batch // self.seq_length

    @property
    def accumulation(self) -> int:
        """Micro-batches per optimiser step."""
        return self.batch_size // (self.micro_batch_size or self.batch_size)

    def replace(self, **changes) -> PretrainConfig:
        return dataclasses.replace(self, **changes)

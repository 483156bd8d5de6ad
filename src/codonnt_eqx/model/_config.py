"""Model configuration (frozen) and the published Nucleotide Transformer presets."""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Literal


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Hyperparameters of a Nucleotide Transformer (v1 or v2).

    Field names follow the original's hyperparameters; checkpoints always bring their own.
    `key_dim=None` means embed_dim / num_heads. `rotary_rescaling` is the rotary base
    rescaling factor s (base 10000 * s^(key_dim / (key_dim - 2))); 1.0 is plain rotary.
    """

    vocab_size: int
    embed_dim: int
    num_layers: int
    num_heads: int
    ffn_dim: int
    key_dim: int | None = None
    positional_embedding: Literal["rotary", "learned"] = "rotary"
    max_positions: int = 2048
    rotary_rescaling: float = 1.0
    use_glu: bool = True
    ffn_activation: Literal["swish", "gelu"] = "swish"
    add_bias_ffn: bool = False
    emb_layer_norm_before: bool = False
    token_dropout: bool = False
    masking_ratio: float = 0.15
    masking_prob: float = 0.8
    embed_scale: float = 1.0
    layer_norm_eps: float = 1e-5
    pad_token_id: int = 1
    mask_token_id: int = 2
    k_for_kmers: int = 3

    def __post_init__(self):
        # A config comes from user code or from checkpoint metadata (untrusted JSON): every
        # field is checked, because a bad value otherwise surfaces as NaN outputs or a clamp.
        for name in _POSITIVE_INTS:
            _check_int(name, getattr(self, name), minimum=1)
        if self.key_dim is not None:
            _check_int("key_dim", self.key_dim, minimum=1)
        for name in ("pad_token_id", "mask_token_id"):
            _check_int(name, getattr(self, name), minimum=0)
            if getattr(self, name) >= self.vocab_size:
                raise ValueError(
                    f"{name} {getattr(self, name)} is outside the vocabulary of "
                    f"{self.vocab_size} tokens"
                )
        if self.pad_token_id == self.mask_token_id:
            raise ValueError(f"pad_token_id and mask_token_id are both {self.pad_token_id}")
        for name in ("use_glu", "add_bias_ffn", "emb_layer_norm_before", "token_dropout"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        for name, options in (
            ("positional_embedding", ("rotary", "learned")),
            ("ffn_activation", ("swish", "gelu")),
        ):
            if getattr(self, name) not in options:
                raise ValueError(f"{name} must be one of {options}, got {getattr(self, name)!r}")
        _check_float("rotary_rescaling", self.rotary_rescaling, low=0.0)
        _check_float("layer_norm_eps", self.layer_norm_eps, low=0.0)
        _check_float("embed_scale", self.embed_scale, low=0.0)
        _check_float("masking_ratio", self.masking_ratio, low=0.0, high=1.0, closed=True)
        _check_float("masking_prob", self.masking_prob, low=0.0, high=1.0, closed=True)
        if self.token_dropout and self.masking_ratio * self.masking_prob >= 1.0:
            # token dropout rescales embeddings by 1 - ratio * prob
            raise ValueError("token_dropout needs masking_ratio * masking_prob < 1")
        if self.key_dim is None and self.embed_dim % self.num_heads:
            raise ValueError(
                f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}"
            )
        if self.positional_embedding == "rotary" and (self.head_dim % 2 or self.head_dim < 4):
            # head_dim 2 makes the rescaled base 10000 * s^(d / (d - 2)) divide by zero.
            raise ValueError(f"rotary embeddings need an even key_dim >= 4, got {self.head_dim}")

    @property
    def head_dim(self) -> int:
        return self.key_dim if self.key_dim is not None else self.embed_dim // self.num_heads

    def replace(self, **changes) -> ModelConfig:
        return dataclasses.replace(self, **changes)


_POSITIVE_INTS = (
    "vocab_size",
    "embed_dim",
    "num_layers",
    "num_heads",
    "ffn_dim",
    "max_positions",
    "k_for_kmers",
)


def _check_int(name: str, value, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _check_float(
    name: str, value, *, low: float, high: float = math.inf, closed: bool = False
) -> None:
    """A finite real number in (low, high), or [low, high] when `closed`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    value = float(value)
    inside = low <= value <= high if closed else low < value < high
    if not (math.isfinite(value) and inside):
        bounds = f"[{low}, {high}]" if closed else f"({low}, {high})"
        raise ValueError(f"{name} must be a finite number in {bounds}, got {value}")

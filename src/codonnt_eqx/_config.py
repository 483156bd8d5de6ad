"""Model configuration (frozen) and the published Nucleotide Transformer presets."""

from __future__ import annotations

import dataclasses
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
        for name in ("vocab_size", "embed_dim", "num_layers", "num_heads", "ffn_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.key_dim is None and self.embed_dim % self.num_heads:
            raise ValueError(
                f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}"
            )
        if self.positional_embedding not in ("rotary", "learned"):
            raise ValueError(
                f"positional_embedding must be 'rotary' or 'learned', "
                f"got {self.positional_embedding!r}"
            )
        if self.ffn_activation not in ("swish", "gelu"):
            raise ValueError(
                f"ffn_activation must be 'swish' or 'gelu', got {self.ffn_activation!r}"
            )
        if self.positional_embedding == "rotary" and self.head_dim % 2:
            raise ValueError(f"rotary embeddings need an even key_dim, got {self.head_dim}")
        for name in ("pad_token_id", "mask_token_id"):
            if not 0 <= getattr(self, name) < self.vocab_size:
                raise ValueError(f"{name} {getattr(self, name)} is outside the vocabulary")

    @property
    def head_dim(self) -> int:
        return self.key_dim if self.key_dim is not None else self.embed_dim // self.num_heads

    def replace(self, **changes) -> ModelConfig:
        return dataclasses.replace(self, **changes)


_V2 = dict(positional_embedding="rotary", use_glu=True, ffn_activation="swish", add_bias_ffn=False)
_V1 = dict(
    positional_embedding="learned",
    max_positions=1000,
    use_glu=False,
    ffn_activation="gelu",
    add_bias_ffn=True,
    token_dropout=True,
    k_for_kmers=6,
)

PRESETS: dict[str, ModelConfig] = {
    # Codon-NT: NT v2 50M on non-overlapping 3-mers (75-token vocabulary).
    "codon_nt": ModelConfig(75, 512, 12, 16, 2048, **_V2),
    "nt_v2_50m": ModelConfig(4107, 512, 12, 16, 2048, k_for_kmers=6, **_V2),
    "nt_v2_100m": ModelConfig(4107, 512, 22, 16, 2048, k_for_kmers=6, **_V2),
    "nt_v2_500m": ModelConfig(4107, 1024, 29, 16, 4096, k_for_kmers=6, **_V2),
    # nt_v2_250m is left out until its published config can be checked.
    # v1 embedding tables hold the first 4105 tokens (no <eos>/<bos>).
    "nt_v1_500m": ModelConfig(4105, 1280, 24, 20, 5120, **_V1),
    "nt_v1_2b5": ModelConfig(4105, 2560, 32, 20, 10240, **_V1),
}


def preset(name: str) -> ModelConfig:
    """A published architecture by name: one of `PRESETS` (`codon_nt`, `nt_v2_50m`, ...)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}") from None

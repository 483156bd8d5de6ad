"""The one table of model sizes: the published presets, the small bodies of the tokenization
comparison, their short names; and a configuration for any tokenizer at one of those sizes."""

from __future__ import annotations

import functools

from ..tokenizers import Tokenizer
from ._config import ModelConfig

# The two architecture families; a preset adds its sizes (vocabulary, width, depth, heads, FFN).
_v2 = functools.partial(
    ModelConfig, positional_embedding="rotary", use_glu=True, ffn_activation="swish"
)
_v1 = functools.partial(
    ModelConfig,
    positional_embedding="learned",
    max_positions=1000,
    use_glu=False,
    ffn_activation="gelu",
    add_bias_ffn=True,
    token_dropout=True,
    k_for_kmers=6,
)

PRESETS: dict[str, ModelConfig] = {
    # Bodies the tokenization comparison holds fixed across tokenizers (the embedding table is
    # whatever the vocabulary needs); all NT v2 (rotary, swish GLU, no biases).
    "tiny": _v2(75, 128, 2, 4, 512),
    "mini": _v2(75, 192, 4, 6, 768),  # the body of codon-nt-mini
    # Codon-NT: NT v2 50M on non-overlapping 3-mers (75-token vocabulary).
    "codon_nt": _v2(75, 512, 12, 16, 2048),
    "nt_v2_50m": _v2(4107, 512, 12, 16, 2048, k_for_kmers=6),
    "nt_v2_100m": _v2(4107, 512, 22, 16, 2048, k_for_kmers=6),
    "nt_v2_500m": _v2(4107, 1024, 29, 16, 4096, k_for_kmers=6),
    # nt_v2_250m is left out until its published config can be checked.
    # v1 embedding tables hold the first 4105 tokens (no <eos>/<bos>).
    "nt_v1_500m": _v1(4105, 1280, 24, 20, 5120),
    "nt_v1_2b5": _v1(4105, 2560, 32, 20, 10240),
}


# Short names of the published sizes, as people say them.
ALIASES: dict[str, str] = {
    "50m": "nt_v2_50m",
    "100m": "nt_v2_100m",
    "500m": "nt_v2_500m",
    "2.5b": "nt_v1_2b5",
    "2b5": "nt_v1_2b5",
}

# The sizes `model_config_for` was documented with: a view of PRESETS, kept for one release.
SIZES: dict[str, ModelConfig] = {name: PRESETS[name] for name in ("tiny", "mini", "codon_nt")}


def model_sizes() -> dict[str, ModelConfig]:
    """Every size name: the presets and their short names (`ALIASES`)."""
    return PRESETS | {alias: PRESETS[name] for alias, name in ALIASES.items()}


def preset(name: str) -> ModelConfig:
    """An architecture by name: one of `PRESETS` (`codon_nt`, `nt_v2_50m`, `tiny`, ...) or a
    short name of `ALIASES` (`50m`, ...)."""
    sizes = model_sizes()
    if name not in sizes:
        raise ValueError(f"unknown preset {name!r}; choose from {sorted(sizes)}")
    return sizes[name]


def model_config_for(tokenizer: Tokenizer, size: str | ModelConfig = "mini") -> ModelConfig:
    """The NT v2 architecture `size` with `tokenizer`'s vocabulary and special ids.

    **Arguments:**

    - `tokenizer`: any `Tokenizer`.
    - `size`: a name of `PRESETS` (or a short name): `"tiny"` (2 x 128), `"mini"` (4 x 192,
      the body of codon-nt-mini), `"codon_nt"` (12 x 512, Codon-NT's), ...; or a
      `ModelConfig` whose body to keep.

    The non-embedding parameters depend on `size` alone, so models of one size are matched
    across tokenizers; the embedding and LM-head rows follow `vocab_size`.

    ```python
    config = model_config_for(CodonTokenizer(), "tiny")  # vocab_size 136
    ```
    """
    if isinstance(size, str):
        sizes = model_sizes()
        if size not in sizes:
            raise ValueError(f"unknown size {size!r}; choose from {sorted(sizes)}")
        size = sizes[size]
    elif not isinstance(size, ModelConfig):
        raise TypeError(f"size must be a name or a ModelConfig, got {size!r}")
    k = getattr(tokenizer, "k", 1)
    return size.replace(
        vocab_size=tokenizer.vocab_size,
        pad_token_id=tokenizer.pad_id,
        mask_token_id=tokenizer.mask_id,
        k_for_kmers=k if isinstance(k, int) and k >= 1 else 1,
    )

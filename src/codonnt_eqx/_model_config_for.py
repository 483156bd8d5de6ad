"""A model configuration for any tokenizer: the architecture by size, the vocabulary and
special ids from the tokenizer."""

from __future__ import annotations

from ._config import PRESETS, ModelConfig
from .tokenizers import Tokenizer

# Body sizes (layers, width, heads, feed-forward) that the tokenization comparison holds
# fixed across tokenizers; the embedding table is whatever the vocabulary needs. All are NT v2
# (rotary, swish GLU, no biases).
SIZES: dict[str, ModelConfig] = {
    "tiny": PRESETS["codon_nt"].replace(embed_dim=128, num_layers=2, num_heads=4, ffn_dim=512),
    "mini": PRESETS["codon_nt"].replace(embed_dim=192, num_layers=4, num_heads=6, ffn_dim=768),
    "codon_nt": PRESETS["codon_nt"],  # Codon-NT's 50M body
}


def model_config_for(tokenizer: Tokenizer, size: str | ModelConfig = "mini") -> ModelConfig:
    """The NT v2 architecture `size` with `tokenizer`'s vocabulary and special ids.

    **Arguments:**

    - `tokenizer`: any `Tokenizer`.
    - `size`: `"tiny"` (2 x 128), `"mini"` (4 x 192, the body of codon-nt-mini) or
      `"codon_nt"` (12 x 512, Codon-NT's), or a `ModelConfig` whose body to keep.

    The non-embedding parameters depend on `size` alone, so models of one size are matched
    across tokenizers; the embedding and LM-head rows follow `vocab_size`.

    ```python
    config = model_config_for(CodonTokenizer(), "tiny")  # vocab_size 136
    ```
    """
    if isinstance(size, str):
        if size not in SIZES:
            raise ValueError(f"unknown size {size!r}; choose from {sorted(SIZES)}")
        size = SIZES[size]
    elif not isinstance(size, ModelConfig):
        raise TypeError(f"size must be a name or a ModelConfig, got {size!r}")
    k = getattr(tokenizer, "k", 1)
    return size.replace(
        vocab_size=tokenizer.vocab_size,
        pad_token_id=tokenizer.pad_id,
        mask_token_id=tokenizer.mask_id,
        k_for_kmers=k if isinstance(k, int) and k >= 1 else 1,
    )

"""Loading and saving checkpoints: the Hugging Face layout, InstaDeep's JAX layout, our own."""

from __future__ import annotations

import os
import pathlib

from .._model import NucleotideTransformer
from .._tokenizers import KmerTokenizer
from ._errors import CheckpointError
from .hf import load_hf, save_hf
from .jax_layout import load_jax
from .safe_pickle import UnsafePickleError

__all__ = ["CheckpointError", "UnsafePickleError", "from_pretrained", "save_pretrained"]


def from_pretrained(
    path: str | os.PathLike, *, dtype=None, **tokenizer_options
) -> tuple[NucleotideTransformer, KmerTokenizer]:
    """Load a published (or saved) model and its tokenizer from a local folder; never fetches.

    Recognised by their files: the Hugging Face layout (`config.json`, `vocab.txt`,
    `model.safetensors` or `pytorch_model.bin`, possibly sharded) and InstaDeep's JAX layout
    (`jax_model/hyperparams.json` + `jax_model/pytree_ckpt.joblib`). Pickle files are read by a
    restricted unpickler that runs no code from them, and torch is not needed.

    **Arguments:**

    - `path`: the folder, e.g. the result of `huggingface-cli download
      InstaDeepAI/nucleotide-transformer-v2-50m-3mer-multi-species --local-dir codon-nt`.
    - `dtype`: parameter dtype (default float32; `jnp.bfloat16` halves the memory).
    - `tokenizer_options`: passed to `KmerTokenizer` (`uppercase`, `iupac_to_n`, ...).

    Raises `CheckpointError` naming the file and key for anything missing, unexpected,
    mis-shaped, corrupt or inconsistent; nothing is half-loaded.
    """
    path = pathlib.Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: not a folder (download the checkpoint first)")
    if (path / "config.json").exists():
        return load_hf(path, dtype, **tokenizer_options)
    if (path / "jax_model" / "hyperparams.json").exists():
        return load_jax(path, dtype, **tokenizer_options)
    raise CheckpointError(
        f"{path}: no config.json (Hugging Face layout) or jax_model/hyperparams.json (JAX layout)"
    )


def save_pretrained(
    model: NucleotideTransformer, tokenizer: KmerTokenizer, path: str | os.PathLike
) -> None:
    """Write the Hugging Face layout (config.json, vocab.txt, model.safetensors, float32), which
    `from_pretrained` reads back bit-exactly and transformers' ESM tools can read."""
    save_hf(model, tokenizer, pathlib.Path(path))

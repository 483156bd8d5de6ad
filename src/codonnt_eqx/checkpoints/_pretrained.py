"""`from_pretrained` and `save_pretrained`: a model and its tokenizer from a folder in any layout
we read, or a shipped model by name; and back to the Hugging Face layout."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from ..model import NucleotideTransformer
from ..tokenizers import KmerTokenizer, Tokenizer
from ._errors import CheckpointError
from ._hub import looks_like_hub_id, resolve_hub_id
from ._shipped import names_shipped_model, shipped_model_path
from .hf import TOKENIZER_FILE, load_hf, save_hf
from .jax_layout import load_jax


def _parameter_dtype(dtype) -> jnp.dtype:
    """`dtype` as a floating parameter dtype; anything else would round the weights away
    (int8 makes them zeros) or be silently narrowed (float64 without jax_enable_x64)."""
    if dtype is None:
        return jnp.dtype(jnp.float32)
    try:
        parsed = jnp.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype {dtype!r} is not a dtype") from None
    allowed = [jnp.float32, jnp.bfloat16, jnp.float16]
    if jax.dtypes.canonicalize_dtype(np.float64) == np.float64:  # jax_enable_x64
        allowed.append(jnp.float64)
    if parsed not in [jnp.dtype(a) for a in allowed]:
        names = ", ".join(jnp.dtype(a).name for a in allowed)
        hint = " (float64 needs jax_enable_x64)" if parsed == np.float64 else ""
        raise ValueError(f"dtype {parsed.name} is not a parameter dtype; use {names}{hint}")
    return parsed


def from_pretrained(
    path: str | os.PathLike,
    *,
    dtype=None,
    revision: str | None = None,
    tokenizer_classes: Iterable[type] | Mapping[str, type] = (),
    **tokenizer_options,
) -> tuple[NucleotideTransformer, Tokenizer]:
    """Load a published (or saved) model and its tokenizer from a local folder, or a model that
    ships with the package by name (`"codon-nt-mini"`, see `SHIPPED_MODELS`), or a Hugging
    Face Hub id (`org/name`, from the local Hugging Face cache; downloaded only when
    `huggingface_hub` is installed and `HF_HUB_OFFLINE` is unset).

    Recognised by their files: the Hugging Face layout (`config.json`, `vocab.txt`,
    `model.safetensors` or `pytorch_model.bin`, possibly sharded with an index; a single file
    is preferred to an index, as transformers does) and InstaDeep's JAX layout
    (`jax_model/hyperparams.json` + `jax_model/pytree_ckpt.joblib`). Pickle files are read by a
    restricted unpickler that runs no code from them, and torch is not needed.

    **Arguments:**

    - `path`: the folder, e.g. the result of `hf download
      InstaDeepAI/nucleotide-transformer-v2-50m-3mer-multi-species --local-dir codon-nt`; the
      name of a shipped model; or a Hub id such as
      `"InstaDeepAI/nucleotide-transformer-v2-50m-3mer-multi-species"`, looked up in
      `HF_HUB_CACHE` / `HF_HOME/hub` / `~/.cache/huggingface/hub` (an existing folder of
      that name takes precedence). A missing model's error gives the `hf download` command.
    - `revision`: with a Hub id, the branch, tag or commit (default `main`).
    - `dtype`: parameter dtype: float32 (the default), bfloat16 (half the memory), float16, or
      float64 when `jax_enable_x64` is on; anything else is a `ValueError`.
    - `tokenizer_options`: passed to the tokenizer (`uppercase`, `iupac_to_n`, ...): a
      `KmerTokenizer` for the published checkpoints, the saved tokenizer's class for a folder
      with `codonnt_tokenizer.json` (any `Tokenizer`, see `save_pretrained`).
    - `tokenizer_classes`: your own tokenizer classes that a saved `codonnt_tokenizer.json`
      may name (besides this package's and those given to `register_tokenizer`). A folder's
      files never choose code to import: any other class name is a `CheckpointError`.

    Raises `CheckpointError` naming the file and key for anything missing, unexpected,
    mis-typed, mis-shaped, corrupt or inconsistent (a vocabulary that does not fit the
    weights included); nothing is half-loaded. NaN or infinite weights load with a
    `RuntimeWarning` naming them.
    """
    dtype = _parameter_dtype(dtype)
    if {"k", "layout"} & tokenizer_options.keys():
        raise TypeError("the checkpoint sets the tokenizer's k and layout")
    if isinstance(path, str) and names_shipped_model(path):
        path = shipped_model_path(path)
    elif looks_like_hub_id(path):
        path = resolve_hub_id(str(path), revision)
    elif revision is not None:
        raise ValueError("revision= applies to a Hugging Face Hub id (org/name), not a folder")
    path = pathlib.Path(path)
    if not (path / TOKENIZER_FILE).exists():
        # A misspelt option fails now, before any reading. A saved tokenizer's class (e.g.
        # `CodonTokenizer(partial=...)`) checks its own options when it is built.
        KmerTokenizer(1, **tokenizer_options)
    if not path.is_dir():
        raise CheckpointError(
            f"{path}: not a folder (download the checkpoint first, or name it by its Hugging "
            "Face Hub id, org/name)"
        )
    if (path / "config.json").exists():
        return load_hf(path, dtype, tokenizer_classes, **tokenizer_options)
    if (path / "jax_model" / "hyperparams.json").exists():
        return load_jax(path, dtype, **tokenizer_options)
    raise CheckpointError(
        f"{path}: no config.json (Hugging Face layout) or jax_model/hyperparams.json (JAX layout)"
    )


def save_pretrained(
    model: NucleotideTransformer,
    tokenizer: Tokenizer,
    path: str | os.PathLike,
    *,
    dtype: str = "float32",
) -> None:
    """Write the Hugging Face layout (config.json, vocab.txt, model.safetensors), which
    `from_pretrained` reads back (bit-exactly from float32) and transformers' ESM tools read.

    A tokenizer other than a plain `KmerTokenizer` is also saved as `codonnt_tokenizer.json`
    (its class's import path and `to_config()`), from which `from_pretrained` rebuilds it.

    `dtype` is the storage dtype: `"float32"` (default), or `"float16"` / `"bfloat16"` for half
    the size (`from_pretrained` restores float32 parameters; float16 refuses weights beyond
    its range with a `CheckpointError`).

    All or nothing: what the layout cannot hold (embed_scale != 1, ...) or a tokenizer that
    does not fit the model is a `CheckpointError` before anything is written, and a failure
    while writing leaves `path` as it was. Saving into an existing checkpoint folder replaces
    its Hugging Face files (config.json, vocab.txt, model.safetensors, pytorch_model.bin,
    their index files and the shards these list) and keeps everything else, a jax_model/
    folder included. A `path` that is a file is a `NotADirectoryError`.
    """
    save_hf(model, tokenizer, pathlib.Path(path), dtype)

"""Digests of what a derived file (an adapter, a head, a representation cache) was made from:
the base weights, the tokenizer, the input data. Loading against anything else is refused
with both digests named, instead of predicting garbage."""

from __future__ import annotations

import hashlib
import json

import equinox as eqx
import jax
import numpy as np

from ..errors import InputError
from ..tokenizers import Tokenizer


class ProvenanceError(InputError):
    """A derived file used with a base model, tokenizer or data other than its own."""


def weights_digest(model) -> str:
    """SHA-256 (hex, 16 digits) of a model's arrays: their paths, shapes and float32 values.
    Run options (attention, dtype, remat) are not weights and do not change it."""
    digest = hashlib.sha256()
    arrays = eqx.filter(model, eqx.is_array)
    for path, leaf in jax.tree_util.tree_flatten_with_path(arrays)[0]:
        value = np.asarray(leaf)
        if np.issubdtype(value.dtype, np.floating) or value.dtype.name == "bfloat16":
            value = value.astype(np.float32)
        digest.update(f"{jax.tree_util.keystr(path)}{list(value.shape)}".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()[:16]


def tokenizer_digest(tokenizer: Tokenizer) -> str:
    """SHA-256 (hex, 16 digits) of what token ids mean: the class name, the vocabulary and the
    special ids (not the lenient-input flags, which change no id)."""
    description = [
        type(tokenizer).__name__,
        list(tokenizer.vocabulary),
        sorted(int(i) for i in tokenizer.special_ids),
        int(tokenizer.pad_id),
    ]
    return hashlib.sha256(json.dumps(description).encode()).hexdigest()[:16]


def check_same(what: str, saved: object, now: object, source: str, hint: str = "") -> None:
    """`ProvenanceError` unless `saved == now` (a missing `saved` is an old file: accepted)."""
    if saved is not None and saved != now:
        raise ProvenanceError(
            f"{source} was made with {what} {saved}, but is being used with {what} {now}"
            + (f"; {hint}" if hint else "")
        )

"""Saving any tokenizer beside its model, and loading it back: a JSON file holding the
tokenizer class's import path and its `to_config()`."""

from __future__ import annotations

import importlib
import json
import os
import pathlib
from typing import Any

from ._protocol import Tokenizer

TOKENIZER_FILE = "codonnt_tokenizer.json"
_FORMAT = 1


def tokenizer_record(tokenizer: Tokenizer) -> dict[str, Any]:
    """The JSON-serialisable description `load_tokenizer` rebuilds `tokenizer` from."""
    cls = type(tokenizer)
    if "<locals>" in cls.__qualname__:
        raise TypeError(
            f"{cls.__qualname__} is defined inside a function; a saved tokenizer names its "
            "class by import path, so define the class at module level"
        )
    config = tokenizer.to_config()
    json.dumps(config)  # fail here, not halfway through writing a checkpoint
    return {
        "format": _FORMAT,
        "class": f"{cls.__module__}:{cls.__qualname__}",
        "config": config,
        "vocab_size": tokenizer.vocab_size,
    }


def save_tokenizer(tokenizer: Tokenizer, path: str | os.PathLike) -> None:
    """Write `tokenizer` to the JSON file `path` (`codonnt_tokenizer.json` in a model folder)."""
    record = tokenizer_record(tokenizer)
    pathlib.Path(path).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def tokenizer_from_record(record: Any, source: str = "tokenizer record") -> Tokenizer:
    """Rebuild a tokenizer from `tokenizer_record`'s output; `ValueError` naming `source` for a
    record that is malformed, names a class that is not importable or not a `Tokenizer`, or
    rebuilds a tokenizer of another vocabulary size."""
    if not isinstance(record, dict) or record.get("format") != _FORMAT:
        raise ValueError(f"{source}: not a codonnt-eqx tokenizer record (format {_FORMAT})")
    path, config = record.get("class"), record.get("config")
    if not isinstance(path, str) or path.count(":") != 1 or not isinstance(config, dict):
        raise ValueError(f"{source}: needs 'class' ('module:Class') and a 'config' object")
    module_name, _, qualname = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"{source}: tokenizer class {path} is not importable ({e})") from None
    if not isinstance(obj, type) or not hasattr(obj, "from_config"):
        raise ValueError(f"{source}: {path} is not a tokenizer class")
    try:
        tokenizer = obj.from_config(config)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{source}: {path} rejects its config ({e})") from None
    if not isinstance(tokenizer, Tokenizer):
        raise ValueError(f"{source}: {path} does not implement the Tokenizer protocol")
    if record.get("vocab_size", tokenizer.vocab_size) != tokenizer.vocab_size:
        raise ValueError(
            f"{source}: rebuilt a vocabulary of {tokenizer.vocab_size} tokens, the record says "
            f"{record['vocab_size']}"
        )
    return tokenizer


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """The tokenizer `save_tokenizer` wrote to `path` (a JSON file or a model folder holding
    `codonnt_tokenizer.json`)."""
    path = pathlib.Path(path)
    if path.is_dir():
        path = path / TOKENIZER_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: unreadable tokenizer file ({e})") from None
    return tokenizer_from_record(record, str(path))

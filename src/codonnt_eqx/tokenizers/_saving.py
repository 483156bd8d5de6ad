"""Saving any tokenizer beside its model, and loading it back: a JSON file holding the
tokenizer class's registered name and its `to_config()`."""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import InputError
from ._protocol import Tokenizer
from ._registry import known_classes, record_name

TOKENIZER_FILE = "codonnt_tokenizer.json"
_FORMAT = 1


def tokenizer_record(tokenizer: Tokenizer) -> dict[str, Any]:
    """The JSON-serialisable description `load_tokenizer` rebuilds `tokenizer` from."""
    cls = type(tokenizer)
    if "<locals>" in cls.__qualname__:
        raise TypeError(
            f"{cls.__qualname__} is defined inside a function; a saved tokenizer names its "
            "class, so define the class at module level"
        )
    config = tokenizer.to_config()
    json.dumps(config)  # fail here, not halfway through writing a checkpoint
    return {
        "format": _FORMAT,
        "class": record_name(cls),
        "config": config,
        "vocab_size": tokenizer.vocab_size,
    }


def save_tokenizer(tokenizer: Tokenizer, path: str | os.PathLike) -> None:
    """Write `tokenizer` to the JSON file `path` (`codonnt_tokenizer.json` in a model folder)."""
    record = tokenizer_record(tokenizer)
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:  # whole or not at all: a reader never sees half a record
        tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class TokenizerRecordError(InputError):
    """A tokenizer record (`codonnt_tokenizer.json`) that cannot be used: malformed, naming a
    class that is not allowed, or with options its class rejects."""


def tokenizer_from_record(
    record: Any,
    source: str = "tokenizer record",
    *,
    classes: Iterable[type] | Mapping[str, type] = (),
) -> Tokenizer:
    """Rebuild a tokenizer from `tokenizer_record`'s output.

    The record's class name is looked up among this package's tokenizers, the classes given to
    `register_tokenizer`, and `classes` (your own, or a name -> class mapping); nothing is ever
    imported, so a record cannot run code. Raises `TokenizerRecordError` naming `source` for a
    record that is malformed, names any other class, has options of the wrong type or range,
    or rebuilds a tokenizer of another vocabulary size.
    """
    if not isinstance(record, dict) or record.get("format") != _FORMAT:
        raise TokenizerRecordError(
            f"{source}: not a codonnt-eqx tokenizer record (format {_FORMAT})"
        )
    name, config = record.get("class"), record.get("config")
    if not isinstance(name, str) or not isinstance(config, dict):
        raise TokenizerRecordError(f"{source}: needs a 'class' name and a 'config' object")
    known = known_classes(classes)
    cls = known.get(name)
    if cls is None:
        shown = name if len(name) <= 80 else name[:77] + "..."
        raise TokenizerRecordError(
            f"{source}: tokenizer class {shown!r} is not one this program knows (built in: "
            f"{', '.join(sorted(n for n in known if ':' not in n))}); a record never imports "
            "code, so register your class with codonnt_eqx.tokenizers.register_tokenizer or "
            "pass it as tokenizer_classes"
        )
    vocab_size = record.get("vocab_size")
    if vocab_size is not None and (
        isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 1
    ):
        raise TokenizerRecordError(f"{source}: vocab_size must be a positive integer")
    if any(not isinstance(key, str) for key in config):
        raise TokenizerRecordError(f"{source}: config keys must be strings")
    try:
        tokenizer = cls.from_config(config)
    except Exception as e:  # any rejection by the class's own checks, typed or not
        raise TokenizerRecordError(f"{source}: {name} rejects its config ({e})") from None
    if not isinstance(tokenizer, Tokenizer):
        raise TokenizerRecordError(f"{source}: {name} does not implement the Tokenizer protocol")
    if vocab_size is not None and vocab_size != tokenizer.vocab_size:
        raise TokenizerRecordError(
            f"{source}: rebuilt a vocabulary of {tokenizer.vocab_size} tokens, the record says "
            f"{vocab_size}"
        )
    return tokenizer


def load_tokenizer(
    path: str | os.PathLike, *, classes: Iterable[type] | Mapping[str, type] = ()
) -> Tokenizer:
    """The tokenizer `save_tokenizer` wrote to `path` (a JSON file or a model folder holding
    `codonnt_tokenizer.json`); `classes` as in `tokenizer_from_record`."""
    path = pathlib.Path(path)
    if path.is_dir():
        path = path / TOKENIZER_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TokenizerRecordError(f"{path}: unreadable tokenizer file ({e})") from None
    return tokenizer_from_record(record, str(path), classes=classes)

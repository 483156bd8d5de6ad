"""Checkpoint metadata (config.json, hyperparams.json, index files): read with limits, every
value type-checked before use, and turned into a `ModelConfig` whose errors name the file."""

from __future__ import annotations

import json
import math
import os
import pathlib
import re
import stat
from typing import Any

from ..model import ModelConfig
from ._errors import CheckpointError

# Metadata files are kilobytes; a bigger one is not metadata, and is not read into memory.
MAX_JSON_BYTES = 64 * 2**20

# Vocabulary layout -> embedding rows beyond the 4^k k-mers. A v2 vocabulary has 4^k + 11
# tokens and as many rows; a v1 vocabulary also has 4^k + 11 tokens, but its models have no
# rows for the trailing <eos> <bos>.
EXTRA_ROWS = {"v2": 11, "v1": 9}

_REQUIRED = object()


def embedding_rows(k: int, layout: str) -> int:
    return 4**k + EXTRA_ROWS[layout]


def regular_file(file: pathlib.Path) -> pathlib.Path:
    """`file`, if it is a regular file (symlinks followed); a FIFO or device would hang or
    never end, a folder would fail later with a less clear error."""
    try:
        mode = os.stat(file).st_mode
    except FileNotFoundError:
        raise CheckpointError(f"{file}: missing") from None
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{file}: unreadable ({e})") from None
    if not stat.S_ISREG(mode):
        raise CheckpointError(f"{file}: not a regular file")
    return file


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads keeps the last of repeated keys; two values for one setting is ambiguous.
    out = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {key!r} appears twice")
        out[key] = value
    return out


def read_json(file: pathlib.Path) -> Any:
    regular_file(file)
    try:
        with open(file, "rb") as f:
            data = f.read(MAX_JSON_BYTES + 1)
    except OSError as e:
        raise CheckpointError(f"{file}: unreadable ({e})") from None
    if len(data) > MAX_JSON_BYTES:
        raise CheckpointError(f"{file}: larger than {MAX_JSON_BYTES} bytes; not metadata")
    try:
        return json.loads(data, object_pairs_hook=unique_keys)
    # ValueError covers bad JSON, bad UTF-8 and over-long integers; deep nesting recurses.
    except (ValueError, RecursionError) as e:
        raise CheckpointError(f"{file}: not valid JSON ({e})") from None


def _kind(value) -> str:
    if value is None:
        return "null"
    return {bool: "a bool", int: "an integer", float: "a number", str: "a string"}.get(
        type(value), f"a JSON {'array' if isinstance(value, list) else 'object'}"
    )


class JsonObject:
    """A JSON object from `file` whose values are taken with their types checked; a missing
    or mistyped key is a `CheckpointError` naming the file and the key. Absent optional keys
    give their default; `nullable` keys may also be null (given as None)."""

    def __init__(self, data, file: pathlib.Path):
        if not isinstance(data, dict):
            raise CheckpointError(f"{file}: expected a JSON object, got {_kind(data)}")
        self.data, self.file = data, file

    def _value(self, key: str, default, nullable: bool) -> tuple[Any, bool]:
        """The value and whether it still needs checking."""
        if key not in self.data:
            if default is _REQUIRED:
                raise CheckpointError(f"{self.file}: lacks {key!r}")
            return default, False
        value = self.data[key]
        return value, not (nullable and value is None)

    def _wrong(self, key: str, value, expected: str, nullable: bool) -> CheckpointError:
        expected += " or null" if nullable else ""
        return CheckpointError(
            f"{self.file}: {key} is {value!r} ({_kind(value)}), expected {expected}"
        )

    def int(self, key: str, default=_REQUIRED, *, nullable: bool = False, minimum=None):
        value, check = self._value(key, default, nullable)
        if check and type(value) is not int:  # bool is an int to Python, never to a config
            raise self._wrong(key, value, "an integer", nullable)
        if check and minimum is not None and value < minimum:
            raise CheckpointError(f"{self.file}: {key} is {value}, expected >= {minimum}")
        return value

    def number(self, key: str, default=_REQUIRED, *, nullable: bool = False):
        value, check = self._value(key, default, nullable)
        if check and (type(value) not in (int, float) or not math.isfinite(value)):
            raise self._wrong(key, value, "a finite number", nullable)
        return float(value) if check else value

    def bool(self, key: str, default=_REQUIRED, *, nullable: bool = False):
        value, check = self._value(key, default, nullable)
        if check and type(value) is not bool:
            raise self._wrong(key, value, "true or false", nullable)
        return value

    def str(self, key: str, default=_REQUIRED, *, choices: tuple[str, ...] | None = None):
        value, check = self._value(key, default, False)
        if check and (type(value) is not str or (choices and value not in choices)):
            raise self._wrong(key, value, f"one of {choices}" if choices else "a string", False)
        return value


def make_config(file: pathlib.Path, keys: dict[str, str], **fields) -> ModelConfig:
    """`ModelConfig(**fields)`, its errors (a value the checks above let through, such as a
    zero size) told as the checkpoint's own: `keys` maps a field to the key it came from."""
    try:
        return ModelConfig(**fields)
    except (ValueError, TypeError) as e:
        named = [key for field, key in keys.items() if re.search(rf"\b{field}\b", str(e))]
        where = f" ({', '.join(dict.fromkeys(named))})" if named else ""
        raise CheckpointError(f"{file}{where}: {e}") from None

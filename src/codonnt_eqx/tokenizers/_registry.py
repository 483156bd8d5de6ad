"""Which classes a saved tokenizer record may name: this package's own, those a program
registers, and those a caller passes. A name read from a file only ever looks a class up
here; it never imports a module, so a model folder cannot make Python run code."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import cast

from ._bpe import BPETokenizer
from ._codon import CodonTokenizer
from ._kmer import KmerTokenizer
from ._nucleotide import NucleotideTokenizer
from ._overlapping import OverlappingKmerTokenizer

_BUILT_IN: tuple[type, ...] = (
    KmerTokenizer,
    NucleotideTokenizer,
    CodonTokenizer,
    OverlappingKmerTokenizer,
    BPETokenizer,
)
# Classes registered by the running program (`register_tokenizer`), by record name. The only
# mutable module state in the package, and it only ever grows by explicit calls.
_REGISTERED: dict[str, type] = {}


def record_name(cls: type) -> str:
    """The name a record stores for `cls`: the bare class name for this package's own
    tokenizers, `module:QualName` for anyone else's."""
    return cls.__name__ if cls in _BUILT_IN else f"{cls.__module__}:{cls.__qualname__}"


def _names(cls: type) -> tuple[str, ...]:
    # Records written before the registry named every class by its import path.
    return (record_name(cls), f"{cls.__module__}:{cls.__qualname__}")


def register_tokenizer(cls: type) -> type:
    """Allow saved records to name `cls` (a class with `to_config` / `from_config` that
    implements the `Tokenizer` protocol). Usable as a class decorator; returns `cls`.

    Only needed to load your own tokenizer class from a model folder in another program:
    records never import anything, so an unregistered class is an error, not an import.
    """
    if not isinstance(cls, type) or not callable(getattr(cls, "from_config", None)):
        raise TypeError(f"{cls!r} is not a tokenizer class (a class with from_config)")
    for name in _names(cls):
        _REGISTERED[name] = cls
    return cls


def known_classes(extra: Iterable[type] | Mapping[str, type] = ()) -> dict[str, type]:
    """Record name -> class: the built-in tokenizers, the registered ones, then `extra`
    (classes, or a mapping from record name to class)."""
    known = {name: cls for cls in _BUILT_IN for name in _names(cls)}
    known.update(_REGISTERED)
    items: list[tuple[str, type]]
    if isinstance(extra, Mapping):
        items = list(cast(Mapping[str, type], extra).items())
    else:
        items = [(name, cls) for cls in cast(Iterable[type], extra) for name in _names(cls)]
    for name, cls in items:
        if not isinstance(cls, type) or not callable(getattr(cls, "from_config", None)):
            raise TypeError(f"{cls!r} is not a tokenizer class (a class with from_config)")
        known[name] = cls
    return known

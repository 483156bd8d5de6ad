"""The `Tokenizer` protocol: what the model, pretraining, fine-tuning and the tokenization
experiment need from a tokenizer, and the errors every tokenizer raises."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
from jaxtyping import Int


class SequenceError(ValueError):
    """A sequence the tokenizer cannot encode.

    Attributes `index` (which sequence of the batch), `position` (0-based, or None) and
    `char` (the offending character, or None) say exactly where.
    """

    def __init__(self, message: str, *, index: int, position: int | None, char: str | None):
        super().__init__(message)
        self.index = index
        self.position = position
        self.char = char


class SequenceTooLongError(ValueError):
    """A sequence whose tokens do not fit the requested padded length."""

    def __init__(self, message: str, *, index: int, num_tokens: int, length: int):
        super().__init__(message)
        self.index = index
        self.num_tokens = num_tokens
        self.length = length


@runtime_checkable
class Tokenizer(Protocol):
    """What the model, training and evaluation code need from a tokenizer.

    Implement this in one file to plug a new tokenization in: nothing in the model, the
    pretraining loop, fine-tuning or `codonnt-eqx experiment tokenizations` refers to k-mers.
    Spans are `(start, end)` nucleotide offsets into the input; special and pad tokens get
    `(0, 0)`. Batch methods return int32 arrays right-padded with `pad_id`.

    What pretraining and evaluation read besides the vocabulary:

    - `mask_span`: how many consecutive tokens masking hides together. 1 for tokens that
      do not overlap; k for overlapping k-mers, whose bases a model could otherwise read off
      the unmasked neighbours.
    - `token_nucleotides`: int [vocab], the nucleotides each token adds to the sequence (0 for
      special tokens; a token's length when tokens tile the sequence; 1 for an overlapping
      k-mer). The denominator of bits per nucleotide.
    - `nucleotides_for_tokens(n)`: how many bases make at most about `n` tokens (specials
      included), to cut training windows. Exact for fixed-width tokenizers on sequences
      without N; an estimate for variable-length tokens (longer windows are cut at `n`).
    - `to_config()` / `from_config(config)`: a JSON-serialisable dict that rebuilds the
      tokenizer; `save_tokenizer` stores it with the class's import path.
    """

    @property
    def vocabulary(self) -> tuple[str, ...]: ...
    @property
    def vocab_size(self) -> int: ...
    @property
    def pad_id(self) -> int: ...
    @property
    def mask_id(self) -> int: ...
    @property
    def cls_id(self) -> int: ...
    @property
    def unk_id(self) -> int: ...
    @property
    def special_ids(self) -> frozenset[int]: ...
    @property
    def mask_span(self) -> int: ...
    @property
    def token_nucleotides(self) -> Int[np.ndarray, " vocab"]: ...
    def nucleotides_for_tokens(self, tokens: int) -> int: ...
    def encode(self, sequence: str) -> list[int]: ...
    def decode(self, ids: Sequence[int] | np.ndarray) -> str: ...
    def batch_encode(
        self, sequences: Sequence[str], length: int | None = None
    ) -> Int[np.ndarray, "batch length"]: ...
    def batch_encode_with_spans(
        self, sequences: Sequence[str], length: int | None = None
    ) -> tuple[Int[np.ndarray, "batch length"], Int[np.ndarray, "batch length 2"]]: ...
    def to_config(self) -> dict[str, Any]: ...
    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Tokenizer: ...


def prepends_cls(tokenizer: Tokenizer) -> bool:
    """Whether `tokenizer` puts `<cls>` before every sequence: its declared `prepend_cls`
    where it has one (every tokenizer here does), else what it does with a short in-frame
    sequence. A probe must not be one a tokenizer may rightly refuse: `"A"` is a partial codon
    to `CodonTokenizer(partial="error")`, and some refuse empty sequences."""
    declared = getattr(tokenizer, "prepend_cls", None)
    if isinstance(declared, bool):
        return declared
    for probe in ("ACGTAC", "ACG", "A"):
        try:
            ids = tokenizer.encode(probe)
        except SequenceError:
            continue
        return bool(ids) and ids[0] == tokenizer.cls_id
    raise ValueError(
        f"{type(tokenizer).__name__} declares no prepend_cls and encodes none of the probe "
        "sequences: cannot tell whether it prepends <cls>"
    )

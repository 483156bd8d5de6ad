"""What the tokenizers here share besides validation: their options, the vocabulary and its
special ids, and the single-sequence forms of the batch methods."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from jaxtyping import Int


def check_flags(**flags) -> None:
    """`TypeError` unless every flag (`prepend_cls`, `uppercase`, ...) is a real bool: a
    config read from a file may hold `"false"`, which is truthy."""
    for name, value in flags.items():
        if not isinstance(value, bool | np.bool_):
            raise TypeError(f"{name} must be True or False, got {value!r}")


class TokenizerBase:
    """A base for tokenizers whose vocabulary holds the six specials by name.

    A subclass sets the attributes below in its `__init__` and implements
    `batch_encode_with_spans`, `decode`, `mask_span`, `nucleotides_for_tokens` and
    `to_config`/`from_config`. Not required by the `Tokenizer` protocol: a tokenizer of
    your own needs none of it.
    """

    _vocabulary: tuple[str, ...]
    _ids: dict[str, int]
    _special_ids: frozenset[int]
    _token_bases: np.ndarray
    _normalise: bytes
    _prepend_cls: bool
    _uppercase: bool
    _iupac_to_n: bool

    @property
    def prepend_cls(self) -> bool:
        return self._prepend_cls

    @property
    def uppercase(self) -> bool:
        return self._uppercase

    @property
    def iupac_to_n(self) -> bool:
        return self._iupac_to_n

    # -- vocabulary -------------------------------------------------------------------------

    @property
    def vocabulary(self) -> tuple[str, ...]:
        """All tokens; a token's id is its index."""
        return self._vocabulary

    @property
    def vocab_size(self) -> int:
        return len(self._vocabulary)

    @property
    def unk_id(self) -> int:
        return self._ids["<unk>"]

    @property
    def pad_id(self) -> int:
        return self._ids["<pad>"]

    @property
    def mask_id(self) -> int:
        return self._ids["<mask>"]

    @property
    def cls_id(self) -> int:
        return self._ids["<cls>"]

    @property
    def eos_id(self) -> int:
        return self._ids["<eos>"]

    @property
    def bos_id(self) -> int:
        return self._ids["<bos>"]

    @property
    def special_ids(self) -> frozenset[int]:
        return self._special_ids

    @property
    def token_nucleotides(self) -> Int[np.ndarray, " vocab"]:
        """Nucleotides each token adds to the sequence; 0 for specials."""
        return self._token_bases.copy()

    def token_to_id(self, token: str) -> int:
        try:
            return self._ids[token]
        except KeyError:
            raise ValueError(f"{token!r} is not in the vocabulary of {self!r}") from None

    # -- single sequences -------------------------------------------------------------------

    def batch_encode_with_spans(
        self, sequences: Sequence[str], length: int | None = None
    ) -> tuple[Int[np.ndarray, "batch length"], Int[np.ndarray, "batch length 2"]]:
        raise NotImplementedError

    def batch_encode(
        self, sequences: Sequence[str], length: int | None = None
    ) -> Int[np.ndarray, "batch length"]:
        """Encode a batch into int32 [B, L], right-padded with `<pad>` to `length` (`None`:
        the longest). `SequenceError` / `SequenceTooLongError` name the sequence at fault."""
        return self.batch_encode_with_spans(sequences, length)[0]

    def encode(self, sequence: str) -> list[int]:
        """Token ids of one sequence (with `<cls>` first unless `prepend_cls=False`)."""
        return self.batch_encode([sequence])[0].tolist()

    def encode_with_spans(self, sequence: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Token ids of one sequence and each token's `(start, end)` span in it."""
        ids, spans = self.batch_encode_with_spans([sequence])
        return ids[0].tolist(), [tuple(s) for s in spans[0].tolist()]

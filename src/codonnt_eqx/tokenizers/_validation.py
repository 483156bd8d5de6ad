"""What every tokenizer shares: reading sequences into validated base codes, the errors that
say where a sequence is wrong, padding rows to a common length, spans and decoding."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn

import numpy as np
from jaxtyping import Int

from ._protocol import SequenceError, SequenceTooLongError

NUCLEOTIDES = "ATCG"  # NT's k-mer order: itertools.product over this alphabet
IUPAC_AMBIGUITY = "RYSWKMBDHV"
# The first six tokens of every tokenizer here (NT v2 layout): ids 0..5.
SPECIALS = ("<unk>", "<pad>", "<mask>", "<cls>", "<eos>", "<bos>")

# Base codes: A T C G in k-mer order, N, then the mark of an invalid character.
N_CODE, BAD_CODE = 4, 255


def normalising_table(*, uppercase: bool, iupac_to_n: bool) -> bytes:
    """bytes.translate table: a valid character -> its base code (A T C G N -> 0..4), anything
    else -> `BAD_CODE`."""
    table = bytearray([BAD_CODE]) * 256
    codes = {b: i for i, b in enumerate(NUCLEOTIDES + "N")}
    codes |= dict.fromkeys(IUPAC_AMBIGUITY * iupac_to_n, N_CODE)
    for char, code in codes.items():
        table[ord(char)] = code
        if uppercase:
            table[ord(char.lower())] = code
    return bytes(table)


def describe(char: str, position: int) -> str:
    """Why `char` is not a base, and what to do about it."""
    if char == ">" and position == 0:
        return "this looks like a FASTA header; read files with codonnt_eqx.read_fasta"
    if char.isspace():
        return "whitespace is not a base; strip the sequence (newlines inside FASTA records?)"
    if char in "acgtn":
        return "lowercase base; pass uppercase=True to accept soft-masked input"
    if char.upper() in IUPAC_AMBIGUITY:
        return "IUPAC ambiguity code; pass iupac_to_n=True to map it to N"
    return "only A, C, G, T and N are valid"


def raise_invalid(seq: str, index: int, position: int) -> NoReturn:
    char = seq[position]
    raise SequenceError(
        f"sequence {index}, position {position}: invalid character {char!r} "
        f"({describe(char, position)})",
        index=index,
        position=position,
        char=char,
    )


def sequence_codes(sequences: Sequence[str], table: bytes) -> list[bytes]:
    """Each sequence as base codes (one byte per base); `SequenceError` names the first
    sequence that is not a non-empty string of valid characters, and where."""
    if isinstance(sequences, str):
        raise TypeError("expected a list of sequences, got one string; use encode()")
    out = []
    for index, seq in enumerate(sequences):
        if not isinstance(seq, str):
            raise SequenceError(
                f"sequence {index}: expected str, got {type(seq).__name__}",
                index=index,
                position=None,
                char=None,
            )
        if not seq:
            raise SequenceError(f"sequence {index} is empty", index=index, position=None, char=None)
        try:
            raw = seq.encode("ascii")
        except UnicodeEncodeError as e:
            raise_invalid(seq, index, e.start)
        norm = raw.translate(table)
        bad = norm.find(BAD_CODE)
        if bad >= 0:
            raise_invalid(seq, index, bad)
        out.append(norm)
    return out


def padded_length(sizes: Sequence[int], length: int | None, *, cls: bool) -> int:
    """The row length of a batch whose rows hold `sizes` tokens (specials included):
    `length`, checked, or the longest row. `SequenceTooLongError` names a row that does not
    fit."""
    if length is None:
        return max(sizes, default=int(cls))
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)):
        raise TypeError(f"length must be an int or None, got {length!r}")
    if length < 1:
        raise ValueError(f"length must be positive, got {length}")
    for i, size in enumerate(sizes):
        if size > length:
            raise SequenceTooLongError(
                f"sequence {i} has {size} tokens, which does not fit length {length}"
                + (" (including <cls>)" if cls else ""),
                index=i,
                num_tokens=int(size),
                length=int(length),
            )
    return int(length)


def pad_rows(
    rows: Sequence[np.ndarray], length: int, pad_id: int
) -> Int[np.ndarray, "batch length"]:
    """Rows of token ids as one int32 array, right-padded with `pad_id`."""
    out = np.full((len(rows), length), pad_id, dtype=np.int32)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def tiling_spans(
    ids: Int[np.ndarray, "batch length"], token_nucleotides: Int[np.ndarray, " vocab"]
) -> Int[np.ndarray, "batch length 2"]:
    """Spans of tokens that tile their sequence left to right (each starts where the previous
    ended); tokens covering no nucleotide get `(0, 0)`."""
    sizes = token_nucleotides[ids]
    end = np.cumsum(sizes, axis=1, dtype=np.int32)
    spans = np.stack([end - sizes, end], axis=-1)
    spans[sizes == 0] = 0
    return spans


def check_ids(ids: Sequence[int] | np.ndarray, vocab_size: int) -> Int[np.ndarray, " length"]:
    """`ids` as a 1-D int64 array, every id inside the vocabulary (else `ValueError`)."""
    arr = np.asarray(ids)
    if arr.size == 0:
        return np.zeros(0, np.int64)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"decode expects a 1-D sequence of integer ids, got shape {arr.shape}")
    arr = arr.astype(np.int64)
    bad = np.flatnonzero((arr < 0) | (arr >= vocab_size))
    if bad.size:
        raise ValueError(
            f"id {int(arr[bad[0]])} at position {int(bad[0])} is outside the vocabulary "
            f"(size {vocab_size})"
        )
    return arr

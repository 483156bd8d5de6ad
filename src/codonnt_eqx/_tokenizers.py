"""Tokenizers: the `Tokenizer` protocol and the Nucleotide Transformer k-mer tokenizer."""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from typing import Literal, Protocol, runtime_checkable

import numpy as np
from jaxtyping import Int

NUCLEOTIDES = "ATCG"  # NT's k-mer order: itertools.product over this alphabet
IUPAC_AMBIGUITY = "RYSWKMBDHV"
SPECIALS_V2 = ("<unk>", "<pad>", "<mask>", "<cls>", "<eos>", "<bos>")
SPECIALS_V1_HEAD = ("<unk>", "<pad>", "<mask>", "<cls>")
SPECIALS_V1_TAIL = ("<eos>", "<bos>")
MAX_K = 12  # 4^12 = 16.7M tokens already; beyond that the vocabulary does not fit a model

# Byte codes of the cell arrays: A T C G in k-mer order, then N, the filler that completes
# single-base cells and pads rows, and the mark of an invalid character.
_N, _FILL, _BAD = 4, 5, 255
_N_BYTE = bytes([_N])


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
    """What the model and training code need from a tokenizer.

    Implement this to plug a new tokenization in; nothing in the model refers to k-mers.
    Spans are `(start, end)` nucleotide offsets into the input; special and pad tokens get
    `(0, 0)`.
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
    def encode(self, sequence: str) -> list[int]: ...
    def decode(self, ids: Sequence[int] | np.ndarray) -> str: ...
    def batch_encode(
        self, sequences: Sequence[str], length: int | None = None
    ) -> Int[np.ndarray, "batch length"]: ...
    def batch_encode_with_spans(
        self, sequences: Sequence[str], length: int | None = None
    ) -> tuple[Int[np.ndarray, "batch length"], Int[np.ndarray, "batch length 2"]]: ...


def _kmer_vocabulary(k: int, layout: Literal["v1", "v2"]) -> tuple[str, ...]:
    kmers = ["".join(p) for p in itertools.product(NUCLEOTIDES, repeat=k)]
    singles = [*NUCLEOTIDES, "N"]
    if layout == "v2":
        return (*SPECIALS_V2, *kmers, *singles)
    return (*SPECIALS_V1_HEAD, *kmers, *singles, *SPECIALS_V1_TAIL)


def _describe(char: str, position: int) -> str:
    if char == ">" and position == 0:
        return "this looks like a FASTA header; read files with codonnt_eqx.read_fasta"
    if char.isspace():
        return "whitespace is not a base; strip the sequence (newlines inside FASTA records?)"
    if char in "acgtn":
        return "lowercase base; pass uppercase=True to accept soft-masked input"
    if char.upper() in IUPAC_AMBIGUITY:
        return "IUPAC ambiguity code; pass iupac_to_n=True to map it to N"
    return "only A, C, G, T and N are valid"


class KmerTokenizer:
    """Nucleotide Transformer k-mer tokenizer (Codon-NT is `KmerTokenizer(3)`).

    Rules, identical to the original: the sequence is split on `N`; each piece is cut into
    consecutive k-mers from its start; a remainder shorter than k becomes single-nucleotide
    tokens; every `N` is its own token; `<cls>` is prepended.

    **Arguments:**

    - `k`: k-mer size, 1 to 12 (Codon-NT: 3; NT v1/v2 6-mer models: 6).
    - `layout`: `"v2"` (Codon-NT and all v2 models: specials first, then k-mers, then
      `A T C G N`) or `"v1"` (`<unk> <pad> <mask> <cls>`, k-mers, `A T C G N`, `<eos> <bos>`).
    - `prepend_cls`: prepend `<cls>` to every sequence.
    - `uppercase`: accept lowercase bases (off: they raise `SequenceError`).
    - `iupac_to_n`: map IUPAC ambiguity codes `RYSWKMBDHV` to `N` (off: they raise).

    ```python
    tok = KmerTokenizer(3)
    ids = tok.batch_encode(["ATGGCCNTAA", "ATG"])  # int32 [2, 5], padded with tok.pad_id
    assert tok.decode(ids[0]) == "ATGGCCNTAA"
    ```
    """

    def __init__(
        self,
        k: int,
        *,
        layout: Literal["v1", "v2"] = "v2",
        prepend_cls: bool = True,
        uppercase: bool = False,
        iupac_to_n: bool = False,
    ):
        if not isinstance(k, int) or isinstance(k, bool):
            raise TypeError(f"k must be an int, got {k!r}")
        if not 1 <= k <= MAX_K:
            raise ValueError(f"k must be an integer in 1..{MAX_K} (vocabulary 4^k), got {k!r}")
        if layout not in ("v1", "v2"):
            raise ValueError(f"layout must be 'v1' or 'v2', got {layout!r}")
        # Read-only (properties below): the lookup tables are built from them once.
        self._k, self._layout, self._prepend_cls = k, layout, prepend_cls
        self._uppercase, self._iupac_to_n = uppercase, iupac_to_n
        self._vocabulary = _kmer_vocabulary(k, layout)
        self._ids = {token: i for i, token in enumerate(self._vocabulary)}
        self._kmer_offset = len(SPECIALS_V2 if layout == "v2" else SPECIALS_V1_HEAD)
        self._single_offset = self._kmer_offset + 4**k
        self._special_ids = frozenset(self._ids[t] for t in SPECIALS_V2)
        self._normalise = self._normalising_table()
        self._single_cells = [bytes([code]) + bytes([_FILL]) * (k - 1) for code in range(_FILL + 1)]
        # Cell code (A T C G N filler) of a single-base cell -> token id.
        self._single_ids = np.array(
            [self._single_offset + c for c in range(5)] + [self.pad_id], dtype=np.int32
        )
        self._token_bases = np.array(
            [0 if i in self._special_ids else len(t) for i, t in enumerate(self._vocabulary)],
            dtype=np.int32,
        )
        self._id_to_text = np.array(
            ["" if i in self._special_ids else t for i, t in enumerate(self._vocabulary)],
            dtype=object,
        )

    def _normalising_table(self) -> bytes:
        """bytes.translate table: valid input -> its cell code, anything else -> `_BAD`."""
        table = bytearray([_BAD]) * 256
        codes = {b: i for i, b in enumerate(NUCLEOTIDES + "N")}
        codes |= dict.fromkeys(IUPAC_AMBIGUITY * self.iupac_to_n, _N)
        for char, code in codes.items():
            table[ord(char)] = code
            if self.uppercase:
                table[ord(char.lower())] = code
        return bytes(table)

    def __repr__(self) -> str:
        return (
            f"KmerTokenizer(k={self.k}, layout={self.layout!r}, prepend_cls={self.prepend_cls}, "
            f"uppercase={self.uppercase}, iupac_to_n={self.iupac_to_n})"
        )

    @property
    def k(self) -> int:
        return self._k

    @property
    def layout(self) -> Literal["v1", "v2"]:
        return self._layout

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

    def token_to_id(self, token: str) -> int:
        try:
            return self._ids[token]
        except KeyError:
            raise ValueError(f"{token!r} is not in the vocabulary of {self!r}") from None

    def save_vocab(self, path: str | os.PathLike) -> None:
        """Write the Hugging Face `vocab.txt`: one token per line, id = line number."""
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(self._vocabulary) + "\n")

    @classmethod
    def from_vocab_file(cls, path: str | os.PathLike, **options) -> KmerTokenizer:
        """Build the tokenizer a published `vocab.txt` describes (k and layout inferred).

        Raises `ValueError` naming the file and the first differing line when the file is not
        an NT k-mer vocabulary.
        """
        with open(path, encoding="utf-8") as f:
            tokens = [line.rstrip("\r\n") for line in f]
        while tokens and tokens[-1] == "":
            tokens.pop()
        kmers = [t for t in tokens if not t.startswith("<")]
        lengths = {len(t) for t in kmers} - {1}
        k = lengths.pop() if len(lengths) == 1 else 1 if not lengths else None
        if k is None or k > MAX_K:
            raise ValueError(f"{path}: not a k-mer vocabulary (token lengths {sorted(lengths)})")
        layout = "v2" if tokens[4:6] == ["<eos>", "<bos>"] else "v1"
        tokenizer = cls(k, layout=layout, **options)
        expected = tokenizer.vocabulary
        for line, (got, want) in enumerate(zip(tokens, expected, strict=False), start=1):
            if got != want:
                raise ValueError(
                    f"{path}: line {line} is {got!r}, expected {want!r} for the {layout} "
                    f"layout with k={k}"
                )
        if len(tokens) != len(expected):
            raise ValueError(
                f"{path}: {len(tokens)} tokens, expected {len(expected)} for the {layout} "
                f"layout with k={k}"
            )
        return tokenizer

    # -- encoding ---------------------------------------------------------------------------
    #
    # Batch encoding never loops over characters or tokens in Python. Each sequence is
    # translated to byte codes and validated with bytes.translate/find, then rewritten as
    # fixed-width *cells*, one per token: a k-mer is its k bases, a single base or an N is
    # that code followed by k-1 filler codes, and rows are filled with filler cells to a
    # common length. NumPy then reads the [batch, length, k] cell array in a few passes.

    def _codes(self, sequences: Sequence[str]) -> list[bytes]:
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
                raise SequenceError(
                    f"sequence {index} is empty", index=index, position=None, char=None
                )
            try:
                raw = seq.encode("ascii")
            except UnicodeEncodeError as e:
                self._raise_invalid(seq, index, e.start)
            norm = raw.translate(self._normalise)
            bad = norm.find(_BAD)
            if bad >= 0:
                self._raise_invalid(seq, index, bad)
            out.append(norm)
        return out

    @staticmethod
    def _raise_invalid(seq: str, index: int, position: int):
        char = seq[position]
        raise SequenceError(
            f"sequence {index}, position {position}: invalid character {char!r} "
            f"({_describe(char, position)})",
            index=index,
            position=position,
            char=char,
        )

    def _cells(self, seq: bytes) -> bytes:
        """One sequence as token cells of k bytes each."""
        k = self.k
        if len(seq) % k == 0 and _N_BYTE not in seq:
            return seq
        parts = []
        for piece in seq.split(_N_BYTE):
            rest = len(piece) % k
            if rest:
                parts.append(piece[:-rest])
                parts.extend(self._single_cells[base] for base in piece[-rest:])
            else:
                parts.append(piece)
            parts.append(self._single_cells[_N])
        parts.pop()  # split() made one piece more than there are Ns
        return b"".join(parts)

    def batch_encode_with_spans(
        self, sequences: Sequence[str], length: int | None = None
    ) -> tuple[Int[np.ndarray, "batch length"], Int[np.ndarray, "batch length 2"]]:
        """`batch_encode` plus each token's nucleotide span `(start, end)`, int32 [B, L, 2].

        Special and pad tokens get the empty span `(0, 0)`.
        """
        ids = self.batch_encode(sequences, length)
        sizes = self._token_bases[ids]
        end = np.cumsum(sizes, axis=1, dtype=np.int32)
        spans = np.stack([end - sizes, end], axis=-1)
        spans[sizes == 0] = 0
        return ids, spans

    def batch_encode(
        self, sequences: Sequence[str], length: int | None = None
    ) -> Int[np.ndarray, "batch length"]:
        """Encode a batch into int32 [B, L], right-padded with `<pad>` to `length`.

        `length=None` pads to the longest; a sequence that does not fit raises
        `SequenceTooLongError` naming it. Invalid characters raise `SequenceError`.
        """
        k, extra = self.k, int(self.prepend_cls)
        rows = [self._cells(seq) for seq in self._codes(sequences)]
        sizes = np.fromiter((len(r) // k for r in rows), dtype=np.int64, count=len(rows)) + extra
        if length is None:
            length = int(sizes.max()) if rows else extra
        elif length < 1:
            raise ValueError(f"length must be positive, got {length}")
        too_long = np.flatnonzero(sizes > length)
        if too_long.size:
            i = int(too_long[0])
            raise SequenceTooLongError(
                f"sequence {i} has {int(sizes[i])} tokens, which does not fit length {length}"
                + (" (including <cls>)" if extra else ""),
                index=i,
                num_tokens=int(sizes[i]),
                length=length,
            )
        filler = self._single_cells[_FILL]
        padded = []
        for row, size in zip(rows, sizes.tolist(), strict=True):
            padded += (row, filler * (length - size))
        cells = np.frombuffer(b"".join(padded), dtype=np.uint8)
        cells = cells.reshape(len(rows), length - extra, k)

        out = np.empty((len(rows), length), dtype=np.int32)
        if extra:
            out[:, 0] = self.cls_id
        body = out[:, extra:]
        # Horner in the narrowest integer type that holds 4^k; filler cells overflow harmlessly
        # because they are overwritten below.
        value = cells[..., 0].astype(np.uint8 if k <= 4 else np.uint16 if k <= 8 else np.uint32)
        for j in range(1, k):
            value *= 4
            value += cells[..., j]
        np.add(value, self._kmer_offset, out=body, dtype=np.int32)
        # Single-base, N and padding cells: filler in column 1 (k = 1: N or filler in column 0).
        single = cells[..., min(1, k - 1)] >= _N
        body[single] = self._single_ids[cells[..., 0][single]]
        return out

    def encode(self, sequence: str) -> list[int]:
        """Token ids of one sequence (with `<cls>` first unless `prepend_cls=False`)."""
        return self.batch_encode([sequence])[0].tolist()

    def encode_with_spans(self, sequence: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Token ids of one sequence and each token's `(start, end)` span in it."""
        ids, spans = self.batch_encode_with_spans([sequence])
        return ids[0].tolist(), [tuple(s) for s in spans[0].tolist()]

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """The nucleotides of a token sequence; special and pad tokens are dropped."""
        arr = np.asarray(ids)
        if arr.size == 0:
            return ""
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"decode expects a 1-D sequence of integer ids, got shape {arr.shape}")
        arr = arr.astype(np.int64)
        bad = np.flatnonzero((arr < 0) | (arr >= self.vocab_size))
        if bad.size:
            raise ValueError(
                f"id {int(arr[bad[0]])} at position {int(bad[0])} is outside the vocabulary "
                f"(size {self.vocab_size})"
            )
        return "".join(self._id_to_text[arr].tolist())

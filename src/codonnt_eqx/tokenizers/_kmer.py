"""The Nucleotide Transformer k-mer tokenizer (Codon-NT: k = 3) and its single-nucleotide
special case."""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from typing import Any, Literal, cast

import numpy as np
from jaxtyping import Int

from ._base import TokenizerBase, check_flags
from ._validation import (
    N_CODE,
    NUCLEOTIDES,
    SPECIALS,
    check_ids,
    normalising_table,
    padded_length,
    sequence_codes,
    tiling_spans,
)

SPECIALS_V2 = SPECIALS
SPECIALS_V1_HEAD = ("<unk>", "<pad>", "<mask>", "<cls>")
SPECIALS_V1_TAIL = ("<eos>", "<bos>")
MAX_K = 12  # 4^12 = 16.7M tokens already; beyond that the vocabulary does not fit a model

# Cell codes: the base codes A T C G N, then the filler that completes single-base cells and
# pads rows.
_N, _FILL = N_CODE, 5
_N_BYTE = bytes([_N])


def _kmer_vocabulary(k: int, layout: Literal["v1", "v2"]) -> tuple[str, ...]:
    kmers = ["".join(p) for p in itertools.product(NUCLEOTIDES, repeat=k)]
    singles = [*NUCLEOTIDES, "N"]
    if layout == "v2":
        return (*SPECIALS_V2, *kmers, *singles)
    return (*SPECIALS_V1_HEAD, *kmers, *singles, *SPECIALS_V1_TAIL)


class KmerTokenizer(TokenizerBase):
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
        check_flags(prepend_cls=prepend_cls, uppercase=uppercase, iupac_to_n=iupac_to_n)
        self._k, self._layout, self._prepend_cls = k, layout, prepend_cls
        self._uppercase, self._iupac_to_n = uppercase, iupac_to_n
        self._vocabulary = _kmer_vocabulary(k, layout)
        self._ids = {token: i for i, token in enumerate(self._vocabulary)}
        self._kmer_offset = len(SPECIALS_V2 if layout == "v2" else SPECIALS_V1_HEAD)
        self._single_offset = self._kmer_offset + 4**k
        self._special_ids = frozenset(self._ids[t] for t in SPECIALS_V2)
        self._normalise = normalising_table(uppercase=uppercase, iupac_to_n=iupac_to_n)
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
        return cast(Literal["v1", "v2"], self._layout)

    # -- vocabulary -------------------------------------------------------------------------

    @property
    def mask_span(self) -> int:
        """1: k-mers do not overlap, so masking hides tokens one at a time."""
        return 1

    def nucleotides_for_tokens(self, tokens: int) -> int:
        """Bases that make exactly `tokens` tokens (with `<cls>`) from a sequence without N."""
        bases = (tokens - int(self.prepend_cls)) * self.k
        if bases < 1:
            raise ValueError(f"{tokens} tokens leave no room for bases after <cls>")
        return bases

    def to_config(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "layout": self.layout,
            "prepend_cls": self.prepend_cls,
            "uppercase": self.uppercase,
            "iupac_to_n": self.iupac_to_n,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> KmerTokenizer:
        return cls(**config)

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
        return ids, tiling_spans(ids, self._token_bases)

    def batch_encode(
        self, sequences: Sequence[str], length: int | None = None
    ) -> Int[np.ndarray, "batch length"]:
        """Encode a batch into int32 [B, L], right-padded with `<pad>` to `length`.

        `length=None` pads to the longest; a sequence that does not fit raises
        `SequenceTooLongError` naming it. Invalid characters raise `SequenceError`.
        """
        k, extra = self.k, int(self.prepend_cls)
        rows = [self._cells(seq) for seq in sequence_codes(sequences, self._normalise)]
        sizes = np.fromiter((len(r) // k for r in rows), dtype=np.int64, count=len(rows)) + extra
        length = padded_length(sizes.tolist(), length, cls=bool(extra))
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

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """The nucleotides of a token sequence; special and pad tokens are dropped."""
        arr = check_ids(ids, self.vocab_size)
        return "".join(self._id_to_text[arr].tolist())

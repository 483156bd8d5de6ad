"""Overlapping k-mers (stride 1, as DNABERT): one token per base position, each spelling the k
bases that start there."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
from jaxtyping import Int

from ._base import TokenizerBase, check_flags
from ._protocol import SequenceError
from ._validation import (
    N_CODE,
    NUCLEOTIDES,
    SPECIALS,
    check_ids,
    normalising_table,
    padded_length,
    sequence_codes,
)

MAX_K = 8  # 4^8 = 65,536 k-mers; the N-free vocabulary grows 4x per k beyond that
_LETTERS = np.frombuffer((NUCLEOTIDES + "N").encode("ascii"), dtype=np.uint8)


class OverlappingKmerTokenizer(TokenizerBase):
    """Overlapping k-mer tokenizer (stride 1, as DNABERT v1).

    A sequence of `L` bases becomes `L - k + 1` tokens: token `i` is the k-mer of bases
    `i .. i + k - 1` (span `(i, i + k)`), `<cls>` first. The vocabulary is the six specials
    (ids 0..5), the `4^k` k-mers over `A T C G` in `itertools.product("ATCG")` order (the same
    ids as `KmerTokenizer(k)`'s k-mers), then one token `"N" * k` that stands for every k-mer
    containing an `N` (a 5^k vocabulary would be mostly N-mers).

    `decode` reads each base off any token covering it that is not the N-token, so it inverts
    `encode` exactly on `A C G T` sequences. Around an `N` it is lossy: a base every one of
    whose covering k-mers contains an `N` decodes as `N` too (with k = 3, `"ACNGT"` encodes to
    three N-tokens and decodes to `"NNNNN"`).

    **Arguments:**

    - `k`: k-mer size, 1 to 8 (DNABERT: 3 to 6).
    - `prepend_cls`: prepend `<cls>` to every sequence.
    - `uppercase`: accept lowercase bases (off: they raise `SequenceError`).
    - `iupac_to_n`: map IUPAC ambiguity codes `RYSWKMBDHV` to `N` (off: they raise).

    A sequence shorter than `k` has no k-mer and raises `SequenceError`. Masking must hide
    `k` consecutive tokens (`mask_span`), or the model reads a masked token off its neighbours.

    ```python
    tok = OverlappingKmerTokenizer(3)
    tok.encode("ATGGC")  # <cls> ATG TGG GGC: [3, 13, 37, 68]
    assert tok.decode(tok.encode("ATGGC")) == "ATGGC"
    ```
    """

    def __init__(
        self, k: int, *, prepend_cls: bool = True, uppercase: bool = False, iupac_to_n: bool = False
    ):
        if not isinstance(k, int) or isinstance(k, bool):
            raise TypeError(f"k must be an int, got {k!r}")
        if not 1 <= k <= MAX_K:
            raise ValueError(f"k must be an integer in 1..{MAX_K} (vocabulary 4^k), got {k!r}")
        check_flags(prepend_cls=prepend_cls, uppercase=uppercase, iupac_to_n=iupac_to_n)
        self._k, self._prepend_cls = k, prepend_cls
        self._uppercase, self._iupac_to_n = uppercase, iupac_to_n
        kmers = ["".join(p) for p in itertools.product(NUCLEOTIDES, repeat=k)]
        self._vocabulary = (*SPECIALS, *kmers, "N" * k)
        self._ids = {token: i for i, token in enumerate(self._vocabulary)}
        self._kmer_offset = len(SPECIALS)
        self._n_id = len(self._vocabulary) - 1
        self._special_ids = frozenset(range(len(SPECIALS)))
        self._normalise = normalising_table(uppercase=uppercase, iupac_to_n=iupac_to_n)
        self._token_bases = np.ones(len(self._vocabulary), dtype=np.int32)
        self._token_bases[: len(SPECIALS)] = 0
        # Base codes (A T C G N -> 0..4) of every token's k letters; specials are never read.
        table = np.full((len(self._vocabulary), k), N_CODE, dtype=np.uint8)
        table[self._kmer_offset : self._n_id] = list(itertools.product(range(4), repeat=k))
        self._token_codes = table

    def __repr__(self) -> str:
        return (
            f"OverlappingKmerTokenizer(k={self.k}, prepend_cls={self.prepend_cls}, "
            f"uppercase={self.uppercase}, iupac_to_n={self.iupac_to_n})"
        )

    @property
    def k(self) -> int:
        return self._k

    # -- vocabulary -------------------------------------------------------------------------

    @property
    def n_id(self) -> int:
        """The token of every k-mer that contains an `N` (the last id)."""
        return self._n_id

    @property
    def mask_span(self) -> int:
        """k: each base is spelled by k consecutive tokens, so masking hides k together."""
        return self.k

    def nucleotides_for_tokens(self, tokens: int) -> int:
        """Bases that make exactly `tokens` tokens (with `<cls>`): `tokens - 1 + k - 1`."""
        body = tokens - int(self.prepend_cls)
        if body < 1:
            raise ValueError(f"{tokens} tokens leave no room for a k-mer after <cls>")
        return body + self.k - 1

    def to_config(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "prepend_cls": self.prepend_cls,
            "uppercase": self.uppercase,
            "iupac_to_n": self.iupac_to_n,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> OverlappingKmerTokenizer:
        return cls(**config)

    # -- encoding ---------------------------------------------------------------------------
    #
    # The batch's base codes are joined into one buffer and every window of k codes in it is
    # valued at once (Horner over the k columns, a window count of Ns from a cumulative sum).
    # Each row then gathers its windows from its offset in the buffer; windows that straddle
    # two sequences are computed but never gathered.

    def _codes(self, sequences: Sequence[str]) -> list[bytes]:
        rows = sequence_codes(sequences, self._normalise)
        for index, row in enumerate(rows):
            if len(row) < self.k:
                raise SequenceError(
                    f"sequence {index} has {len(row)} base{'s' * (len(row) != 1)}, fewer than "
                    f"k = {self.k}: it has no {self.k}-mer to make a token of",
                    index=index,
                    position=None,
                    char=None,
                )
        return rows

    def _encode(
        self, sequences: Sequence[str], length: int | None
    ) -> tuple[Int[np.ndarray, "batch length"], Int[np.ndarray, " batch"]]:
        """Token ids [B, L] and each row's number of k-mer tokens."""
        k, extra = self.k, int(self.prepend_cls)
        rows = self._codes(sequences)
        bases = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        num_kmers = bases - k + 1
        length = padded_length((num_kmers + extra).tolist(), length, cls=bool(extra))
        codes = np.frombuffer(b"".join(rows), dtype=np.uint8)
        windows = len(codes) - k + 1
        value = np.zeros(windows, dtype=np.int32)
        for j in range(k):
            value *= 4
            value += codes[j : j + windows] & 3  # N (4) counts as A here; overwritten below
        ns = np.concatenate([[0], np.cumsum(codes == N_CODE, dtype=np.int32)])
        window_ids = np.where(ns[k:] > ns[:windows], self._n_id, value + self._kmer_offset)

        offsets = np.concatenate([[0], np.cumsum(bases)[:-1]])
        t = np.arange(length - extra)
        valid = t < num_kmers[:, None]
        gathered = window_ids[np.where(valid, offsets[:, None] + t, 0)]
        out = np.empty((len(rows), length), dtype=np.int32)
        if extra:
            out[:, 0] = self.cls_id
        out[:, extra:] = np.where(valid, gathered, self.pad_id)
        return out, num_kmers

    def batch_encode(
        self, sequences: Sequence[str], length: int | None = None
    ) -> Int[np.ndarray, "batch length"]:
        """Encode a batch into int32 [B, L], right-padded with `<pad>` to `length`.

        `length=None` pads to the longest; a sequence that does not fit raises
        `SequenceTooLongError` naming it. Invalid characters, and sequences shorter than k,
        raise `SequenceError`.
        """
        return self._encode(sequences, length)[0]

    def batch_encode_with_spans(
        self, sequences: Sequence[str], length: int | None = None
    ) -> tuple[Int[np.ndarray, "batch length"], Int[np.ndarray, "batch length 2"]]:
        """`batch_encode` plus each token's nucleotide span `(start, end)`, int32 [B, L, 2]:
        `(i, i + k)` for the i-th k-mer. Special and pad tokens get the empty span `(0, 0)`."""
        ids, num_kmers = self._encode(sequences, length)
        extra = int(self.prepend_cls)
        start = np.broadcast_to(
            np.arange(ids.shape[1] - extra, dtype=np.int32), ids[:, extra:].shape
        )
        spans = np.zeros((*ids.shape, 2), dtype=np.int32)
        valid = start < num_kmers[:, None]
        spans[:, extra:, 0] = np.where(valid, start, 0)
        spans[:, extra:, 1] = np.where(valid, start + self.k, 0)
        return ids, spans

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """The nucleotides of a token sequence; special and pad tokens are dropped.

        `m` k-mer tokens give `m + k - 1` bases. Each base is read off the tokens covering it
        that are not the N-token, and is `N` when every token covering it is the N-token.
        Raises `ValueError` when the tokens are not the overlapping k-mers of any sequence:
        two tokens disagree on a base, or an N-token covers no base that can be `N`.
        """
        arr = check_ids(ids, self.vocab_size)
        where = np.flatnonzero(arr >= len(SPECIALS))
        if where.size == 0:
            return ""
        k, m = self.k, where.size
        codes = self._token_codes[arr[where]]  # [m, k]
        # claims[j, p]: what the token starting at p - j says base p is (N_CODE: nothing).
        claims = np.full((k, m + k - 1), N_CODE, dtype=np.uint8)
        for j in range(k):
            claims[j, j : j + m] = codes[:, j]
        known = claims < N_CODE
        low = np.where(known, claims, N_CODE).min(axis=0)
        high = np.where(known, claims, 0).max(axis=0)
        clash = np.flatnonzero(known.any(axis=0) & (low != high))
        if clash.size:
            p = int(clash[0])
            starts = [p - j for j in range(k) if known[j, p]]
            a = next(t for t in starts if claims[p - t, p] == low[p])
            b = next(t for t in starts if claims[p - t, p] == high[p])
            first, second = int(where[min(a, b)]), int(where[max(a, b)])
            raise ValueError(
                f"ids are not overlapping {k}-mers: the tokens at positions {first} and "
                f"{second} disagree on base {p} "
                f"({chr(_LETTERS[low[p]])} vs {chr(_LETTERS[high[p]])})"
            )
        # An N-token says one of its k bases is N; the others' claims may leave none that is.
        is_n = codes[:, 0] == N_CODE
        windows = np.lib.stride_tricks.sliding_window_view(low == N_CODE, k)  # [m, k]
        lying = np.flatnonzero(is_n & ~windows.any(axis=1))
        if lying.size:
            t = int(lying[0])
            raise ValueError(
                f"ids are not overlapping {k}-mers: the N-token at position {int(where[t])} "
                f"covers bases {t}..{t + k - 1}, which its neighbours spell without an N"
            )
        return _LETTERS[low].tobytes().decode("ascii")

"""Codons in a given reading frame: every token of a coding sequence is a codon, whatever Ns
it holds."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, Literal, cast

import numpy as np
from jaxtyping import Int

from ._base import TokenizerBase, check_flags
from ._protocol import SequenceError
from ._validation import (
    NUCLEOTIDES,
    SPECIALS,
    check_ids,
    normalising_table,
    pad_rows,
    padded_length,
    sequence_codes,
)

_BASES = NUCLEOTIDES + "N"  # base codes 0..4
_PARTIAL = ("keep", "drop", "error")


def _codon_vocabulary() -> tuple[str, ...]:
    codons = ["".join(c) for c in itertools.product(NUCLEOTIDES, repeat=3)]
    with_n = ["".join(c) for c in itertools.product(_BASES, repeat=3) if "N" in c]
    return (*SPECIALS, *codons, *_BASES, *with_n)


class CodonTokenizer(TokenizerBase):
    """One token per codon of a coding sequence read in frame `frame`.

    The Nucleotide Transformer's k-mer tokenizer restarts its 3-mer grid after every `N`,
    so one `N` shifts every later token out of the reading frame. Here the grid is fixed by
    `frame` alone: a codon holding an `N` is one token of its own (`ANG`, `NNN`, ...), three
    bases wide like every codon, and the frame never moves.

    Vocabulary (136 tokens): the six specials, the 64 codons over `ACGT` and the single bases
    `A T C G N` at the ids `KmerTokenizer(3)` gives them (ids 0..74: a sequence without N in
    frame 0 encodes exactly as Codon-NT's tokenizer encodes it), then the 61 codons holding
    an `N` (ids 75..135).

    **Arguments:**

    - `frame`: 0, 1 or 2, the offset of the first whole codon.
    - `partial`: the bases outside whole codons (the `frame` leading ones, and the 1 or 2
      after the last whole codon): `"keep"` them as single-base tokens (decode gives the
      sequence back), `"drop"` them (no token; spans still index the input), or raise
      `SequenceError` (`"error"`: a coding sequence must be whole codons from `frame` on, and
      `frame` must be 0 for there to be no leading bases).
    - `prepend_cls`, `uppercase`, `iupac_to_n`: as for `KmerTokenizer`.

    ```python
    tok = CodonTokenizer()
    tok.decode(tok.encode("ATGNCCTAA"))  # "ATGNCCTAA": tokens ATG NCC TAA, still in frame
    ```
    """

    def __init__(
        self,
        frame: int = 0,
        *,
        partial: Literal["keep", "drop", "error"] = "keep",
        prepend_cls: bool = True,
        uppercase: bool = False,
        iupac_to_n: bool = False,
    ):
        if isinstance(frame, bool) or frame not in (0, 1, 2):
            raise ValueError(f"frame must be 0, 1 or 2, got {frame!r}")
        if partial not in _PARTIAL:
            raise ValueError(f"partial must be one of {_PARTIAL}, got {partial!r}")
        check_flags(prepend_cls=prepend_cls, uppercase=uppercase, iupac_to_n=iupac_to_n)
        self._frame, self._partial, self._prepend_cls = frame, partial, bool(prepend_cls)
        self._uppercase, self._iupac_to_n = bool(uppercase), bool(iupac_to_n)
        self._vocabulary = _codon_vocabulary()
        self._ids = {token: i for i, token in enumerate(self._vocabulary)}
        self._special_ids = frozenset(range(len(SPECIALS)))
        self._normalise = normalising_table(uppercase=uppercase, iupac_to_n=iupac_to_n)
        # base-5 value 25 a + 5 b + c of a codon's base codes -> its token id
        self._codon_ids = np.array(
            [self._ids["".join(c)] for c in itertools.product(_BASES, repeat=3)], dtype=np.int32
        )
        self._single_ids = np.array([self._ids[b] for b in _BASES], dtype=np.int32)
        self._token_bases = np.array(
            [0 if i < len(SPECIALS) else len(t) for i, t in enumerate(self._vocabulary)],
            dtype=np.int32,
        )
        self._id_to_text = np.array(
            ["" if i < len(SPECIALS) else t for i, t in enumerate(self._vocabulary)], dtype=object
        )

    def __repr__(self) -> str:
        return (
            f"CodonTokenizer(frame={self.frame}, partial={self.partial!r}, "
            f"prepend_cls={self.prepend_cls}, uppercase={self.uppercase}, "
            f"iupac_to_n={self.iupac_to_n})"
        )

    @property
    def frame(self) -> int:
        return self._frame

    @property
    def partial(self) -> Literal["keep", "drop", "error"]:
        return cast(Literal["keep", "drop", "error"], self._partial)

    # -- vocabulary -------------------------------------------------------------------------

    @property
    def mask_span(self) -> int:
        """1: codons do not overlap."""
        return 1

    def nucleotides_for_tokens(self, tokens: int) -> int:
        """Bases of `tokens` tokens (with `<cls>`) of whole codons."""
        bases = (tokens - int(self.prepend_cls)) * 3
        if bases < 1:
            raise ValueError(f"{tokens} tokens leave no room for bases after <cls>")
        return bases

    def to_config(self) -> dict[str, Any]:
        return {
            "frame": self.frame,
            "partial": self.partial,
            "prepend_cls": self.prepend_cls,
            "uppercase": self.uppercase,
            "iupac_to_n": self.iupac_to_n,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> CodonTokenizer:
        return cls(**config)

    # -- encoding ---------------------------------------------------------------------------

    def _row(self, codes: bytes, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Token ids and spans of one sequence (without `<cls>`)."""
        base = np.frombuffer(codes, dtype=np.uint8)
        n = base.size
        lead = min(self.frame, n)
        whole = (n - lead) // 3
        tail = lead + 3 * whole
        if self.partial == "error" and (lead or tail < n):
            position = 0 if lead else tail
            raise SequenceError(
                f"sequence {index}: bases {position}..{n - 1 if not lead else lead - 1} are not "
                f"a whole codon in frame {self.frame} (length {n}; partial='error')",
                index=index,
                position=position,
                char=None,
            )
        codons = base[lead:tail].reshape(whole, 3).astype(np.int32)
        codon_ids = self._codon_ids[codons[:, 0] * 25 + codons[:, 1] * 5 + codons[:, 2]]
        starts = lead + 3 * np.arange(whole, dtype=np.int32)
        codon_spans = np.stack([starts, starts + 3], axis=-1)
        if self.partial != "keep" or (lead == 0 and tail == n):
            return codon_ids, codon_spans
        singles = np.r_[0:lead, tail:n].astype(np.int32)
        single_spans = np.stack([singles, singles + 1], axis=-1)
        head, rest = slice(0, lead), slice(lead, None)
        ids = np.concatenate(
            [
                self._single_ids[base[singles[head]]],
                codon_ids,
                self._single_ids[base[singles[rest]]],
            ]
        )
        spans = np.concatenate([single_spans[head], codon_spans, single_spans[rest]])
        return ids, spans

    def batch_encode_with_spans(
        self, sequences: Sequence[str], length: int | None = None
    ) -> tuple[Int[np.ndarray, "batch length"], Int[np.ndarray, "batch length 2"]]:
        """`batch_encode` plus each token's nucleotide span `(start, end)`, int32 [B, L, 2];
        special and pad tokens get `(0, 0)`."""
        rows = [self._row(c, i) for i, c in enumerate(sequence_codes(sequences, self._normalise))]
        if self.prepend_cls:
            cls = np.array([self.cls_id], np.int32)
            rows = [(np.concatenate([cls, i]), np.concatenate([[[0, 0]], s])) for i, s in rows]
        length = padded_length([len(ids) for ids, _ in rows], length, cls=self.prepend_cls)
        ids = pad_rows([ids for ids, _ in rows], length, self.pad_id)
        spans = np.zeros((len(rows), length, 2), np.int32)
        for i, (_, s) in enumerate(rows):
            spans[i, : len(s)] = s
        return ids, spans

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """The nucleotides of a token sequence; special and pad tokens are dropped (with
        `partial="drop"`, so were the bases outside whole codons)."""
        return "".join(self._id_to_text[check_ids(ids, self.vocab_size)].tolist())

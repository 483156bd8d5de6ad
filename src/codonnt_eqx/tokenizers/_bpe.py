"""Byte-pair encoding of DNA (as in GROVER and DNABERT-2): a vocabulary learned from a corpus,
tokens of variable length that tile the sequence. The Hugging Face `tokenizers` library does
the training and the merging; this file fixes the vocabulary layout, validates sequences like
every other tokenizer here and speaks the `Tokenizer` protocol."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from jaxtyping import Int

from ._base import TokenizerBase, check_flags
from ._validation import (
    NUCLEOTIDES,
    SPECIALS,
    check_ids,
    normalising_table,
    pad_rows,
    padded_length,
    sequence_codes,
    tiling_spans,
)

# The single bases follow the specials (ids 6..10), so every valid sequence encodes without
# <unk>; learned tokens follow in the order their merges were learned.
BASES = ("A", "C", "G", "T", "N")
MIN_VOCAB_SIZE = len(SPECIALS) + len(BASES)
# Base codes of `sequence_codes` (A T C G N) back to text.
_CODES_TO_TEXT = bytes.maketrans(bytes(range(5)), (NUCLEOTIDES + "N").encode("ascii"))
# Training reads long sequences in pieces: the trainer rescans a whole word after each merge
# that touches it, so one chromosome-sized word makes training quadratic (a 400 kb sequence:
# 45 s whole, 0.4 s in 1 kb pieces). Pairs across piece boundaries go uncounted (1 in 1024).
_TRAIN_PIECE = 1024
_ENCODE_BATCH = 256  # sequences per encode_batch call while measuring the corpus


def _hf() -> Any:
    """The Hugging Face `tokenizers` module, imported only when a BPE tokenizer is built."""
    try:
        import tokenizers  # absolute: Hugging Face's package, not codonnt_eqx.tokenizers
    except ImportError as e:
        raise ImportError(
            "BPETokenizer needs the Hugging Face tokenizers library: pip install 'codonnt-eqx[bpe]'"
        ) from e
    return tokenizers


def _hf_bpe(vocabulary: Sequence[str], merges: Sequence[tuple[str, ...]]) -> Any:
    """A Hugging Face tokenizer of just this BPE model: N split off before merging, no
    normaliser or post-processor (validation and `<cls>` are done here)."""
    hf = _hf()
    model = hf.models.BPE(
        vocab={token: i for i, token in enumerate(vocabulary)},
        merges=list(merges),
        unk_token="<unk>",
    )
    tokenizer = hf.Tokenizer(model)
    tokenizer.pre_tokenizer = hf.pre_tokenizers.Split("N", behavior="isolated")
    return tokenizer


def _model_of(tokenizer_json: str) -> tuple[list[str], list[tuple[str, ...]]]:
    """Vocabulary (by id) and merges of a Hugging Face tokenizer JSON holding a BPE model;
    `ValueError` when it is anything else."""
    try:
        model = json.loads(tokenizer_json)["model"]
        if model.get("type") != "BPE":
            raise ValueError(f"the model is {model.get('type')!r}, not BPE")
        if model.get("dropout") is not None:
            raise ValueError("BPE dropout makes encoding random; it must be null")
        by_id = {int(i): token for token, i in model["vocab"].items()}
        merges = _merges(model["merges"])
    except (TypeError, KeyError, AttributeError, json.JSONDecodeError) as e:
        raise ValueError(f"not a Hugging Face BPE tokenizer JSON ({e!r})") from None
    if sorted(by_id) != list(range(len(by_id))):
        raise ValueError("the BPE vocabulary ids are not 0..size-1")
    vocabulary = [by_id[i] for i in range(len(by_id))]
    head = tuple(vocabulary[:MIN_VOCAB_SIZE])
    if head != (*SPECIALS, *BASES):
        raise ValueError(f"the vocabulary must start with {(*SPECIALS, *BASES)}, got {head}")
    for i, token in enumerate(vocabulary[MIN_VOCAB_SIZE:], start=MIN_VOCAB_SIZE):
        if not token or token.strip("ACGT"):
            raise ValueError(f"token {i} ({token!r}) is not made of A, C, G and T")
    if not all(len(m) == 2 for m in merges):
        raise ValueError("every BPE merge must join two tokens")
    return vocabulary, merges


class BPETokenizer(TokenizerBase):
    """Byte-pair encoding of DNA, learned from a corpus with `BPETokenizer.train`.

    Layout: ids 0..5 are `<unk> <pad> <mask> <cls> <eos> <bos>`, 6..10 the single bases
    `A C G T N` (so nothing encodes to `<unk>`), then the learned tokens in the order their
    merges were learned. Tokens tile the sequence. `N` is split off before merging, so it is
    always a token of its own and no learned token contains it. `<cls>` is prepended.

    **Arguments:**

    - `tokenizer_json`: a Hugging Face `tokenizers` JSON of a BPE model with this layout, as
      `to_config()` stores it. Only its vocabulary and merges are read.
    - `nucleotides_per_token`: mean bases per token on the training corpus, for
      `nucleotides_for_tokens` (at least 1).
    - `prepend_cls`: prepend `<cls>` to every sequence.
    - `uppercase`: accept lowercase bases (off: they raise `SequenceError`).
    - `iupac_to_n`: map IUPAC ambiguity codes `RYSWKMBDHV` to `N` (off: they raise).

    ```python
    tok = BPETokenizer.train(["ATGGCCATGGCCNATGGCC"] * 50, vocab_size=16)
    ids = tok.batch_encode(["ATGGCCNTAA", "ATG"])  # int32 [2, L], padded with tok.pad_id
    assert tok.decode(ids[0]) == "ATGGCCNTAA"
    ```
    """

    def __init__(
        self,
        tokenizer_json: str,
        *,
        nucleotides_per_token: float,
        prepend_cls: bool = True,
        uppercase: bool = False,
        iupac_to_n: bool = False,
    ):
        if not isinstance(tokenizer_json, str):
            raise TypeError(f"tokenizer_json must be a str, got {type(tokenizer_json).__name__}")
        if (
            isinstance(nucleotides_per_token, bool)
            or not isinstance(nucleotides_per_token, (int, float))
            or not math.isfinite(nucleotides_per_token)
            or nucleotides_per_token < 1
        ):
            raise ValueError(
                f"nucleotides_per_token must be a finite number >= 1, got {nucleotides_per_token!r}"
            )
        vocabulary, merges = _model_of(tokenizer_json)
        # Read-only (properties below): the lookup tables are built from them once.
        self._hf_tokenizer = _hf_bpe(vocabulary, merges)
        self._vocabulary = tuple(vocabulary)
        self._nucleotides_per_token = float(nucleotides_per_token)
        check_flags(prepend_cls=prepend_cls, uppercase=uppercase, iupac_to_n=iupac_to_n)
        self._prepend_cls, self._uppercase, self._iupac_to_n = prepend_cls, uppercase, iupac_to_n
        self._ids = {token: i for i, token in enumerate(self._vocabulary)}
        self._special_ids = frozenset(range(len(SPECIALS)))
        self._normalise = normalising_table(uppercase=uppercase, iupac_to_n=iupac_to_n)
        self._token_bases = np.array(
            [0 if i in self._special_ids else len(t) for i, t in enumerate(self._vocabulary)],
            dtype=np.int32,
        )
        self._id_to_text = np.array(
            ["" if i in self._special_ids else t for i, t in enumerate(self._vocabulary)],
            dtype=object,
        )

    @classmethod
    def train(
        cls,
        sequences: Iterable[str],
        vocab_size: int = 4096,
        *,
        min_frequency: int = 2,
        max_token_length: int | None = None,
        prepend_cls: bool = True,
        uppercase: bool = False,
        iupac_to_n: bool = False,
    ) -> BPETokenizer:
        """Learn a BPE vocabulary from DNA sequences. Deterministic: the same corpus and
        options give the same tokenizer.

        **Arguments:**

        - `sequences`: the corpus, DNA strings validated as `encode` validates them (an invalid
          one raises `SequenceError` naming it).
        - `vocab_size`: at most this many tokens, specials and single bases included (at least
          11). Fewer when no pair left occurs `min_frequency` times.
        - `min_frequency`: a pair is merged only if it occurs at least this often.
        - `max_token_length`: the longest learned token in bases (None: no limit).
        - `prepend_cls`, `uppercase`, `iupac_to_n`: as for the constructor.

        **Returns:** the tokenizer, with `nucleotides_per_token` measured by encoding the
        corpus.

        ```python
        records = codonnt_eqx.read_fasta("genome.fa.gz")
        tok = BPETokenizer.train((r.sequence for r in records), 4096, uppercase=True)
        ```
        """
        _check_int("vocab_size", vocab_size, minimum=MIN_VOCAB_SIZE)
        _check_int("min_frequency", min_frequency, minimum=1)
        if max_token_length is not None:
            _check_int("max_token_length", max_token_length, minimum=1)
        if isinstance(sequences, str):
            raise TypeError("expected an iterable of sequences, got one string")
        table = normalising_table(uppercase=uppercase, iupac_to_n=iupac_to_n)
        texts = [
            c.translate(_CODES_TO_TEXT).decode("ascii")
            for c in sequence_codes(list(sequences), table)
        ]
        if not texts:
            raise ValueError("cannot train a BPE tokenizer on an empty corpus")

        hf = _hf()
        trainer = hf.Tokenizer(hf.models.BPE(unk_token="<unk>"))
        trainer.pre_tokenizer = hf.pre_tokenizers.Split("N", behavior="isolated")
        trainer.train_from_iterator(
            (t[i : i + _TRAIN_PIECE] for t in texts for i in range(0, len(t), _TRAIN_PIECE)),
            hf.trainers.BpeTrainer(
                vocab_size=vocab_size,
                min_frequency=min_frequency,
                special_tokens=list(SPECIALS),
                initial_alphabet=list(BASES),
                show_progress=False,
                # tokenizers 0.23 keeps tokens *shorter* than its max_token_length (and ignores
                # 1); the merges are filtered below in case a version counts otherwise.
                max_token_length=None if max_token_length is None else max_token_length + 1,
            ),
        )
        # The trainer numbers the alphabet in sorted order (A C G N T): renumber to the layout
        # above, learned tokens in merge order (two merges may make the same token).
        merges = _merges(json.loads(trainer.to_str())["model"]["merges"])
        if max_token_length is not None:
            # Dropping a merge whose token is too long drops only merges that would build on
            # it, whose tokens are longer still: the rest is a consistent BPE model.
            merges = [m for m in merges if len("".join(m)) <= max_token_length]
        learned = dict.fromkeys(a + b for a, b in merges)
        vocabulary = [*SPECIALS, *BASES, *learned]
        encoder = _hf_bpe(vocabulary, merges)

        # Mean bases per token on the whole sequences (not the training pieces), what a window
        # cut from them will see.
        bases = sum(map(len, texts))
        tokens = 0
        for start in range(0, len(texts), _ENCODE_BATCH):
            batch = texts[start : start + _ENCODE_BATCH]
            encodings = encoder.encode_batch(batch, add_special_tokens=False)
            tokens += sum(len(e.ids) for e in encodings)
        return cls(
            encoder.to_str(),
            nucleotides_per_token=bases / tokens,
            prepend_cls=prepend_cls,
            uppercase=uppercase,
            iupac_to_n=iupac_to_n,
        )

    def __repr__(self) -> str:
        return (
            f"BPETokenizer(vocab_size={self.vocab_size}, prepend_cls={self.prepend_cls}, "
            f"uppercase={self.uppercase}, iupac_to_n={self.iupac_to_n})"
        )

    @property
    def nucleotides_per_token(self) -> float:
        """Mean bases per token (`<cls>` not counted) on the training corpus."""
        return self._nucleotides_per_token

    # -- vocabulary -------------------------------------------------------------------------

    @property
    def mask_span(self) -> int:
        """1: BPE tokens do not overlap, so masking hides tokens one at a time."""
        return 1

    def nucleotides_for_tokens(self, tokens: int) -> int:
        """Bases that make about `tokens` tokens (with `<cls>`) on sequences like the training
        corpus: the tokens after `<cls>` times the corpus's mean bases per token, rounded
        down. Windows of BPE tokens vary; longer ones are cut."""
        body = tokens - int(self.prepend_cls)
        if body < 1:
            raise ValueError(f"{tokens} tokens leave no room for bases after <cls>")
        return max(1, math.floor(body * self._nucleotides_per_token))

    def to_config(self) -> dict[str, Any]:
        return {
            "tokenizer_json": self._hf_tokenizer.to_str(),
            "nucleotides_per_token": self.nucleotides_per_token,
            "prepend_cls": self.prepend_cls,
            "uppercase": self.uppercase,
            "iupac_to_n": self.iupac_to_n,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> BPETokenizer:
        return cls(**config)

    # -- encoding ---------------------------------------------------------------------------

    def _token_rows(self, sequences: Sequence[str]) -> list[list[int]]:
        """Token ids of each sequence, without `<cls>`."""
        texts = [
            c.translate(_CODES_TO_TEXT).decode("ascii")
            for c in sequence_codes(sequences, self._normalise)
        ]
        encodings = self._hf_tokenizer.encode_batch(texts, add_special_tokens=False)
        return [e.ids for e in encodings]

    def batch_encode(
        self, sequences: Sequence[str], length: int | None = None
    ) -> Int[np.ndarray, "batch length"]:
        """Encode a batch into int32 [B, L], right-padded with `<pad>` to `length`.

        `length=None` pads to the longest; a sequence that does not fit raises
        `SequenceTooLongError` naming it. Invalid characters raise `SequenceError`.
        """
        head = [self.cls_id] if self.prepend_cls else []
        rows = [np.array(head + ids, dtype=np.int32) for ids in self._token_rows(sequences)]
        length = padded_length([len(r) for r in rows], length, cls=self.prepend_cls)
        return pad_rows(rows, length, self.pad_id)

    def batch_encode_with_spans(
        self, sequences: Sequence[str], length: int | None = None
    ) -> tuple[Int[np.ndarray, "batch length"], Int[np.ndarray, "batch length 2"]]:
        """`batch_encode` plus each token's nucleotide span `(start, end)`, int32 [B, L, 2].

        Special and pad tokens get the empty span `(0, 0)`.
        """
        ids = self.batch_encode(sequences, length)
        return ids, tiling_spans(ids, self._token_bases)

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """The nucleotides of a token sequence; special and pad tokens are dropped."""
        arr = check_ids(ids, self.vocab_size)
        return "".join(self._id_to_text[arr].tolist())


def _merges(raw: list[Any]) -> list[tuple[str, ...]]:
    """Merges as read from a tokenizer JSON: ["a", "b"] pairs since tokenizers 0.20, "a b"
    strings before."""
    return [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in raw]


def _check_int(name: str, value: object, *, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")

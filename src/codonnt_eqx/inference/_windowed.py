"""The one inference core: a model run over sequences of any length in overlapping windows,
in length-bucketed batches over the local devices. `Embedder` and `Scorer` are built on it and
differ only in what they compute per window and how they reduce it."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from jaxtyping import Int

from ..model import NucleotideTransformer, check_token_ids
from ..tokenizers import Tokenizer, prepends_cls
from ._batching import BucketedRunner, Devices
from ._windows import plan_windows

CODON_NT_WINDOW = 1000  # Codon-NT was trained on 1,000-token windows (<cls> included)


def default_window(model: NucleotideTransformer) -> int:
    """Tokens per window (`<cls>` included): the positions a learned-position model has, or
    Codon-NT's training length for rotary models."""
    c = model.config
    return c.max_positions if c.positional_embedding == "learned" else CODON_NT_WINDOW


class WindowedModel:
    """`forward(model, tokens [rows, length])` run on windows of token sequences.

    A sequence's *body* is its tokens after the `<cls>` the tokenizer prepends (if it does,
    as its declared `cls_id` says); a window row is `<cls>` (if any) then up to `size` body
    tokens, so body token `p` of the window starting at `s` sits at row position
    `offset + p - s`.

    **Arguments:** `window` (tokens per row, `<cls>` included; default `default_window`),
    `overlap` (body tokens shared by consecutive windows; default a quarter of `size`), and
    `batch_tokens`, `max_batch`, `bucket`, `devices`, `pack_length` of `BucketedRunner`
    (with `pack_length`, `forward` takes segment ids too).
    """

    def __init__(
        self,
        model: NucleotideTransformer,
        tokenizer: Tokenizer,
        forward: Callable,
        *,
        window: int | None = None,
        overlap: int | None = None,
        batch_tokens: int = 8192,
        max_batch: int | None = None,
        bucket: int = 128,
        devices: Devices = None,
        pack_length: int | None = None,
    ):
        c = model.config
        window = default_window(model) if window is None else window
        if isinstance(window, bool) or not isinstance(window, int | np.integer):
            raise ValueError(f"window must be an integer, got {window!r}")
        if c.positional_embedding == "learned" and window > c.max_positions:
            raise ValueError(f"window {window} exceeds this model's {c.max_positions} positions")
        self.has_cls = prepends_cls(tokenizer)
        self.offset = int(self.has_cls)
        self.size = int(window) - self.offset
        if self.size < 1:
            raise ValueError(f"window must hold at least one token besides <cls>, got {window}")
        overlap = self.size // 4 if overlap is None else overlap
        if isinstance(overlap, bool) or not isinstance(overlap, int | np.integer):
            raise ValueError(f"overlap must be an integer, got {overlap!r}")
        if not 0 <= overlap < self.size:
            raise ValueError(f"overlap must be in [0, {self.size}) for a window of {window}")
        self.window, self.overlap = int(window), int(overlap)
        self.model, self.tokenizer = model, tokenizer
        self.special = np.array(sorted(tokenizer.special_ids))
        self._cls = np.array([tokenizer.cls_id] * self.offset, np.int32)
        self.runner = BucketedRunner(
            forward,
            pad_id=tokenizer.pad_id,
            bucket=bucket,
            max_length=self.window,
            batch_tokens=batch_tokens,
            max_batch=max_batch,
            devices=devices,
            check=functools.partial(check_token_ids, config=c),
            pack_length=None if pack_length is None else min(pack_length, self.window),
        )

    def encode(self, sequence: str) -> tuple[Int[np.ndarray, " tokens"], np.ndarray]:
        """The body token ids of `sequence` and their `(start, end)` spans in it."""
        ids, spans = self.tokenizer.batch_encode_with_spans([sequence])
        return ids[0][self.offset :], spans[0][self.offset :]

    def is_special(self, body: np.ndarray) -> np.ndarray:
        """bool per body token: a special token (not scored, not pooled)."""
        return np.isin(body, self.special)

    def windows(self, num_tokens: int) -> list[tuple[int, int, int]]:
        """(start, keep_lo, keep_hi) per window over `num_tokens` body tokens: each token is
        kept from exactly one window, the one where it is most central."""
        plan = plan_windows(num_tokens, self.size, min(self.overlap, self.size - 1))
        return [
            (s, lo, hi) for s, (lo, hi) in zip(plan.start.tolist(), plan.keep.tolist(), strict=True)
        ]

    def centred_start(self, lo: int, hi: int, num_tokens: int) -> int:
        """The start of the window centred on body tokens `[lo, hi)`, kept inside the body."""
        return min(max(0, (lo + hi) // 2 - self.size // 2), max(0, num_tokens - self.size))

    def row(self, body: np.ndarray, start: int) -> Int[np.ndarray, " length"]:
        """The window row (int32) starting at body token `start`."""
        return np.r_[self._cls, body[start : start + self.size]].astype(np.int32)

    def run(self, rows: Sequence[np.ndarray], reduce: Callable[[int, np.ndarray], Any]) -> list:
        """`reduce(i, output of row i)` for every row, in order (see `BucketedRunner`)."""
        return self.runner(self.model, rows, reduce)

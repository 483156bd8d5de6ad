"""Running a jitted function over token rows of many lengths with few compiled shapes."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import numpy as np


class BucketedRunner:
    """Pads rows of token ids into batches of a few fixed shapes and runs `fn` on them.

    A row of `n` tokens goes into a batch padded to `ceil(n / bucket) * bucket` tokens
    (at most `max_length`); a full batch of length `L` has `batch_tokens // L` rows (at most
    `max_batch`), and the rest of a length is run as batches of 2^i rows, the binary digits
    of its count (13 = 8 + 4 + 1), so no row is wasted. The number of compiled shapes stays
    small (lengths x log2 of rows) and each is compiled once, ahead of its first use, with
    its time counted apart in `compile_seconds`.

    **Arguments:**

    - `fn`: `fn(model, tokens: int32 [rows, length]) -> array [rows, length, ...]`.
    - `pad_id`: the id rows are padded with.
    - `bucket`, `max_length`, `batch_tokens`, `max_batch`: as above.
    """

    def __init__(
        self,
        fn: Callable,
        *,
        pad_id: int,
        bucket: int,
        max_length: int,
        batch_tokens: int,
        max_batch: int | None = None,
    ):
        for name, value in (("bucket", bucket), ("max_length", max_length)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if batch_tokens < 1 or (max_batch is not None and max_batch < 1):
            raise ValueError(f"batch sizes must be >= 1, got {batch_tokens}, {max_batch}")
        self._fn = eqx.filter_jit(fn)
        self._pad_id = pad_id
        self._bucket, self._max_length = bucket, max_length
        self._batch_tokens, self._max_batch = batch_tokens, max_batch
        self._compiled: dict[tuple[int, int], Callable] = {}
        self.compile_seconds = 0.0
        self.run_seconds = 0.0

    @property
    def shapes(self) -> list[tuple[int, int]]:
        """The (rows, length) shapes compiled so far."""
        return sorted(self._compiled)

    def padded_length(self, num_tokens: int) -> int:
        if num_tokens > self._max_length:
            raise ValueError(f"a row of {num_tokens} tokens exceeds {self._max_length}")
        return min(self._max_length, -(-num_tokens // self._bucket) * self._bucket)

    def _rows_per_batch(self, length: int) -> int:
        rows = max(1, self._batch_tokens // length)
        return rows if self._max_batch is None else min(rows, self._max_batch)

    def _executable(self, model, shape: tuple[int, int]) -> Callable:
        if shape not in self._compiled:
            start = time.perf_counter()
            example = np.full(shape, self._pad_id, np.int32)
            self._compiled[shape] = self._fn.lower(model, example).compile()
            self.compile_seconds += time.perf_counter() - start
        return self._compiled[shape]

    def __call__(
        self,
        model,
        rows: Sequence[np.ndarray],
        reduce: Callable[[int, np.ndarray], Any] | None = None,
    ) -> list:
        """`fn`'s output for every row (int token ids, any lengths), trimmed to the row's
        own length, in the given order; or `reduce(row_index, output)` of it, which keeps
        only what is needed of each batch before the next one runs."""
        lengths = np.array([len(r) for r in rows], dtype=np.int64)
        padded = np.array([self.padded_length(int(n)) for n in lengths], dtype=np.int64)
        results: list = [None] * len(rows)
        for length in np.unique(padded).tolist():
            members = np.flatnonzero(padded == length)
            full = self._rows_per_batch(length)
            for part in _split(members, full):
                num_rows = len(part)
                batch = np.full((num_rows, length), self._pad_id, np.int32)
                for j, i in enumerate(part):
                    batch[j, : lengths[i]] = rows[i]
                run = self._executable(model, (num_rows, length))
                start = time.perf_counter()
                out = np.asarray(run(model, batch))
                self.run_seconds += time.perf_counter() - start
                for j, i in enumerate(part):
                    row = out[j, : lengths[i]]
                    results[i] = row if reduce is None else reduce(int(i), row)
        return results


def _split(members: np.ndarray, full: int) -> list[np.ndarray]:
    """`members` as full batches, then the rest as batches of decreasing powers of two."""
    parts = [members[i : i + full] for i in range(0, len(members) - len(members) % full, full)]
    rest = members[len(members) - len(members) % full :]
    while len(rest):
        size = 1 << (len(rest).bit_length() - 1)
        parts.append(rest[:size])
        rest = rest[size:]
    return parts

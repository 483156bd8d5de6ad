"""Running a jitted function over token rows of many lengths with few compiled shapes, on one
device or data parallel over several (the only place inference code mentions devices)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, cast

import equinox as eqx
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ..parallel import mesh_context

DATA = "data"
Devices = int | Sequence[jax.Device] | None


class BucketedRunner:
    """Pads rows of token ids into batches of a few fixed shapes and runs `fn` on them.

    A row of `n` tokens goes into a batch padded to `ceil(n / bucket) * bucket` tokens
    (at most `max_length`); a full batch of length `L` has `batch_tokens // L` rows (at most
    `max_batch`) per device, and the rest of a length is run as batches of 2^i rows per
    device, the binary digits of its count (13 = 8 + 4 + 1), so fewer than one row per
    device is wasted. The number of compiled shapes stays small (lengths x log2 of rows) and
    each is compiled once, ahead of its first use, with its time counted apart in
    `compile_seconds`.

    With several devices each batch's rows are split evenly over them (padded with rows of
    `pad_id` alone, whose outputs are dropped) and `fn` runs data parallel, the model
    replicated on every device; the batch sizes are per device because device memory is
    what bounds them. With one device nothing is placed: batches run as plain jitted calls.

    **Arguments:**

    - `fn`: `fn(model, tokens: int32 [rows, length]) -> array [rows, length, ...]`, row by
      row independent (as a `jax.vmap` is).
    - `pad_id`: the id rows are padded with.
    - `bucket`, `max_length`, `batch_tokens`, `max_batch`: as above.
    - `devices`: `None` for every local device of the default backend, an int `n` for the
      first `n` of them, or the devices themselves.
    - `check`: called on every padded batch (int32 NumPy [rows, length]) before it runs, to
      raise on rows the compiled `fn` cannot check itself (e.g. `check_token_ids`).
    - `pack_length`: `None` (default): one row per batch row. An int: rows are packed, first
      fit by decreasing length, into batch rows of up to `pack_length` tokens (a multiple of
      `bucket`; rows longer than it stay alone), and `fn` is called as
      `fn(model, tokens, segment_ids)` with int32 segment ids [rows, length] (0, 1, ... per
      packed row; its pads the next id), which it must honour (the model's `segment_ids`)
      so that the outputs are those of each row alone. Padding then costs almost nothing
      and there are fewer shapes, at the price of attention over the packed length.
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
        devices: Devices = None,
        check: Callable[[np.ndarray], None] | None = None,
        pack_length: int | None = None,
    ):
        for name, value in (("bucket", bucket), ("max_length", max_length)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if batch_tokens < 1 or (max_batch is not None and max_batch < 1):
            raise ValueError(f"batch sizes must be >= 1, got {batch_tokens}, {max_batch}")
        if pack_length is not None and not 1 <= pack_length <= max_length:
            raise ValueError(f"pack_length must be in 1..{max_length}, got {pack_length}")
        self._fn = eqx.filter_jit(fn)
        self._pack_length = pack_length
        self._check = check
        self._pad_id = pad_id
        self._bucket, self._max_length = bucket, max_length
        self._batch_tokens, self._max_batch = batch_tokens, max_batch
        self.mesh = data_mesh(devices)
        self._replica: tuple[Any, Any] | None = None  # (model, its copy on every device)
        self._compiled: dict[tuple[int, int], Callable] = {}
        self.compile_seconds = 0.0
        self.run_seconds = 0.0

    @property
    def num_devices(self) -> int:
        return 1 if self.mesh is None else self.mesh.size

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

    def _replicated(self, model):
        """`model` with its arrays on every device (copied once per model, not per batch)."""
        if self.mesh is None:
            return model
        if self._replica is None or self._replica[0] is not model:
            params, static = eqx.partition(model, eqx.is_array)
            params = jax.device_put(params, NamedSharding(self.mesh, P()))
            self._replica = (model, eqx.combine(params, static))
        return self._replica[1]

    def _put(self, batch: np.ndarray):
        """The batch with its rows split over the devices (as it is, on one device)."""
        if self.mesh is None:
            return batch
        return jax.device_put(batch, NamedSharding(self.mesh, P(DATA)))

    def _executable(self, model, shape: tuple[int, int]) -> Callable:
        if shape not in self._compiled:
            start = time.perf_counter()
            example = self._put(np.full(shape, self._pad_id, np.int32))
            extra = () if self._pack_length is None else (self._put(np.zeros(shape, np.int32)),)
            with mesh_context(example):  # the kernels then run per device (a TPU needs it)
                lowered = cast(Any, self._fn).lower(model, example, *extra)
                self._compiled[shape] = lowered.compile()
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
        if self._pack_length is None:
            bins = [[i] for i in range(len(rows))]
        else:
            bins = pack_rows(lengths, self._pack_length)
        # A row too long is alone in its bin (it exceeds pack_length too): this raises for it
        # before any work.
        padded = np.array([self.padded_length(int(lengths[b].sum())) for b in bins], np.int64)
        layouts = [_layout(b, lengths) for b in bins]
        results: list = [None] * len(rows)
        model, step = self._replicated(model), self.num_devices
        for length in np.unique(padded).tolist():
            members = np.flatnonzero(padded == length)
            full = self._rows_per_batch(length) * step
            for part in _split(members, full, step):
                num_rows = -(-len(part) // step) * step  # the last rows: padding only
                batch = np.full((num_rows, length), self._pad_id, np.int32)
                segments = np.zeros((num_rows, length), np.int32)
                for j, b in enumerate(part):
                    for s, (i, lo, hi) in enumerate(layouts[b]):
                        batch[j, lo:hi] = rows[i]
                        segments[j, lo:hi] = s
                    segments[j, layouts[b][-1][2] :] = len(layouts[b])
                if self._check is not None:
                    self._check(batch)
                run = self._executable(model, (num_rows, length))
                extra = () if self._pack_length is None else (self._put(segments),)
                start = time.perf_counter()
                out = np.asarray(run(model, self._put(batch), *extra))
                self.run_seconds += time.perf_counter() - start
                for j, b in enumerate(part):
                    for i, lo, hi in layouts[b]:
                        row = out[j, lo:hi]
                        results[i] = row if reduce is None else reduce(int(i), row)
        return results


def data_mesh(devices: Devices = None) -> Mesh | None:
    """A 1-D mesh `("data",)` over `devices` (see `BucketedRunner`); None when that is the
    first local device alone, so that a one-device host runs plain jitted calls."""
    local = jax.local_devices()
    if devices is None:
        chosen = local
    elif isinstance(devices, int) and not isinstance(devices, bool):
        if not 1 <= devices <= len(local):
            raise ValueError(f"devices must be in 1..{len(local)} (local devices), got {devices}")
        chosen = local[:devices]
    else:
        chosen = list(devices) if isinstance(devices, Sequence) else []
        if not chosen or not all(isinstance(d, jax.Device) for d in chosen):
            raise ValueError(f"devices must be None, an int or jax devices, got {devices!r}")
    if chosen == local[:1]:
        return None
    return Mesh(np.array(chosen, dtype=object), (DATA,))


def pack_rows(lengths: np.ndarray, capacity: int) -> list[list[int]]:
    """Row indices grouped into bins of at most `capacity` tokens, first fit by decreasing
    length (a row longer than `capacity` gets a bin of its own); each bin in input order."""
    bins: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: (-int(lengths[i]), i)):
        n = int(lengths[i])
        for b, free in enumerate(room):
            if n <= free:
                bins[b].append(i)
                room[b] -= n
                break
        else:
            bins.append([i])
            room.append(capacity - n)
    return [sorted(b) for b in bins]


def _layout(bin_rows: list[int], lengths: np.ndarray) -> list[tuple[int, int, int]]:
    """(row index, start, end) of each row of a bin, placed one after the other."""
    ends = np.cumsum(lengths[bin_rows]).tolist()
    return [(i, end - int(lengths[i]), end) for i, end in zip(bin_rows, ends, strict=True)]


def _split(members: np.ndarray, full: int, step: int = 1) -> list[np.ndarray]:
    """`members` as full batches, then the rest as batches of `step` times decreasing powers
    of two (the binary digits of `ceil(rest / step)`; only the last may fall short)."""
    cut = len(members) - len(members) % full
    parts = [members[i : i + full] for i in range(0, cut, full)]
    rest, units = members[cut:], -(-(len(members) - cut) // step)
    while units:
        size = 1 << (units.bit_length() - 1)
        parts.append(rest[: size * step])
        rest, units = rest[size * step :], units - size
    return parts

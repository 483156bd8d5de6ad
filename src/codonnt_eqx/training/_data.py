"""Genome windows for masked-language-model pretraining: a stateless, seekable sampler.

A `GenomeCorpus` holds genomes as one uint8 array of upper-case `A C G T N` bytes per FASTA
file (about one byte per base). Training batches are a pure function of
`(seed, step, example index)`: the data position of a run is its step, a resumed run sees
exactly the batches it would have seen, and every process of a multi-host run computes only
its own slice of the global batch, with no coordination and no iterator state to checkpoint.

Why not grain: grain's `DataLoader` owns an iterator whose state is checkpointed beside the
model, and its random access is per record. Here a batch is already a function of the step,
so there is nothing to checkpoint and nothing grain would add but a dependency; a prefetching
loader can still wrap `GenomeCorpus.batch` as a random-access source indexed by step.
"""

from __future__ import annotations

import bisect
import math
import numbers
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, cast

import numpy as np
from jaxtyping import Bool, Float, Int, UInt8

from ..errors import InputError
from ..io import BinaryStream, FastaError, read_fasta
from ..tokenizers import IUPAC_AMBIGUITY, Tokenizer

Source = str | os.PathLike | BinaryStream

_N = ord("N")
# Reverse complement is `_COMPLEMENT[window[::-1]]`; the corpus holds only A C G T N.
_COMPLEMENT = np.frombuffer(bytes.maketrans(b"ACGTN", b"TGCAN"), dtype=np.uint8)
# SeedSequence entropy of training example `index` is [_STREAM, seed, step, index]: the tag
# ("codonnt" in ASCII) keeps these draws apart from any other user of [seed, step, ...].
_STREAM = 0x636F646F6E6E74
# Redraws of a window with too many N before the sampler gives up on a file.
_MAX_DRAWS = 10_000


class CorpusError(InputError):
    """A corpus that cannot be built or sampled; the message names the file (and record)."""


@dataclass(frozen=True, eq=False)
class WindowCoordinates:
    """Where windows come from: window `i` is bases `[start[i], start[i] + length)` of record
    `record[i]` of file `file[i]` (0-based, in the order given to `from_fasta`), reverse
    complemented where `reverse[i]`.
    """

    file: Int[np.ndarray, " batch"]
    record: Int[np.ndarray, " batch"]
    start: Int[np.ndarray, " batch"]
    reverse: Bool[np.ndarray, " batch"]
    length: int


@dataclass(frozen=True, eq=False)
class ValidationBatch:
    """One batch of validation windows.

    `tokens` always has `batch_size // process_count` rows, so a jitted evaluation step
    compiles once; rows past the end of the validation set are all `<pad>`, with
    `is_real = False` and `file = -1`. `file` lets the loop report a loss per genome.
    """

    tokens: Int[np.ndarray, "batch tokens"]
    is_real: Bool[np.ndarray, " batch"]
    file: Int[np.ndarray, " batch"]


@dataclass(frozen=True)
class FileSummary:
    """What `GenomeCorpus.describe` says about one FASTA file (for a model card).

    `weight` is the weight given (or the default, the file's number of bases) and
    `probability` the fraction of training windows drawn from the file. `n_fraction` counts
    IUPAC ambiguity codes, which the corpus stores as N.
    """

    name: str
    records: int
    bases: int
    n_fraction: float
    weight: float
    probability: float
    train_bases: int
    validation_bases: int


@dataclass(frozen=True)
class HeldOutRegion:
    """A held-out region: bases `[start, end)` of record `record` of file `file` (names)."""

    file: str
    record: str
    start: int
    end: int


@dataclass(frozen=True, eq=False)
class _GenomeFile:
    """The records of one FASTA file, concatenated in `bases`."""

    name: str
    record_names: tuple[str, ...]
    offsets: Int[np.ndarray, " records"]  # where each record starts in `bases`
    lengths: Int[np.ndarray, " records"]
    held_out: Int[np.ndarray, " records"]  # the last held_out[r] bases of record r
    bases: UInt8[np.ndarray, " bases"]
    n_count: int


@dataclass(frozen=True, eq=False)
class GenomeCorpus:
    """Genomes to draw training and validation windows from. Build it with `from_fasta`.

    Immutable: every method is a pure function of its arguments and the corpus, which holds
    one uint8 array of `A C G T N` per file (lowercase soft-masked bases upper-cased, IUPAC
    ambiguity codes stored as N) plus per-record offsets. Windows never cross records.

    **Validation split.** Each record of `n` bases holds out its last `h` bases, with
    `f = validation_fraction` and `m = validation_min_bases`:

    - `h = 0` if `f == 0`;
    - `h = max(ceil(f * n), m)` if `n >= 2 * m`;
    - `h = ceil(f * n)` otherwise (a short record keeps most of its bases for training).

    `ceil(f * n)` is exact for the decimal `f` written (`0.01 * 300` is 3, not 4). No
    training window overlaps a held-out region; validation windows tile them (see
    `validation_coordinates`). Set `validation_min_bases` to the window length you train
    with so that every record at least twice that long yields a validation window.

    **Sampling.** A training window comes from file `f` with probability
    `weight_f / sum(weights)`, then from a record of it with probability proportional to its
    number of training start positions (`n - h - length + 1`), then at a uniform offset,
    then from either strand with probability 1/2. A window with more than
    `max_n_fraction * length` N is redrawn (position and strand, same file) from the same
    generator, so skipping changes neither the mixture nor determinism.

    ```python
    corpus = GenomeCorpus.from_fasta(["ecoli.fa.gz", "athaliana.fa.gz"], weights=[1, 1])
    tokens = corpus.batch(0, step, 64, window_tokens=1000, tokenizer=KmerTokenizer(3))
    ```
    """

    _files: tuple[_GenomeFile, ...]
    _weights: Float[np.ndarray, " files"]
    validation_fraction: float
    validation_min_bases: int
    max_n_fraction: float
    alignment: int = 1
    both_strands: bool = True

    @classmethod
    def from_fasta(
        cls,
        paths: Source | Sequence[Source],
        *,
        weights: Sequence[numbers.Real] | None = None,
        names: Sequence[str] | None = None,
        validation_fraction: float | int = 0.01,
        validation_min_bases: int = 0,
        max_n_fraction: float | int = 0.5,
        alignment: int = 1,
        both_strands: bool = True,
    ) -> GenomeCorpus:
        """Read FASTA files (plain or gzipped) into a corpus, one file at a time.

        Each record is converted to bytes as soon as the file is read and its string
        dropped, so memory is about one byte per base plus the largest file's text while it
        is being read.

        **Arguments:**

        - `paths`: FASTA paths or binary streams (one or a sequence); one mixture component
          (a genome, say) per file.
        - `weights`: one positive finite weight per file; a window comes from file `f` with
          probability `weights[f] / sum(weights)`. Default: the files' sizes in bases.
        - `names`: one unique name per file for `describe` and error messages. Default: the
          path as given (`"<stream i>"` for streams without a name).
        - `validation_fraction`: in `[0, 0.5]`; the share of each record held out (see the
          class docstring for the exact rule). 0 disables validation.
        - `validation_min_bases`: the least a record at least twice as long holds out.
        - `max_n_fraction`: in `[0, 1]`; windows with a larger fraction of N are skipped.
        - `alignment`: windows start at multiples of it from their record's start, and so do
          the held-out regions (each holds out a few more bases to get there). 3 for records
          that are coding sequences in frame, with a `CodonTokenizer`.
        - `both_strands`: draw training windows from either strand; `False`: the strand given
          (coding sequences, whose reverse complement is not read in frame).

        **Returns:**

        A `GenomeCorpus`.

        **Raises:**

        `FastaError` for a malformed or empty file; `CorpusError` naming the file (and record)
        for characters other than bases, N and IUPAC codes, or a file whose every base is N;
        `ValueError` for bad arguments (checked before any file is read).
        """
        single = isinstance(paths, (str, os.PathLike)) or isinstance(paths, BinaryStream)
        sources: list[Any] = [paths] if single else list(cast(Sequence[Source], paths))
        if not sources:
            raise ValueError("no FASTA files given")
        if names is None:
            names = [_default_name(source, i) for i, source in enumerate(sources)]
        else:
            names = [str(name) for name in names]
            if len(names) != len(sources):
                raise ValueError(f"{len(names)} names for {len(sources)} files")
        duplicate = next((n for i, n in enumerate(names) if n in names[:i]), None)
        if duplicate is not None:
            raise ValueError(f"two files are named {duplicate!r}; pass distinct names=")
        checked = None if weights is None else _check_weights(weights, names)
        if (
            not isinstance(validation_fraction, numbers.Real)
            or isinstance(validation_fraction, bool)
            or not 0 <= validation_fraction <= 0.5
        ):
            raise ValueError(
                f"validation_fraction must be a number in [0, 0.5], got {validation_fraction!r}"
            )
        _check_int("validation_min_bases", validation_min_bases, minimum=0)
        _check_int("alignment", alignment, minimum=1)
        if not isinstance(both_strands, bool):
            raise TypeError(f"both_strands must be a bool, got {both_strands!r}")
        if (
            not isinstance(max_n_fraction, numbers.Real)
            or isinstance(max_n_fraction, bool)
            or not 0 <= max_n_fraction <= 1
        ):
            raise ValueError(f"max_n_fraction must be a number in [0, 1], got {max_n_fraction!r}")

        table = _base_table()
        files = [
            _read_file(
                source, name, table, float(validation_fraction), validation_min_bases, alignment
            )
            for source, name in zip(sources, names, strict=True)
        ]
        if checked is None:
            checked = np.array([f.bases.size for f in files], dtype=np.float64)
        checked.flags.writeable = False
        return cls(
            tuple(files),
            checked,
            float(validation_fraction),
            int(validation_min_bases),
            float(max_n_fraction),
            alignment,
            both_strands,
        )

    # -- summaries --------------------------------------------------------------------------

    @property
    def names(self) -> tuple[str, ...]:
        """The files' names, in order (file `i` of `WindowCoordinates.file`)."""
        return tuple(f.name for f in self._files)

    @property
    def probabilities(self) -> Float[np.ndarray, " files"]:
        """The probability that a training window comes from each file."""
        return self._weights / self._weights.sum()

    def describe(self) -> tuple[FileSummary, ...]:
        """One `FileSummary` per file: records, bases, N fraction, weight, train/validation."""
        return tuple(
            FileSummary(
                name=f.name,
                records=len(f.record_names),
                bases=int(f.bases.size),
                n_fraction=f.n_count / f.bases.size,
                weight=float(w),
                probability=float(p),
                train_bases=int((f.lengths - f.held_out).sum()),
                validation_bases=int(f.held_out.sum()),
            )
            for f, w, p in zip(self._files, self._weights, self.probabilities, strict=True)
        )

    def training_sequences(self) -> Iterator[str]:
        """The training part of every record (its bases before the held-out end), upper case,
        one string at a time: e.g. to learn a BPE vocabulary without seeing validation data."""
        for f in self._files:
            for r in range(len(f.record_names)):
                at, train = int(f.offsets[r]), int(f.lengths[r] - f.held_out[r])
                if train > 0:
                    yield f.bases[at : at + train].tobytes().decode("ascii")

    def held_out_regions(self) -> tuple[HeldOutRegion, ...]:
        """Every held-out region (records with `h > 0`), by file and record name."""
        return tuple(
            HeldOutRegion(f.name, f.record_names[r], int(n - h), int(n))
            for f in self._files
            for r, (n, h) in enumerate(zip(f.lengths, f.held_out, strict=True))
            if h > 0
        )

    def __repr__(self) -> str:
        bases = sum(int(f.bases.size) for f in self._files)
        records = sum(len(f.record_names) for f in self._files)
        return (
            f"GenomeCorpus({len(self._files)} files, {records} records, {bases} bases, "
            f"validation_fraction={self.validation_fraction}, "
            f"validation_min_bases={self.validation_min_bases}, "
            f"max_n_fraction={self.max_n_fraction})"
        )

    # -- training ---------------------------------------------------------------------------

    def batch_coordinates(
        self,
        seed: int,
        step: int,
        batch_size: int,
        *,
        window_tokens: int,
        tokenizer: Tokenizer,
        nucleotides_per_window: int | None = None,
        process_index: int = 0,
        process_count: int = 1,
    ) -> WindowCoordinates:
        """Where the windows of `batch` with the same arguments come from.

        Example `index` of the global batch is drawn from
        `np.random.default_rng([tag, seed, step, index])` alone: the file (one uniform draw
        against the cumulative probabilities), then until the window has at most
        `max_n_fraction` N: a training start position of the file (uniform over all of them,
        which picks a record in proportion to its start positions) and a strand. This process
        computes indices `process_index * batch_size // process_count` up to the next
        process's first.
        """
        _check_int("seed", seed, minimum=0)
        _check_int("step", step, minimum=0)
        length = _window_bases(window_tokens, tokenizer, nucleotides_per_window)
        first, count = _process_slice(batch_size, process_index, process_count)
        starts = self._training_starts(length, window_tokens)
        cumulative = np.cumsum(self.probabilities).tolist()
        cumulative[-1] = 1.0  # a uniform draw in [0, 1) always lands in a file
        max_n = math.floor(self.max_n_fraction * length)

        file_ids = np.empty(count, np.int64)
        record_ids = np.empty(count, np.int64)
        offsets = np.empty(count, np.int64)
        reverse = np.empty(count, np.bool_)
        for row, index in enumerate(range(first, first + count)):
            rng = np.random.default_rng([_STREAM, seed, step, index])
            # bisect: per-example numpy calls on scalars would cost more than the draws.
            f = bisect.bisect_right(cumulative, rng.random())
            file, ends = self._files[f], starts[f]
            for _ in range(_MAX_DRAWS):
                j = int(rng.integers(ends[-1]))
                r = bisect.bisect_right(ends, j)
                offset = (j - (int(ends[r - 1]) if r else 0)) * self.alignment
                # drawn either way, so that a forward-only corpus sees the same positions
                strand = bool(rng.integers(2)) and self.both_strands
                at = int(file.offsets[r]) + offset
                if file.bases[at : at + length].tobytes().count(b"N") <= max_n:
                    break
            else:
                raise CorpusError(
                    f"{file.name}: {_MAX_DRAWS} windows of {length} bases in a row had more "
                    f"than max_n_fraction={self.max_n_fraction} N; the file is mostly N at "
                    "this window length (raise max_n_fraction, or drop or down-weight it)"
                )
            file_ids[row], record_ids[row], offsets[row], reverse[row] = f, r, offset, strand
        return WindowCoordinates(file_ids, record_ids, offsets, reverse, length)

    def batch(
        self,
        seed: int,
        step: int,
        batch_size: int,
        *,
        window_tokens: int,
        tokenizer: Tokenizer,
        nucleotides_per_window: int | None = None,
        process_index: int = 0,
        process_count: int = 1,
    ) -> Int[np.ndarray, "batch tokens"]:
        """This process's slice of the training batch of `step`, as token ids.

        **Arguments:**

        - `seed`, `step`: non-negative ints; the batch is a pure function of them (and the
          other arguments), so resuming at a step reproduces the run's data exactly.
        - `batch_size`: the global batch size, divisible by `process_count`.
        - `window_tokens`: tokens per row.
        - `tokenizer`: any `Tokenizer` accepting upper-case `A C G T N` strings.
        - `nucleotides_per_window`: bases per window. Default:
          `tokenizer.nucleotides_for_tokens(window_tokens)` (for `KmerTokenizer(k)`,
          `(window_tokens - 1) * k`, so a window without N is exactly `window_tokens` tokens).
        - `process_index`, `process_count`: this process's rows are global examples
          `process_index * B / P` to `(process_index + 1) * B / P`.

        **Returns:**

        int32 `[batch_size // process_count, window_tokens]`. Rows start with `<cls>` (as the
        tokenizer does); a window whose Ns make more tokens is cut at `window_tokens`, one
        with fewer tokens is right-padded with `pad_id`.

        ```python
        tokens = corpus.batch(seed, step, 64, window_tokens=1000, tokenizer=KmerTokenizer(3))
        ```
        """
        coordinates = self.batch_coordinates(
            seed,
            step,
            batch_size,
            window_tokens=window_tokens,
            tokenizer=tokenizer,
            nucleotides_per_window=nucleotides_per_window,
            process_index=process_index,
            process_count=process_count,
        )
        return _tokenize(self.window_sequences(coordinates), window_tokens, tokenizer)

    def window_sequences(self, coordinates: WindowCoordinates) -> list[str]:
        """The nucleotides of each window (reverse complemented where `reverse`)."""
        length = coordinates.length
        windows = np.empty((coordinates.file.size, length), np.uint8)
        for i, (f, r, start) in enumerate(
            zip(coordinates.file, coordinates.record, coordinates.start, strict=True)
        ):
            file = self._files[int(f)]
            if not 0 <= start <= file.lengths[r] - length:
                raise ValueError(f"window {i} runs past the end of its record")
            at = int(file.offsets[r]) + int(start)
            windows[i] = file.bases[at : at + length]
        rev = coordinates.reverse
        windows[rev] = _COMPLEMENT[windows[rev, ::-1]]
        text = windows.tobytes().decode("ascii")
        return [text[i * length : (i + 1) * length] for i in range(windows.shape[0])]

    def _training_starts(self, length: int, window_tokens: int) -> list[np.ndarray]:
        """Per file, the cumulative number of training start positions of its records."""
        out = []
        for f in self._files:
            room = f.lengths - f.held_out - length
            counts = np.where(room >= 0, room // self.alignment + 1, 0)
            if not counts.any():
                r = int(np.argmax(f.lengths - f.held_out))
                n, h = int(f.lengths[r]), int(f.held_out[r])
                raise CorpusError(
                    f"{f.name}: no record is long enough for one training window of {length} "
                    f"bases ({window_tokens} tokens); the longest, {f.record_names[r]!r}, has "
                    f"{n} bases, {n - h} of them for training (the last {h} are held out)"
                )
            out.append(np.cumsum(counts))
        return out

    # -- validation -------------------------------------------------------------------------

    def validation_coordinates(
        self,
        *,
        window_tokens: int,
        tokenizer: Tokenizer,
        nucleotides_per_window: int | None = None,
        max_windows: int = 1024,
        both_strands: bool = False,
    ) -> WindowCoordinates:
        """The fixed validation windows: each held-out region cut into consecutive windows
        from its start (a remainder shorter than a window is unused), ordered by file, record
        and position, without those with more than `max_n_fraction` N. Over `max_windows`,
        `max_windows` evenly spaced ones are kept (window `i * total // max_windows`). With
        `both_strands`, each window is followed by its reverse complement (twice the rows).
        """
        length = _window_bases(window_tokens, tokenizer, nucleotides_per_window)
        _check_int("max_windows", max_windows, minimum=1)
        max_n = math.floor(self.max_n_fraction * length)
        file_ids, record_ids, offsets = [], [], []
        for f, file in enumerate(self._files):
            tiles = file.held_out // length
            record = np.repeat(np.arange(tiles.size), tiles)
            first = np.repeat(file.lengths - file.held_out, tiles)
            within = np.arange(record.size) - np.repeat(np.cumsum(tiles) - tiles, tiles)
            start = first + within * length
            at = file.offsets[record] + start
            keep = np.array(
                [file.bases[a : a + length].tobytes().count(b"N") <= max_n for a in at.tolist()],
                dtype=np.bool_,
            )
            file_ids.append(np.full(int(keep.sum()), f))
            record_ids.append(record[keep])
            offsets.append(start[keep])
        file_ids, record_ids, offsets = (np.concatenate(x) for x in (file_ids, record_ids, offsets))
        total = file_ids.size
        if total == 0:
            longest = max(int(f.held_out.max()) for f in self._files)
            raise CorpusError(
                f"no validation window of {length} bases: the longest held-out region has "
                f"{longest} bases (validation_fraction={self.validation_fraction}, "
                f"validation_min_bases={self.validation_min_bases})"
            )
        if total > max_windows:
            pick = np.arange(max_windows) * total // max_windows
            file_ids, record_ids, offsets = file_ids[pick], record_ids[pick], offsets[pick]
        reverse = np.zeros(file_ids.size, np.bool_)
        if both_strands:
            file_ids, record_ids, offsets = (
                np.repeat(x, 2) for x in (file_ids, record_ids, offsets)
            )
            reverse = np.tile([False, True], reverse.size)
        return WindowCoordinates(
            file_ids.astype(np.int64), record_ids.astype(np.int64), offsets, reverse, length
        )

    def validation_batches(
        self,
        batch_size: int,
        *,
        window_tokens: int,
        tokenizer: Tokenizer,
        nucleotides_per_window: int | None = None,
        max_windows: int = 1024,
        both_strands: bool = False,
        process_index: int = 0,
        process_count: int = 1,
    ) -> Iterator[ValidationBatch]:
        """The validation windows in global batches, this process's slice of each.

        **Arguments:**

        - `batch_size`: the global batch size, divisible by `process_count`.
        - `window_tokens`, `tokenizer`, `nucleotides_per_window`: as in `batch`.
        - `max_windows`, `both_strands`: which windows (see `validation_coordinates`).
        - `process_index`, `process_count`: this process's rows of each global batch are
          `process_index * B / P` to `(process_index + 1) * B / P`, as in `batch`.

        **Returns:**

        An iterator of `ValidationBatch`, the same number, `ceil(rows / batch_size)`, on every
        process, each of `batch_size // process_count` rows: rows past the last window are
        all `<pad>` with `is_real` False (so one compiled evaluation step serves all batches;
        weight the loss by `is_real`). Arguments are checked when this is called, not when
        the first batch is drawn.

        ```python
        for batch in corpus.validation_batches(64, window_tokens=1000, tokenizer=tok):
            losses.append(evaluate(model, batch.tokens, batch.is_real))
        ```
        """
        first, count = _process_slice(batch_size, process_index, process_count)
        coordinates = self.validation_coordinates(
            window_tokens=window_tokens,
            tokenizer=tokenizer,
            nucleotides_per_window=nucleotides_per_window,
            max_windows=max_windows,
            both_strands=both_strands,
        )
        return self._validation_batches(
            coordinates, batch_size, first, count, window_tokens, tokenizer
        )

    def _validation_batches(
        self,
        coordinates: WindowCoordinates,
        batch_size: int,
        first: int,
        count: int,
        window_tokens: int,
        tokenizer: Tokenizer,
    ) -> Iterator[ValidationBatch]:
        rows = coordinates.file.size
        for begin in range(0, rows, batch_size):
            lo = min(begin + first, rows)
            hi = min(begin + first + count, rows)
            tokens = np.full((count, window_tokens), tokenizer.pad_id, np.int32)
            is_real = np.zeros(count, np.bool_)
            file = np.full(count, -1, np.int64)
            if hi > lo:
                part = WindowCoordinates(
                    coordinates.file[lo:hi],
                    coordinates.record[lo:hi],
                    coordinates.start[lo:hi],
                    coordinates.reverse[lo:hi],
                    coordinates.length,
                )
                tokens[: hi - lo] = _tokenize(self.window_sequences(part), window_tokens, tokenizer)
                is_real[: hi - lo] = True
                file[: hi - lo] = part.file
            yield ValidationBatch(tokens, is_real, file)


# -- helpers ----------------------------------------------------------------------------------


def _base_table() -> UInt8[np.ndarray, " 256"]:
    """Byte -> stored base: `ACGTN` in either case as upper case, IUPAC codes as N, else 0."""
    table = np.zeros(256, np.uint8)
    for char in "ACGTN":
        table[ord(char)] = table[ord(char.lower())] = ord(char)
    for char in IUPAC_AMBIGUITY:
        table[ord(char)] = table[ord(char.lower())] = _N
    return table


def _read_file(
    source: Source,
    name: str,
    table: UInt8[np.ndarray, " 256"],
    fraction: float,
    min_bases: int,
    alignment: int = 1,
) -> _GenomeFile:
    try:
        records: list[Any] = read_fasta(source)
    except FastaError as e:
        # read_fasta names a path as given and a stream "<stream>": say which file it was.
        message = str(e)
        if message.startswith("<stream>"):
            raise FastaError(name + message.removeprefix("<stream>")) from e
        if message.startswith(name):
            raise
        raise FastaError(f"{name}: {message}") from e
    lengths = np.fromiter((len(r.sequence) for r in records), np.int64, len(records))
    offsets = np.cumsum(lengths) - lengths
    bases = np.empty(int(lengths.sum()), np.uint8)
    record_names, n_count = [], 0
    for i in range(len(records)):
        record, records[i] = records[i], None  # each string is freed once it is stored
        record_names.append(record.name)
        raw = np.frombuffer(record.sequence.encode("ascii", errors="replace"), np.uint8)
        out = bases[offsets[i] : offsets[i] + lengths[i]]
        np.take(table, raw, out=out)
        if not out.all():
            position = int(np.argmin(out))
            char = record.sequence[position]
            raise CorpusError(
                f"{name}, record {record.name!r}, position {position}: invalid character "
                f"{char!r} (expected A, C, G, T, N or an IUPAC ambiguity code, any case)"
            )
        n_count += int(np.count_nonzero(out == _N))
        del record, raw
    if n_count == bases.size:
        raise CorpusError(f"{name}: all {bases.size} bases are N; there is nothing to train on")
    held_out = _held_out(lengths, fraction, min_bases)
    if alignment > 1:  # the held-out region starts at a multiple of alignment
        held_out = np.where(
            held_out > 0, lengths - (lengths - held_out) // alignment * alignment, 0
        )
    for array in (offsets, lengths, held_out, bases):
        array.flags.writeable = False
    return _GenomeFile(name, tuple(record_names), offsets, lengths, held_out, bases, n_count)


def _held_out(
    lengths: Int[np.ndarray, " records"], fraction: float, min_bases: int
) -> Int[np.ndarray, " records"]:
    if fraction == 0:
        return np.zeros_like(lengths)
    # The decimal the user wrote, not the binary float: ceil(0.01 * 300) is 3.
    exact = Fraction(repr(fraction))
    p, q = exact.numerator, exact.denominator
    held = np.array([-(-n * p // q) for n in lengths.tolist()], dtype=np.int64)
    return np.where(lengths >= 2 * min_bases, np.maximum(held, min_bases), held)


def _window_bases(window_tokens: int, tokenizer: Tokenizer, nucleotides: int | None) -> int:
    _check_int("window_tokens", window_tokens, minimum=1)
    if nucleotides is not None:
        _check_int("nucleotides_per_window", nucleotides, minimum=1)
        return nucleotides
    length = tokenizer.nucleotides_for_tokens(window_tokens)
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
        raise ValueError(
            f"{tokenizer!r}.nucleotides_for_tokens({window_tokens}) gave {length!r}, not a "
            "positive int"
        )
    return int(length)


def _process_slice(batch_size: int, process_index: int, process_count: int) -> tuple[int, int]:
    """(first global example index, number of examples) of this process."""
    _check_int("batch_size", batch_size, minimum=1)
    _check_int("process_count", process_count, minimum=1)
    _check_int("process_index", process_index, minimum=0)
    if process_index >= process_count:
        raise ValueError(
            f"process_index {process_index} is not below process_count {process_count}"
        )
    if batch_size % process_count:
        raise ValueError(
            f"batch_size {batch_size} does not divide by process_count {process_count}; "
            "every process must get the same number of rows"
        )
    count = batch_size // process_count
    return process_index * count, count


def _tokenize(
    sequences: list[str], window_tokens: int, tokenizer: Tokenizer
) -> Int[np.ndarray, "batch tokens"]:
    """Token rows of exactly `window_tokens`: cut (Ns made more tokens) or right-padded."""
    ids = np.asarray(tokenizer.batch_encode(sequences))
    out = np.full((len(sequences), window_tokens), tokenizer.pad_id, np.int32)
    width = min(window_tokens, ids.shape[1])
    out[:, :width] = ids[:, :width]
    return out


def _check_weights(weights: Sequence[numbers.Real], names: list[str]) -> np.ndarray:
    values = list(weights)
    if len(values) != len(names):
        raise ValueError(f"{len(values)} weights for {len(names)} files; give one per file")
    for value, name in zip(values, names, strict=True):
        if (
            not isinstance(value, numbers.Real)
            or isinstance(value, bool)
            or not math.isfinite(value)
            or value <= 0
        ):
            raise ValueError(
                f"the weight of {name} must be a positive finite number, got {value!r}"
            )
    return np.array(values, dtype=np.float64)


def _check_int(name: str, value: object, *, minimum: int) -> None:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")


def _default_name(source: Source, index: int) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    name = getattr(source, "name", None)
    return name if isinstance(name, str) else f"<stream {index}>"

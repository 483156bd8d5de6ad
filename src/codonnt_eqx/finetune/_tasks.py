"""Downstream task data: coding sequences with a scalar, a class, or a label per residue.

Reads the layouts the protein benchmarks ship in: a table (CSV, TSV or parquet) with the
sequence, the label and the split in columns, or one file per split (`train.*`, `val.*`,
`test.*`, tables or FASTA with the label as the header, as in `InstaDeepAI/true-cds-protein-
tasks`).
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import math
import os
import pathlib
from collections.abc import Sequence
from typing import Literal

import numpy as np

from ..errors import InputError
from ..io import read_fasta
from ..tokenizers import STOP_CODONS

TaskKind = Literal["regression", "classification", "per-residue"]
TASK_KINDS: tuple[str, ...] = ("regression", "classification", "per-residue")
SPLITS = ("train", "validation", "test")
# File stems and split-column values accepted for each split.
_SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "val": "validation",
    "valid": "validation",
    "validation": "validation",
    "dev": "validation",
    "test": "test",
    "testing": "test",
}
_SEQUENCE_COLUMNS = ("sequence", "seq", "cds", "dna", "nucleotide_sequence")
_LABEL_COLUMNS = ("label", "labels", "target", "y", "value")
_SPLIT_COLUMNS = ("split", "set", "fold", "partition")
_FASTA_SUFFIXES = (".fna", ".fa", ".fasta", ".ffn")


class TaskError(InputError):
    """Task data that cannot be used as asked: names the file, the row and what is wrong."""


@dataclasses.dataclass(frozen=True)
class TaskSplit:
    """One split of a task.

    - `sequences`: upper-case coding sequences.
    - `labels`: float64 [n] (regression), int32 [n] class indices (classification), or, per
      residue, one int32 array per sequence with one entry per codon: the class index, or -1
      for a codon without a label (a terminal stop codon).
    - `names`: where each example came from (`file:row`), for error messages and outputs.
    """

    sequences: tuple[str, ...]
    labels: np.ndarray | tuple[np.ndarray, ...]
    names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.sequences)

    def subset(self, index: Sequence[int] | np.ndarray) -> TaskSplit:
        index = [int(i) for i in index]
        labels = (
            tuple(self.labels[i] for i in index)
            if isinstance(self.labels, tuple)
            else self.labels[index]
        )
        return TaskSplit(
            tuple(self.sequences[i] for i in index), labels, tuple(self.names[i] for i in index)
        )


@dataclasses.dataclass(frozen=True)
class Task:
    """A downstream task: its kind, its three splits, and the class names (or None).

    Per-residue classes are the single characters (`"H"`, `"E"`, `"C"`) of every split;
    sequence classes are the training split's label strings as written (a class seen only
    outside it raises). Both are sorted, so a class index is the same in every split.
    """

    name: str
    kind: TaskKind
    train: TaskSplit
    validation: TaskSplit
    test: TaskSplit
    classes: tuple[str, ...] | None = None

    @property
    def num_outputs(self) -> int:
        return 1 if self.kind == "regression" else len(self.classes or ())

    def split(self, name: str) -> TaskSplit:
        return {"train": self.train, "validation": self.validation, "test": self.test}[name]

    def describe(self) -> str:
        sizes = ", ".join(f"{len(self.split(s))} {s}" for s in SPLITS)
        classes = f"; {len(self.classes)} classes" if self.classes else ""
        return f"{self.name}: {self.kind}, {sizes}{classes}"


@dataclasses.dataclass
class _Rows:
    sequences: list[str]
    labels: list[str]
    names: list[str]


def load_task(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    kind: TaskKind,
    *,
    name: str | None = None,
    sequence_column: str | None = None,
    label_column: str | None = None,
    split_column: str | None = None,
    validation_fraction: float = 0.1,
    seed: int = 0,
) -> Task:
    """Load a task from a table with a split column, or from one file per split.

    **Arguments:**

    - `paths`: one table (`.csv`, `.tsv`, `.parquet`, optionally gzipped text) whose split
      column says `train` / `val(idation)` / `test`; or several files, each named for its split
      (`train.csv`, `val.fna`, `test.parquet`, ...). FASTA files (`.fna`, `.fa`, `.fasta`) hold
      the label as the header line (`>0.83` then the CDS), as the Codon-NT benchmark does.
    - `kind`: `"regression"` (a number), `"classification"` (a class name), or
      `"per-residue"` (a string with one class character per codon).
    - `sequence_column`, `label_column`, `split_column`: column names; by default the first of
      `sequence`/`seq`/`cds`/`dna`, `label`/`labels`/`target`/`y`/`value`, `split`/`set`/`fold`.
    - `validation_fraction`, `seed`: without a validation split, this share of the training
      examples (chosen at random with `seed`) becomes it, as the benchmark suggests for its
      secondary-structure task.

    Per residue, one codon is one residue: the CDS length must be a multiple of 3 and its
    codon count must equal the label length, or exceed it by exactly one terminal stop codon
    (TAA, TAG, TGA), which is then kept in the input without a label. Anything else, and any
    base other than A/C/G/T (an N would become a token of its own and shift every later
    residue), raises `TaskError` naming the file and row.

    **Returns:** a `Task`.

    ```python
    task = load_task("fluorescence.csv", "regression")
    task = load_task(["ssp/train.csv", "ssp/test.csv"], "per-residue")
    ```
    """
    if kind not in TASK_KINDS:
        raise ValueError(f"kind must be one of {TASK_KINDS}, got {kind!r}")
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    paths = [pathlib.Path(p) for p in paths]
    if not paths:
        raise ValueError("no task files given")
    columns = (sequence_column, label_column, split_column)
    splits: dict[str, _Rows] = {s: _Rows([], [], []) for s in SPLITS}
    if len(paths) == 1 and _split_of(paths[0]) is None:
        _read_table(paths[0], splits, None, columns)
    else:
        for path in paths:
            split = _split_of(path)
            if split is None:
                raise TaskError(
                    f"{path}: with several files, each must be named for its split "
                    "(train.*, val.* / validation.*, test.*)"
                )
            if _is_fasta(path):
                _read_fasta_labels(path, splits[split])
            else:
                _read_table(path, splits, split, columns)
    for split in ("train", "test"):
        if not splits[split].sequences:
            raise TaskError(f"no {split} examples in {', '.join(map(str, paths))}")
    if not splits["validation"].sequences:
        splits["train"], splits["validation"] = _carve(splits["train"], validation_fraction, seed)
    name = name or _task_name(paths)
    return _parse(name, kind, splits)


def _split_of(path: pathlib.Path) -> str | None:
    stem = path.name.lower()
    for suffix in (".gz", ".parquet", ".csv", ".tsv", *_FASTA_SUFFIXES):
        stem = stem.removesuffix(suffix)
    return _SPLIT_NAMES.get(stem)


def _task_name(paths: list[pathlib.Path]) -> str:
    if len(paths) == 1 and _split_of(paths[0]) is None:
        return paths[0].name.split(".")[0]
    return paths[0].resolve().parent.name


def _is_fasta(path: pathlib.Path) -> bool:
    return path.name.lower().removesuffix(".gz").endswith(_FASTA_SUFFIXES)


def _text(path: pathlib.Path) -> io.TextIOBase:
    if path.name.lower().endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _columns_of(path: pathlib.Path) -> dict[str, list[str]]:
    """The table's columns as lists of strings."""
    if path.name.lower().endswith(".parquet"):
        try:
            import pyarrow.parquet as pq  # optional (finetune extra): parquet tables only
        except ImportError:
            raise TaskError(
                f"{path}: reading parquet needs pyarrow (pip install 'codonnt-eqx[finetune]')"
            ) from None
        table = pq.read_table(path)
        return {
            name: ["" if v is None else str(v) for v in table.column(name).to_pylist()]
            for name in table.column_names
        }
    delimiter = "\t" if path.name.lower().removesuffix(".gz").endswith(".tsv") else ","
    with _text(path) as f:
        reader = csv.reader(f, delimiter=delimiter)
        try:
            header = next(reader)
        except StopIteration:
            raise TaskError(f"{path} is empty") from None
        header = [h.strip().lstrip("\ufeff") for h in header]
        rows = list(reader)
    out: dict[str, list[str]] = {h: [] for h in header}
    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise TaskError(f"{path}, row {i + 1}: {len(row)} fields, the header has {len(header)}")
        for h, v in zip(header, row, strict=True):
            out[h].append(v)
    return out


def _pick(path, table, given: str | None, candidates: tuple[str, ...], what: str) -> str | None:
    if given is not None:
        if given not in table:
            raise TaskError(f"{path}: no column {given!r} (columns: {list(table)})")
        return given
    lowered = {c.lower(): c for c in table}
    for c in candidates:
        if c in lowered:
            return lowered[c]
    if what == "split":
        return None
    raise TaskError(
        f"{path}: no {what} column (looked for {list(candidates)}; columns: {list(table)}); "
        f"name it with --{what}-column"
    )


def _read_table(path, splits: dict[str, _Rows], split: str | None, columns) -> None:
    table = _columns_of(path)
    seq_col = _pick(path, table, columns[0], _SEQUENCE_COLUMNS, "sequence")
    label_col = _pick(path, table, columns[1], _LABEL_COLUMNS, "label")
    split_col = None
    if split is None:
        split_col = _pick(path, table, columns[2], _SPLIT_COLUMNS, "split")
        if split_col is None:
            raise TaskError(
                f"{path}: no split column (looked for {list(_SPLIT_COLUMNS)}); add one, name it "
                "with --split-column, or give one file per split"
            )
    assert seq_col is not None and label_col is not None  # _pick raises when it finds none
    for i, (seq, label) in enumerate(zip(table[seq_col], table[label_col], strict=True)):
        row_split = split
        if split_col is not None:
            value = table[split_col][i].strip().lower()
            row_split = _SPLIT_NAMES.get(value)
            if row_split is None:
                raise TaskError(
                    f"{path}, row {i + 1}: split {table[split_col][i]!r} is not one of "
                    "train / val / validation / test"
                )
        assert row_split is not None  # a split argument or a split column, checked above
        rows = splits[row_split]
        rows.sequences.append(seq)
        rows.labels.append(label)
        rows.names.append(f"{path.name}:{i + 1}")


def _read_fasta_labels(path: pathlib.Path, rows: _Rows) -> None:

    for i, record in enumerate(read_fasta(path)):
        # read_fasta splits the header at the first space into name and description.
        header = record.name if not record.description else f"{record.name} {record.description}"
        rows.sequences.append(record.sequence)
        rows.labels.append(header)
        rows.names.append(f"{path.name}:record {i + 1}")


def _carve(train: _Rows, fraction: float, seed: int) -> tuple[_Rows, _Rows]:
    n = len(train.sequences)
    take = max(1, int(round(n * fraction)))
    if take >= n:
        raise TaskError(f"{n} training examples are too few to hold out a validation split")
    order = np.random.default_rng(seed).permutation(n)
    held, kept = sorted(order[:take].tolist()), sorted(order[take:].tolist())

    def pick(idx):
        return _Rows(
            [train.sequences[i] for i in idx],
            [train.labels[i] for i in idx],
            [train.names[i] for i in idx],
        )

    return pick(kept), pick(held)


def _parse(name: str, kind: TaskKind, splits: dict[str, _Rows]) -> Task:
    sequences = {
        s: [_clean(q, n) for q, n in zip(r.sequences, r.names, strict=True)]
        for s, r in splits.items()
    }
    classes = None
    if kind == "regression":
        labels = {s: _numbers(r) for s, r in splits.items()}
    elif kind == "classification":
        texts = {s: [label.strip() for label in r.labels] for s, r in splits.items()}
        classes = tuple(sorted(set(texts["train"])))
        if len(classes) < 2:
            raise TaskError(f"{name}: the training split has {len(classes)} class(es); need 2+")
        index = {c: i for i, c in enumerate(classes)}
        labels = {}
        for s, r in splits.items():
            unknown = [(n, t) for n, t in zip(r.names, texts[s], strict=True) if t not in index]
            if unknown:
                raise TaskError(
                    f"{unknown[0][0]}: class {unknown[0][1]!r} does not occur in the training split"
                )
            labels[s] = np.asarray([index[t] for t in texts[s]], dtype=np.int32)
    else:
        texts = {s: [label.strip() for label in r.labels] for s, r in splits.items()}
        # The residue alphabet of every split: a class that is rare enough to miss the
        # training split is still a class, not a typo.
        classes = tuple(sorted(set("".join(t for split in texts.values() for t in split))))
        index = {c: i for i, c in enumerate(classes)}
        labels = {}
        for s, r in splits.items():
            labels[s] = tuple(
                _residue_labels(q, t, index, n)
                for q, t, n in zip(sequences[s], texts[s], r.names, strict=True)
            )
    return Task(
        name,
        kind,
        *(TaskSplit(tuple(sequences[s]), labels[s], tuple(splits[s].names)) for s in SPLITS),
        classes=classes,
    )


def _clean(sequence: str, where: str) -> str:
    seq = "".join(sequence.split()).upper()
    if not seq:
        raise TaskError(f"{where}: empty sequence")
    return seq


def _numbers(rows: _Rows) -> np.ndarray:
    out = np.empty(len(rows.labels), dtype=np.float64)
    for i, (label, where) in enumerate(zip(rows.labels, rows.names, strict=True)):
        try:
            out[i] = float(label)
        except ValueError:
            raise TaskError(f"{where}: regression label {label!r} is not a number") from None
        if not math.isfinite(out[i]):
            raise TaskError(f"{where}: regression label {label!r} is not finite")
    return out


def _residue_labels(seq: str, label: str, index: dict[str, int], where: str) -> np.ndarray:
    """One class index per codon; -1 for a terminal stop codon without a label."""
    bad = next((i for i, c in enumerate(seq) if c not in "ACGT"), None)
    if bad is not None:
        raise TaskError(
            f"{where}: base {seq[bad]!r} at position {bad}; per-residue tasks need A/C/G/T only "
            "(an ambiguous base becomes a token of its own and shifts every later residue)"
        )
    if len(seq) % 3:
        raise TaskError(
            f"{where}: CDS of {len(seq)} bases is not a whole number of codons, so codons "
            "cannot be matched to residues"
        )
    codons = len(seq) // 3
    stop = codons == len(label) + 1 and seq[-3:] in STOP_CODONS
    if codons != len(label) and not stop:
        raise TaskError(
            f"{where}: {codons} codons but {len(label)} residue labels (one label per codon, "
            "or one fewer when the CDS ends with a stop codon)"
        )
    out = np.full(codons, -1, dtype=np.int32)
    out[: len(label)] = [index[c] for c in label]
    return out

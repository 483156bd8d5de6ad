"""Downstream task data: coding sequences with a scalar, a class, or a label per residue.

Reads the layouts the protein benchmarks ship in: a table (CSV, TSV or parquet) with the
sequence, the label and the split in columns; one file per split (`train.*`, `val.*`,
`test.*`); or a task folder as `InstaDeepAI/true-cds-protein-tasks` publishes it
(`{task}/train.fna`, `val.fna`, `test.fna`, FASTA with the label after the header's last `|`;
secondary structure has further named test sets, kept apart).
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import math
import os
import pathlib
import re
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
_TABLE_SUFFIXES = (".csv", ".tsv", ".parquet")
_EXTRA_TEST = re.compile(r"^(?:test[_.-](?P<a>.+)|(?P<b>.+)[_.-]test)$")


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

    Per-residue classes are the single characters of every split (3 for DSSP3 `H E C`, 8 for
    DSSP8 `H B E G I T S C`, whatever the files hold); sequence classes are the training
    split's label strings as written (a class seen only outside it raises). Both are sorted,
    so a class index is the same in every split.

    `extra_tests`: further named test sets (secondary structure's CB513, TS115, CASP12 ...),
    each evaluated and reported on its own; when a task has no `test` file, `test` is all of
    them together.
    """

    name: str
    kind: TaskKind
    train: TaskSplit
    validation: TaskSplit
    test: TaskSplit
    classes: tuple[str, ...] | None = None
    extra_tests: tuple[tuple[str, TaskSplit], ...] = ()

    @property
    def num_outputs(self) -> int:
        return 1 if self.kind == "regression" else len(self.classes or ())

    def split(self, name: str) -> TaskSplit:
        """`train`, `validation`, `test`, or `test:NAME` for an extra test set."""
        if name.startswith("test:"):
            extra = dict(self.extra_tests)
            if name[5:] in extra:
                return extra[name[5:]]
        return {"train": self.train, "validation": self.validation, "test": self.test}[name]

    @property
    def split_names(self) -> tuple[str, ...]:
        """Every split's name: the three, then `test:NAME` per extra test set."""
        return (*SPLITS, *(f"test:{name}" for name, _ in self.extra_tests))

    def describe(self) -> str:
        sizes = ", ".join(f"{len(self.split(s))} {s}" for s in self.split_names)
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
    label_field: int | None = None,
    label_pattern: str | None = None,
    validation_fraction: float = 0.1,
    seed: int = 0,
) -> Task:
    """Load a task from a task folder, a table with a split column, or one file per split.

    **Arguments:**

    - `paths`: a task folder (InstaDeep's true-CDS layout: `train.fna`, `val.fna`,
      `test.fna`; any other FASTA or table in it, e.g. `cb513.fna` or `test_casp12.fna`, is an
      extra test set reported on its own); one table (`.csv`, `.tsv`, `.parquet`, optionally
      gzipped text) whose split column says `train` / `val(idation)` / `test`; or several
      files, each named for its split (`train.csv`, `val.fna`, `test_cb513.fna`, ...).
    - `kind`: `"regression"` (a number), `"classification"` (a class name), or
      `"per-residue"` (a string with one class character per codon).
    - `sequence_column`, `label_column`, `split_column`: table column names; by default the
      first of `sequence`/`seq`/`cds`/`dna`, `label`/`labels`/`target`/`y`/`value`,
      `split`/`set`/`fold`.
    - `label_field`, `label_pattern`: where a FASTA header holds the label. By default it is
      the text after the header's last `|` (`>P12345|0.83`, as InstaDeep's task files write
      it); `label_field=i` takes the i-th `|`-separated field instead (0-based, negative from
      the end), `label_pattern` a regular expression's first group (or whole match). A header
      without a label is a `TaskError` naming the file and line.
    - `validation_fraction`, `seed`: without a validation split, this share of the training
      examples (chosen at random with `seed`) becomes it, as the benchmark suggests for its
      secondary-structure task.

    Per residue, one codon is one residue: the CDS length must be a multiple of 3 and its
    codon count must equal the label length, or exceed it by exactly one terminal stop codon
    (TAA, TAG, TGA), which is then kept in the input without a label. Anything else, and any
    base other than A/C/G/T (an N would become a token of its own and shift every later
    residue), raises `TaskError` naming the file and row. So do labels that are not finite in
    float32 (the dtype training uses) and degenerate tasks: regression labels all equal in a
    split, or a single class.

    **Returns:** a `Task`.

    ```python
    task = load_task("true-cds-protein-tasks/fluorescence", "regression")
    task = load_task("true-cds-protein-tasks/ssp", "per-residue")  # + its named test sets
    task = load_task("fluorescence.csv", "regression")
    ```
    """
    if kind not in TASK_KINDS:
        raise ValueError(f"kind must be one of {TASK_KINDS}, got {kind!r}")
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    if label_field is not None and label_pattern is not None:
        raise ValueError("give label_field or label_pattern, not both")
    if label_field is not None and (
        isinstance(label_field, bool) or not isinstance(label_field, int)
    ):
        raise ValueError(f"label_field must be an integer, got {label_field!r}")
    pattern = None
    if label_pattern is not None:
        try:
            pattern = re.compile(label_pattern)
        except re.error as e:
            raise ValueError(
                f"label_pattern {label_pattern!r} is not a regular expression ({e})"
            ) from None
    labeller = _HeaderLabel(label_field, pattern)
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    paths = [pathlib.Path(p) for p in paths]
    if not paths:
        raise ValueError("no task files given")
    folder = paths[0] if len(paths) == 1 and paths[0].is_dir() else None
    if folder is not None:
        paths = _task_files(folder)
    columns = (sequence_column, label_column, split_column)
    splits: dict[str, _Rows] = {s: _Rows([], [], []) for s in SPLITS}
    if len(paths) == 1 and _split_of(paths[0]) is None and folder is None:
        _read_table(paths[0], splits, None, columns)
    else:
        for path in paths:
            split = _split_of(path) or _extra_test_of(path, folder is not None)
            if split is None:
                raise TaskError(
                    f"{path}: with several files, each must be named for its split "
                    "(train.*, val.* / validation.*, test.*, or test_NAME.* for an extra test set)"
                )
            if split in splits and split.startswith("test:"):
                raise TaskError(f"{path}: a second file for the test set {split[5:]!r}")
            rows = splits.setdefault(split, _Rows([], [], []))
            if _is_fasta(path):
                _read_fasta_labels(path, rows, labeller)
            else:
                _read_table(path, splits, split, columns)
    extras = [s for s in splits if s.startswith("test:")]
    if not splits["test"].sequences and extras:  # the named test sets, together
        for s in extras:
            splits["test"].sequences.extend(splits[s].sequences)
            splits["test"].labels.extend(splits[s].labels)
            splits["test"].names.extend(splits[s].names)
    where = str(folder) if folder is not None else ", ".join(map(str, paths))
    for split in ("train", "test", *extras):
        if not splits[split].sequences:
            raise TaskError(f"no {split} examples in {where}")
    if not splits["validation"].sequences:
        splits["train"], splits["validation"] = _carve(splits["train"], validation_fraction, seed)
    name = name or (folder.resolve().name if folder is not None else _task_name(paths))
    return _parse(name, kind, splits)


def _task_files(folder: pathlib.Path) -> list[pathlib.Path]:
    """The data files of a task folder: FASTA files and tables (hidden files, READMEs and
    scripts are not data); two files for one split are an error."""
    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and (_is_fasta(p) or _is_table(p))
    )
    if not files:
        raise TaskError(
            f"{folder}: no task files (FASTA {', '.join(_FASTA_SUFFIXES)} or tables "
            f"{', '.join(_TABLE_SUFFIXES)}, e.g. train.fna, val.fna, test.fna)"
        )
    seen: dict[str, pathlib.Path] = {}
    for path in files:
        split = _split_of(path) or _extra_test_of(path, True)
        if split in seen:
            raise TaskError(
                f"{folder}: two files for the {split} split: {seen[split].name}, {path.name}"
            )
        seen[str(split)] = path
    if "train" not in seen:
        raise TaskError(
            f"{folder}: no training file (train.fna, train.csv, ...) among "
            f"{[f.name for f in files]}"
        )
    return files


def _is_table(path: pathlib.Path) -> bool:
    return path.name.lower().removesuffix(".gz").endswith(_TABLE_SUFFIXES)


def _stem(path: pathlib.Path) -> str:
    stem = path.name.lower()
    for suffix in (".gz", *_TABLE_SUFFIXES, *_FASTA_SUFFIXES):
        stem = stem.removesuffix(suffix)
    return stem


def _extra_test_of(path: pathlib.Path, in_folder: bool) -> str | None:
    """`test:NAME` for an extra test set: `test_NAME.*` / `NAME_test.*` anywhere, and any
    other data file of a task folder (`cb513.fna`)."""
    stem = _stem(path)
    match = _EXTRA_TEST.match(stem)
    if match:
        return f"test:{match['a'] or match['b']}"
    return f"test:{stem}" if in_folder else None


@dataclasses.dataclass(frozen=True)
class _HeaderLabel:
    """Where a FASTA header holds the label: after the last `|` (default), in `|`-field
    `field`, or in `pattern`'s first group."""

    field: int | None
    pattern: re.Pattern | None

    def __call__(self, header: str, where: str) -> str:
        if self.pattern is not None:
            match = self.pattern.search(header)
            if match is None:
                raise TaskError(
                    f"{where}: header does not match the label pattern {self.pattern.pattern!r}"
                )
            label = match.group(1) if match.re.groups else match.group(0)
        elif self.field is not None:
            fields = header.split("|")
            if not -len(fields) <= self.field < len(fields):
                raise TaskError(
                    f"{where}: header has {len(fields)} '|'-separated field(s), no field "
                    f"{self.field}"
                )
            label = fields[self.field]
        else:
            if "|" not in header:
                raise TaskError(
                    f"{where}: header {header[:60]!r} has no label (expected >NAME|LABEL; "
                    "--label-field / --label-pattern read other layouts)"
                )
            label = header.rsplit("|", 1)[1]
        label = label.strip()
        if not label:
            raise TaskError(f"{where}: empty label in header {header[:60]!r}")
        return label


def _split_of(path: pathlib.Path) -> str | None:
    return _SPLIT_NAMES.get(_stem(path))


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


def _read_fasta_labels(path: pathlib.Path, rows: _Rows, labeller: _HeaderLabel) -> None:
    for record in read_fasta(path):
        # read_fasta splits the header at the first space into name and description.
        header = record.name if not record.description else f"{record.name} {record.description}"
        where = f"{path}, line {record.line}"
        rows.labels.append(labeller(header, where))
        rows.sequences.append(record.sequence)
        rows.names.append(f"{path.name}:{record.line}")


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
        for s, values in labels.items():
            if len(values) > 1 and np.all(values.astype(np.float32) == np.float32(values[0])):
                raise TaskError(
                    f"{name}: all {len(values)} {s} labels are {values[0]:g} (in float32, the "
                    "training dtype); a task with constant labels has nothing to learn or rank"
                )
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
        if len(classes) < 2:
            raise TaskError(f"{name}: every residue label is {classes}; need 2+ classes")
        index = {c: i for i, c in enumerate(classes)}
        labels = {}
        for s, r in splits.items():
            labels[s] = tuple(
                _residue_labels(q, t, index, n)
                for q, t, n in zip(sequences[s], texts[s], r.names, strict=True)
            )

    def split(s: str) -> TaskSplit:
        return TaskSplit(tuple(sequences[s]), labels[s], tuple(splits[s].names))

    extras = tuple((s[5:], split(s)) for s in splits if s.startswith("test:"))
    return Task(name, kind, *(split(s) for s in SPLITS), classes=classes, extra_tests=extras)


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
        if not math.isfinite(out[i]) or abs(out[i]) > float(np.finfo(np.float32).max):
            raise TaskError(
                f"{where}: regression label {label!r} is not finite in float32 (the training "
                f"dtype; |label| <= {float(np.finfo(np.float32).max):.3g})"
            )
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

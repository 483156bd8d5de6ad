"""Sequences to predict on: a FASTA file, or a task table's sequence column (labels kept)."""

from __future__ import annotations

import os
import pathlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass

from ..io import iter_fasta
from ._tasks import (
    _LABEL_COLUMNS,
    _SEQUENCE_COLUMNS,
    TaskError,
    _columns_of,
    _is_fasta,
    _is_table,
    _pick,
)

_NAME_COLUMNS = ("name", "id", "sequence_name", "seq_id", "gene", "record")


@dataclass(frozen=True)
class LabelledSequence:
    """One input row: its name, its DNA and, from a table with a label column, its label."""

    name: str
    sequence: str
    label: str | None = None


def read_sequences(
    path: str | os.PathLike,
    *,
    sequence_column: str | None = None,
    name_column: str | None = None,
    label_column: str | None = None,
) -> Iterator[LabelledSequence]:
    """The sequences of a FASTA file (plain or gzipped; `-` is standard input) or of a task
    table (.csv/.tsv/.parquet, gzipped text allowed).

    A table's sequence, name and label columns are found like `load_task`'s (or named); rows
    without a name column are named `FILE:ROW`, and the label is kept when there is one, so
    predictions can be laid beside it. FASTA records keep their header's first word.
    """
    if str(path) == "-":
        for record in iter_fasta(sys.stdin.buffer):
            yield LabelledSequence(record.name, record.sequence)
        return
    path = pathlib.Path(path)
    if not path.is_file():
        raise TaskError(f"{path}: no such file")
    if _is_table(path):
        table = _columns_of(path)
        seq_col = _pick(path, table, sequence_column, _SEQUENCE_COLUMNS, "sequence")
        assert seq_col is not None  # _pick raises when it finds none
        name_col = _optional(path, table, name_column, _NAME_COLUMNS)
        label_col = _optional(path, table, label_column, _LABEL_COLUMNS)
        for i, seq in enumerate(table[seq_col]):
            name = table[name_col][i] if name_col else f"{path.name}:{i + 1}"
            label = table[label_col][i] if label_col else None
            yield LabelledSequence(name, seq.strip(), label)
        return
    if not _is_fasta(path) and any(c in path.name.lower() for c in (".csv", ".tsv", ".parquet")):
        raise TaskError(f"{path}: not a .csv, .tsv or .parquet table")
    for record in iter_fasta(path):  # anything else is read as FASTA (its errors say why not)
        yield LabelledSequence(record.name, record.sequence)


def _optional(path, table, given: str | None, candidates: tuple[str, ...]) -> str | None:
    if given is not None:
        return _pick(path, table, given, candidates, "name")
    lowered = {c.lower(): c for c in table}
    return next((lowered[c] for c in candidates if c in lowered), None)

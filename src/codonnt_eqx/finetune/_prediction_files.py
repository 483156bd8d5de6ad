"""Writing predictions to a table: TSV/CSV (or standard output) and parquet, atomically.

One row per sequence: `name`, `prediction` (a number for regression, the class name
otherwise), `label` when the input had labels, and `p_<class>` per class for classification.
Per-residue tasks get one row per codon token: `name`, `token` (0-based), `start`, `end`
(nucleotides, 0-based, end exclusive), `prediction`, `p_<class>`...
"""

from __future__ import annotations

import contextlib
import csv
import os
import pathlib
import sys
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from ..io import atomic_output
from ._predictor import Prediction

PREDICTION_FORMATS = (".tsv", ".csv", ".txt", ".parquet")
_ROW_GROUP = 4096


def prediction_format(path: str | os.PathLike) -> str:
    """The output's format from its name (`-` is TSV on standard output); a clear error for
    an unknown suffix or parquet without pyarrow, before any work."""
    if str(path) == "-":
        return ".tsv"
    suffix = pathlib.Path(path).suffix.lower()
    if suffix not in PREDICTION_FORMATS:
        raise ValueError(f"{path}: unknown output format; name it *.tsv, *.csv or *.parquet")
    if suffix == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ValueError(
                "writing .parquet needs pyarrow: pip install 'codonnt-eqx[embed]'"
            ) from None
    return suffix


def prediction_columns(kind: str, classes: Sequence[str] | None, labels: bool) -> list[str]:
    """The header of a prediction table for this task kind."""
    first = ["name", "token", "start", "end"] if kind == "per-residue" else ["name"]
    probs = [f"p_{c}" for c in classes] if kind != "regression" and classes else []
    return [*first, "prediction", *(["label"] if labels else []), *probs]


def prediction_rows(
    predictions: Iterable[tuple[Prediction, str | None]], kind: str
) -> Iterator[list]:
    """Table rows of (prediction, label or None) pairs, in `prediction_columns` order."""
    for p, label in predictions:
        extra = [] if label is None else [label]
        if kind == "per-residue":
            assert p.probabilities is not None and p.spans is not None
            assert isinstance(p.prediction, np.ndarray)
            for i in range(len(p.prediction)):
                start, end = (int(v) for v in p.spans[i])
                probs = map(float, p.probabilities[i])
                yield [p.name, i, start, end, p.prediction[i], *extra, *probs]
        elif p.probabilities is None:
            yield [p.name, p.prediction, *extra]
        else:
            yield [p.name, p.prediction, *extra, *map(float, p.probabilities)]


def write_predictions(path: str | os.PathLike, columns: list[str], rows: Iterable[list]) -> int:
    """Write `rows` under `columns` to `path` (`.tsv`/`.txt`, `.csv`, `.parquet`, or `-` for
    standard output), atomically for files. **Returns:** rows written."""
    suffix = prediction_format(path)
    if suffix == ".parquet":
        with atomic_output(path) as tmp:
            return _write_parquet(tmp, columns, rows)
    delimiter = "," if suffix == ".csv" else "\t"
    if str(path) == "-":
        return _write_text(sys.stdout, columns, rows, delimiter)
    with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        return _write_text(f, columns, rows, delimiter)


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _write_text(f, columns: list[str], rows: Iterable[list], delimiter: str) -> int:
    writer = csv.writer(f, delimiter=delimiter, lineterminator="\n")
    writer.writerow(columns)
    count = 0
    for row in rows:
        writer.writerow([_cell(v) for v in row])
        count += 1
    return count


def _write_parquet(tmp: pathlib.Path, columns: list[str], rows: Iterable[list]) -> int:
    # optional (the finetune extra): only .parquet outputs need it
    import pyarrow as pa
    import pyarrow.parquet as pq  # optional, as above

    count, batch = 0, []
    with contextlib.ExitStack() as stack:
        writer = None

        def flush():
            nonlocal writer
            table = pa.table({c: [r[i] for r in batch] for i, c in enumerate(columns)})
            if writer is None:
                writer = stack.enter_context(pq.ParquetWriter(tmp, table.schema))
            writer.write_table(table)
            batch.clear()

        for row in rows:
            batch.append(row)
            count += 1
            if len(batch) >= _ROW_GROUP:
                flush()
        if batch or writer is None:
            if not batch:  # an empty table still has its columns (as strings)
                table = pa.table({c: pa.array([], pa.string()) for c in columns})
                stack.enter_context(pq.ParquetWriter(tmp, table.schema)).write_table(table)
            else:
                flush()
    return count

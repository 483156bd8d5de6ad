"""Writing embeddings to files other tools open: `.npz` (NumPy) and `.parquet` (pyarrow).

Both are written as results stream in (memory holds one chunk of sequences) and appear
atomically: a failure or Ctrl-C leaves no file, or the previous one, behind.

`.npz` arrays, pooled: `names` [n] str, `lengths` [n] (bases), `num_tokens` [n],
`embeddings` [n, (layers,) embed] float32. Per token: `names`, `lengths`, `num_tokens`,
`offsets` [n + 1] (sequence i's tokens are rows `offsets[i]:offsets[i + 1]`),
`token_embeddings` [tokens, (layers,) embed], `token_spans` [tokens, 2] ((start, end) in the
sequence, 0-based, end exclusive). With several layers, `layers` [layers] names them.

`.parquet`, one row per sequence: `name`, `length`, `num_tokens`, then `vector` (a
fixed-size list of floats) or, with several layers, one `layer_<i>` column each; per token,
lists of vectors and a `token_spans` list of (start, end) pairs.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Sequence

import numpy as np

from ..inference import SequenceEmbedding
from ._atomic_file import atomic_output

FORMATS = (".npz", ".parquet")
_ROW_GROUP = 1024  # parquet rows per group: bounds memory while writing
_NUMPY = {"str": np.str_, "int64": np.int64}  # the kinds of extra columns


def output_format(path: str | os.PathLike) -> str:
    suffix = pathlib.Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"{path}: unknown output format; name it *.npz or *.parquet")
    if suffix == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ValueError(
                "writing .parquet needs pyarrow: pip install 'codonnt-eqx[embed]'"
            ) from None
    return suffix


def write_embeddings(
    path: str | os.PathLike,
    results: Iterable[SequenceEmbedding],
    *,
    layers: Sequence[int] | None = None,
    per_token: bool = False,
) -> int:
    """Write `results` (e.g. an `Embedder`'s) to `path` (`.npz` or `.parquet`), atomically.

    `layers` is recorded when the vectors have a layer axis. **Returns:** sequences written.
    """
    return write_rows(path, ((r, ()) for r in results), layers=layers, per_token=per_token)


def write_rows(
    path: str | os.PathLike,
    rows: Iterable[tuple[SequenceEmbedding, tuple]],
    *,
    layers: Sequence[int] | None = None,
    per_token: bool = False,
    extra_columns: Sequence[tuple[str, str]] = (),
) -> int:
    """`write_embeddings` of rows that carry more values beside their embedding: one per
    `extra_columns` entry `(name, kind)` (kind `"str"` or `"int64"`), written as `.parquet`
    columns after `name` and as `.npz` arrays named in the plural (`chrom` -> `chroms`)."""
    writer = {".npz": _write_npz, ".parquet": _write_parquet}[output_format(path)]
    with atomic_output(path) as tmp:
        return writer(tmp, rows, layers, per_token, extra_columns)


class _Spool:
    """Rows of one array appended to a temporary file, later copied into the .npz."""

    def __init__(self, folder: pathlib.Path):
        self.file = tempfile.TemporaryFile(dir=folder)
        self.rows, self.tail, self.dtype = 0, None, None

    def append(self, rows: np.ndarray) -> None:
        if self.tail is None:
            self.tail, self.dtype = rows.shape[1:], rows.dtype
        self.file.write(np.ascontiguousarray(rows, self.dtype).tobytes())
        self.rows += len(rows)

    def copy_into(self, archive: zipfile.ZipFile, name: str, empty_tail=()) -> None:
        header = {
            "descr": np.lib.format.dtype_to_descr(np.dtype(self.dtype or np.float32)),
            "fortran_order": False,
            "shape": (self.rows, *(self.tail if self.tail is not None else empty_tail)),
        }
        with archive.open(f"{name}.npy", "w", force_zip64=True) as out:
            np.lib.format.write_array_header_2_0(out, header)
            self.file.seek(0)
            shutil.copyfileobj(self.file, out, 1 << 22)
        self.file.close()


def _write_npz(tmp: pathlib.Path, rows, layers, per_token, extra_columns) -> int:
    names, lengths, num_tokens = [], [], []
    extra: list[tuple] = []
    vectors, spans = _Spool(tmp.parent), _Spool(tmp.parent)
    try:
        for r, values in rows:
            extra.append(values)
            names.append(r.name)
            lengths.append(r.length)
            num_tokens.append(r.num_tokens)
            vectors.append(r.vectors if per_token else r.vectors[None])
            if per_token:
                spans.append(r.spans.astype(np.int64))
        small = {
            "names": np.array(names, dtype=str),
            "lengths": np.array(lengths, np.int64),
            "num_tokens": np.array(num_tokens, np.int64),
        }
        if per_token:
            small["offsets"] = np.r_[0, np.cumsum(small["num_tokens"])].astype(np.int64)
        if layers is not None:
            small["layers"] = np.array(layers, np.int64)
        for j, (column, kind) in enumerate(extra_columns):
            small[f"{column}s"] = np.array([values[j] for values in extra], _NUMPY[kind])
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as z:
            for key, array in small.items():
                with z.open(f"{key}.npy", "w", force_zip64=True) as out:
                    np.lib.format.write_array(out, array, allow_pickle=False)
            if per_token:
                vectors.copy_into(z, "token_embeddings")
                spans.copy_into(z, "token_spans", empty_tail=(2,))
            else:
                vectors.copy_into(z, "embeddings")
    finally:
        vectors.file.close()
        spans.file.close()
    return len(names)


def _write_parquet(tmp: pathlib.Path, rows, layers, per_token, extra_columns) -> int:
    # optional (the embed extra): only .parquet outputs need it
    import pyarrow as pa
    import pyarrow.parquet as pq  # (the same extra)

    writer, batch, count = None, [], 0
    kinds = {"str": pa.string(), "int64": pa.int64()}

    def flush():
        nonlocal writer
        table = _arrow_table([r for r, _ in batch], layers, per_token)
        for j, (column, kind) in enumerate(extra_columns):
            values = pa.array([v[j] for _, v in batch], kinds[kind])
            table = table.add_column(1 + j, column, values)
        if writer is None:
            writer = pq.ParquetWriter(tmp, table.schema)
        writer.write_table(table)
        batch.clear()

    try:
        for row in rows:
            batch.append(row)
            count += 1
            if len(batch) >= _ROW_GROUP:
                flush()
        if batch:
            flush()
        elif writer is None:  # nothing embedded: still a valid, empty table
            fields = _empty_fields(pa)
            fields[1:1] = [(column, kinds[kind]) for column, kind in extra_columns]
            writer = pq.ParquetWriter(tmp, pa.schema(fields))
    finally:
        if writer is not None:
            writer.close()
    return count


def _empty_fields(pa):
    return [("name", pa.string()), ("length", pa.int64()), ("num_tokens", pa.int64())]


def _arrow_table(batch: list[SequenceEmbedding], layers, per_token):
    import pyarrow as pa  # optional (the embed extra)

    columns = {
        "name": pa.array([r.name for r in batch], pa.string()),
        "length": pa.array([r.length for r in batch], pa.int64()),
        "num_tokens": pa.array([r.num_tokens for r in batch], pa.int64()),
    }
    several = layers is not None
    names = [f"layer_{i}" for i in layers] if several else ["vector"]
    for j, column in enumerate(names):
        if per_token:
            parts = [r.vectors[:, j] if several else r.vectors for r in batch]
            columns[column] = _token_lists(pa, parts, pa.float32())
        else:
            flat = np.stack([r.vectors[j] if several else r.vectors for r in batch])
            columns[column] = _fixed_lists(pa, flat.astype(np.float32))
    if per_token:
        spans = [np.asarray(r.spans) for r in batch]  # per-token results carry their spans
        columns["token_spans"] = _token_lists(pa, spans, pa.int64())
    return pa.table(columns)


def _fixed_lists(pa, rows: np.ndarray):
    """[n, width] -> n fixed-size lists of `width` values."""
    return pa.FixedSizeListArray.from_arrays(pa.array(rows.reshape(-1)), rows.shape[1])


def _token_lists(pa, parts: list[np.ndarray], value_type):
    """A list per sequence of its tokens' fixed-size lists ([tokens, width] each)."""
    offsets = np.r_[0, np.cumsum([len(p) for p in parts])].astype(np.int32)
    flat = np.concatenate(parts).astype(value_type.to_pandas_dtype())
    inner = pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1), value_type), flat.shape[1])
    return pa.ListArray.from_arrays(pa.array(offsets), inner)

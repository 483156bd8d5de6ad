"""Embeddings of BED regions to `.npz` / `.parquet`: the embedding files of `_embed_files`
with the regions' coordinates beside each row.

`.npz` adds `chroms` [n] str, `starts` [n], `ends` [n] (0-based, half-open, as in the BED)
and `strands` [n] str; `names` holds each region's name. `.parquet` adds `chrom`, `start`,
`end` and `strand` columns after `name`.
"""

from __future__ import annotations

import dataclasses
import os
import zipfile
from collections.abc import Iterable, Sequence

import numpy as np

from ..inference import SequenceEmbedding
from ._atomic_file import atomic_output
from ._bed import BedRegion
from ._embed_files import _ROW_GROUP, _arrow_table, _empty_fields, _write_npz, output_format


def write_region_embeddings(
    path: str | os.PathLike,
    results: Iterable[tuple[BedRegion, SequenceEmbedding]],
    *,
    layers: Sequence[int] | None = None,
    per_token: bool = False,
) -> int:
    """Write each region's embedding (named by the region) with its coordinates to `path`
    (`.npz` or `.parquet`), atomically, as `write_embeddings` does. **Returns:** rows
    written."""
    suffix = output_format(path)
    regions: list[BedRegion] = []

    def named():
        for region, result in results:
            regions.append(region)
            yield dataclasses.replace(result, name=region.name)

    with atomic_output(path) as tmp:
        if suffix == ".parquet":
            return _write_parquet(tmp, results, layers, per_token)
        count = _write_npz(tmp, named(), layers, per_token)
        columns = {
            "chroms": np.array([r.chrom for r in regions], dtype=str),
            "starts": np.array([r.start for r in regions], np.int64),
            "ends": np.array([r.end for r in regions], np.int64),
            "strands": np.array([r.strand for r in regions], dtype=str),
        }
        with zipfile.ZipFile(tmp, "a", compression=zipfile.ZIP_STORED, allowZip64=True) as z:
            for key, array in columns.items():
                with z.open(f"{key}.npy", "w", force_zip64=True) as out:
                    np.lib.format.write_array(out, array, allow_pickle=False)
        return count


def _write_parquet(tmp, results, layers, per_token) -> int:
    # optional (the embed extra): only .parquet outputs need it
    import pyarrow as pa
    import pyarrow.parquet as pq  # (the same extra)

    writer, batch, count = None, [], 0

    def flush():
        nonlocal writer
        table = _arrow_table(
            [dataclasses.replace(r, name=g.name) for g, r in batch], layers, per_token
        )
        for i, (column, values, kind) in enumerate(_region_columns(pa, [g for g, _ in batch])):
            table = table.add_column(1 + i, column, pa.array(values, kind))
        if writer is None:
            writer = pq.ParquetWriter(tmp, table.schema)
        writer.write_table(table)
        batch.clear()

    try:
        for item in results:
            batch.append(item)
            count += 1
            if len(batch) >= _ROW_GROUP:
                flush()
        if batch:
            flush()
        elif writer is None:  # nothing embedded: still a valid, empty table
            fields = _empty_fields(pa)
            fields[1:1] = [(c, kind) for c, _, kind in _region_columns(pa, [])]
            writer = pq.ParquetWriter(tmp, pa.schema(fields))
    finally:
        if writer is not None:
            writer.close()
    return count


def _region_columns(pa, regions: list[BedRegion]):
    return [
        ("chrom", [r.chrom for r in regions], pa.string()),
        ("start", [r.start for r in regions], pa.int64()),
        ("end", [r.end for r in regions], pa.int64()),
        ("strand", [r.strand for r in regions], pa.string()),
    ]

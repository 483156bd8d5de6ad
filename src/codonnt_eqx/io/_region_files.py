"""Embeddings of BED regions to `.npz` / `.parquet`: the embedding files of `_embed_files`
with the regions' coordinates beside each row.

`.npz` adds `chroms` [n] str, `starts` [n], `ends` [n] (0-based, half-open, as in the BED)
and `strands` [n] str; `names` holds each region's name. `.parquet` adds `chrom`, `start`,
`end` and `strand` columns after `name`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Sequence

from ..inference import SequenceEmbedding
from ._bed import BedRegion
from ._embed_files import write_rows

_COLUMNS = (("chrom", "str"), ("start", "int64"), ("end", "int64"), ("strand", "str"))


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
    rows = (
        (dataclasses.replace(r, name=g.name), (g.chrom, g.start, g.end, g.strand))
        for g, r in results
    )
    return write_rows(path, rows, layers=layers, per_token=per_token, extra_columns=_COLUMNS)

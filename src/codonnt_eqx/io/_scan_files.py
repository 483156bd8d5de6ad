"""Saturation scans out: one table for every record (TSV or parquet) and a heatmap PNG per
record (position x alternative, like the deep-mutational-scanning figures)."""

from __future__ import annotations

import os
import pathlib
import re
from collections.abc import Sequence

import numpy as np

from ..inference import SaturationScan
from ..tokenizers import CODON_TABLE
from ._atomic_file import atomic_output
from ._variant_files import _cell

SCAN_COLUMNS = (
    "name",
    "position",
    "ref",
    "alt",
    "variant_position",
    "variant_ref",
    "variant_alt",
    "score",
    "aa_score",
    "consequence",
    "mode",
    "method",
    "error",
)
SCAN_FORMATS = (".tsv", ".parquet")


def scan_table_format(path: str | os.PathLike) -> str:
    """`.tsv` or `.parquet` (checked to be writable here), from `path`'s suffix."""
    suffix = pathlib.Path(path).suffix.lower()
    if suffix not in SCAN_FORMATS:
        raise ValueError(f"{path}: unknown table format; name it *.tsv or *.parquet")
    if suffix == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ValueError(
                "writing .parquet needs pyarrow: pip install 'codonnt-eqx[embed]'"
            ) from None
    return suffix


def _columns(scans: Sequence[SaturationScan]) -> dict[str, list]:
    out: dict[str, list] = {c: [] for c in SCAN_COLUMNS}
    for s in scans:
        n = len(s.position)
        out["name"] += [s.name] * n
        out["position"] += s.position.tolist()
        out["ref"] += list(s.ref)
        out["alt"] += list(s.alt)
        out["variant_position"] += [v.position for v in s.variant]
        out["variant_ref"] += [v.ref for v in s.variant]
        out["variant_alt"] += [v.alt for v in s.variant]
        out["score"] += s.score.tolist()
        out["aa_score"] += s.aa_score.tolist()
        out["consequence"] += list(s.consequence)
        out["mode"] += [s.mode] * n
        out["method"] += [s.method] * n
        out["error"] += list(s.error)
    return out


def write_scan_table(path: str | os.PathLike, scans: Sequence[SaturationScan]) -> int:
    """Every row of `scans` in one table (`SCAN_COLUMNS`), `.tsv` or `.parquet` by suffix,
    written atomically; scores NaN (TSV: empty) where not defined. **Returns:** rows written.
    `position`/`ref`/`alt` are in the scan's unit (base, codon or amino acid); the
    `variant_*` columns give the nucleotide change that was scored (1-based)."""
    suffix = scan_table_format(path)
    columns = _columns(scans)
    with atomic_output(path) as tmp:
        if suffix == ".parquet":
            import pyarrow as pa  # optional (the embed extra)
            import pyarrow.parquet as pq  # (the same extra)

            pq.write_table(pa.table(columns), tmp)
        else:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write("\t".join(SCAN_COLUMNS) + "\n")
                for row in zip(*columns.values(), strict=True):
                    f.write("\t".join(map(_cell, row)) + "\n")
    return len(columns["name"])


def heatmap_paths(folder: str | os.PathLike, names: Sequence[str]) -> list[pathlib.Path]:
    """A PNG path in `folder` per record name: the name made safe for a file name, made
    unique where two names become one."""
    folder = pathlib.Path(folder)
    out, used = [], set()
    for name in names:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "record"
        candidate, i = stem, 1
        while candidate.lower() in used:
            i += 1
            candidate = f"{stem}-{i}"
        used.add(candidate.lower())
        out.append(folder / f"{candidate}.png")
    return out


def plot_scan_heatmap(scan: SaturationScan, path: str | os.PathLike) -> pathlib.Path:
    """The scan as a heatmap PNG: alternatives down, positions across, coloured by the
    scan's `value` on a diverging scale centred on 0 (red: less likely than the reference,
    blue: more); each position's reference marked, cells without a score grey. Needs matplotlib
    (`pip install "codonnt-eqx[plot]"`)."""
    try:
        import matplotlib  # optional (the plot extra), and slow to import

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # after use("Agg"): no display needed
    except ImportError:
        raise ImportError('heatmaps need matplotlib: pip install "codonnt-eqx[plot]"') from None
    positions, alternatives, values = scan.matrix()
    finite = values[np.isfinite(values)]
    limit = float(np.percentile(np.abs(finite), 99)) if finite.size else 1.0
    limit = limit if limit > 0 else 1.0
    width = float(np.clip(0.09 * len(positions) + 2.5, 6, 40))
    height = {4: 2.6, 21: 5.0}.get(len(alternatives), 10.0)
    fig, ax = plt.subplots(figsize=(width, height), constrained_layout=True)
    cmap = plt.get_cmap("RdBu").with_extremes(bad="#d9d9d9")
    image = ax.imshow(
        np.ma.masked_invalid(values),
        aspect="auto",
        interpolation="nearest",
        cmap=cmap,
        vmin=-limit,
        vmax=limit,
    )
    if len(positions) <= 600:  # beyond that the dots are a grey smear
        refs = scan.reference_cells()
        if refs:
            ax.scatter([j for _, j in refs], [i for i, _ in refs], s=4, c="black", marker="o")
    ax.set_yticks(range(len(alternatives)))
    labels = list(alternatives)
    if scan.mode == "codon":
        labels = [f"{c} {CODON_TABLE[c]}" for c in alternatives]
    ax.set_yticklabels(labels, fontsize=8 if len(alternatives) <= 21 else 5, family="monospace")
    step = max(1, int(np.ceil(len(positions) / 40)))
    ticks = list(range(0, len(positions), step))
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(int(positions[t])) for t in ticks], rotation=90, fontsize=7)
    unit = "nucleotide" if scan.mode == "snv" else "codon"
    ax.set_xlabel(f"{unit} position (1-based)")
    ax.set_ylabel(f"alternative {dict(snv='base', codon='codon').get(scan.mode, 'amino acid')}")
    what = "amino-acid score" if scan.mode == "amino_acid" else "log-likelihood ratio"
    ax.set_title(f"{scan.name}: {scan.mode} saturation scan ({scan.method})", fontsize=10)
    fig.colorbar(image, ax=ax, label=f"{what} (nats)", fraction=0.03, pad=0.01)
    path = pathlib.Path(path)
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path

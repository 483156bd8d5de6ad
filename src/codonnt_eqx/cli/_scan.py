"""`codonnt-eqx scan`: saturation mutagenesis of each FASTA record, as a table and heatmaps."""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

from ..inference import SCAN_MODES, VARIANT_METHODS, scan
from ..io import (
    check_output_not_input,
    heatmap_paths,
    plot_scan_heatmap,
    scan_table_format,
    write_scan_table,
)
from ._options import add_fasta_input
from ._progress import progress, unique_records
from ._score import add_scorer_options, coding_choice, make_scorer


def add_scan_parser(commands) -> None:
    """The `scan` command."""
    p = commands.add_parser(
        "scan",
        help="saturation mutagenesis: every substitution of each record scored, as a table "
        "and a heatmap per record",
        description="Every SNV (--mode snv), every codon substitution (codon) or every "
        "amino-acid substitution (amino_acid, scored by the amino-acid score) of each record, "
        "scored zero-shot like `score --variants`; long records through the model's windows. "
        "Writes one table for all records and a heatmap PNG per record (position x "
        "alternative).",
    )
    add_fasta_input(p)
    p.add_argument("-o", "--output", required=True, help="table to write: .tsv or .parquet")
    p.add_argument("--mode", choices=SCAN_MODES, default="snv", help="what to substitute")
    p.add_argument(
        "--method",
        choices=VARIANT_METHODS,
        default="masked_marginal",
        help="masked_marginal (one masked pass per codon, shared by its substitutions; the "
        "default) or wildtype_marginal (one unmasked pass per window: fastest)",
    )
    p.add_argument(
        "--positions",
        type=_positions,
        help="1-based positions to scan, inclusive ranges and single positions, e.g. 10-200 "
        "or 1-30,45: nucleotides with --mode snv, codons (residues) otherwise",
    )
    p.add_argument(
        "--coding",
        default="auto",
        choices=["auto", "yes", "no"],
        help="are the records in-frame CDSs (consequence and aa_score columns)? auto: "
        "start..stop, length 3n; --mode amino_acid treats them as coding",
    )
    p.add_argument(
        "--heatmaps",
        help="folder for the heatmap PNGs, one per record (default: OUTPUT's name without "
        "its suffix, plus _heatmaps)",
    )
    p.add_argument(
        "--no-heatmaps", action="store_true", help="write the table only (no matplotlib needed)"
    )
    add_scorer_options(p)
    p.set_defaults(run=_scan_command)


def _positions(text: str) -> list[int]:
    """`10-200`, `5`, `1-30,45` -> the sorted 1-based positions."""
    out: set[int] = set()
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        try:
            first, last = int(lo), int(hi) if sep else int(lo)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r}: give positions as ranges and numbers, e.g. 10-200 or 1-30,45"
            ) from None
        if first < 1 or last < first:
            raise argparse.ArgumentTypeError(
                f"{part.strip()!r}: positions are 1-based and a range runs low-high"
            )
        out.update(range(first, last + 1))
    return sorted(out)


def _scan_command(args: argparse.Namespace) -> None:
    """`codonnt-eqx scan FASTA -o OUT.tsv [--mode snv|codon|amino_acid] [--positions A-B]`."""
    scan_table_format(args.output)  # a bad suffix or a missing pyarrow: before any work
    output = pathlib.Path(args.output)
    folder = None
    if not args.no_heatmaps:
        try:
            import matplotlib  # noqa: F401  (the plot extra)
        except ImportError:
            raise ValueError(
                'heatmaps need matplotlib: pip install "codonnt-eqx[plot]", or --no-heatmaps'
            ) from None
        folder = pathlib.Path(args.heatmaps or output.with_name(output.stem + "_heatmaps"))
    elif args.heatmaps:
        raise ValueError("--heatmaps and --no-heatmaps contradict each other: give one")
    check_output_not_input(args.output, [args.fasta])
    records = unique_records(args)
    if not records:
        raise ValueError(f"{args.fasta}: no records to scan")
    scorer = make_scorer(args)
    start = time.perf_counter()
    scans = []
    unit = 1 if args.mode == "snv" else 3
    clipped = []
    for record in records:
        count = len(record.sequence) // unit
        positions = args.positions
        if positions is not None:  # one range for records of many lengths: what each has
            positions = [p for p in positions if p <= count]
            if len(positions) < len(args.positions):
                clipped.append(f"{record.name} ({count} {'bp' if unit == 1 else 'codons'})")
            if not positions:
                continue
        bar = progress("position", len(positions) if positions is not None else count)
        if bar is not None:
            bar.set_description(record.name[:30])
        last = 0

        def advance(done: int, bar=bar) -> None:
            nonlocal last
            if bar is not None:
                bar.update(done - last)
            last = done

        try:
            scans.append(
                scan(
                    scorer,
                    record,
                    mode=args.mode,
                    positions=positions,
                    method=args.method,
                    coding=coding_choice(args),
                    on_progress=advance,
                )
            )
        finally:
            if bar is not None:
                bar.close()
    if not scans:
        raise ValueError(f"--positions: no record of {args.fasta} reaches those positions")
    wall = time.perf_counter() - start
    paths = []
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        paths = heatmap_paths(folder, [s.name for s in scans])
        for s, path in zip(scans, paths, strict=True):
            plot_scan_heatmap(s, path)
    rows = write_scan_table(args.output, scans)
    unscored = sum(sum(bool(e) for e in s.error) for s in scans)
    skipped = sum(len(s.skipped) for s in scans)
    compile_s = scorer.runner.compile_seconds
    print(
        f"wrote {args.output}: {rows:,} substitutions of {len(scans)} record(s) ({args.mode}, "
        f"{args.method}) in {wall:.1f} s ({rows / max(wall - compile_s, 1e-9):,.1f}/s without "
        f"compilation; compile {compile_s:.1f} s)"
        + (f"; heatmaps in {folder}" if folder is not None else ""),
        file=sys.stderr,
    )
    if unscored:
        print(f"{unscored} substitution(s) not scored: see the error column", file=sys.stderr)
    if skipped:
        print(
            f"{skipped} position(s) not scanned: their reference has a base other than ACGT",
            file=sys.stderr,
        )
    if clipped:
        print(
            f"--positions beyond the end of {len(clipped)} record(s), scanned up to their "
            f"end: {', '.join(clipped[:5])}" + (" ..." if len(clipped) > 5 else ""),
            file=sys.stderr,
        )

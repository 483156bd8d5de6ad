"""`codonnt-eqx plot`: a run's metrics as a figure."""

from __future__ import annotations

import argparse
import pathlib

from ..io import check_output_not_input
from ..training import plot_metrics


def add_plot_parser(commands) -> None:
    plot = commands.add_parser("plot", help="plot a run's metrics.jsonl (needs matplotlib)")
    plot.add_argument("metrics", help="run folder or its metrics.jsonl")
    plot.add_argument("-o", "--output", help="PNG path (default: beside metrics.jsonl)")
    plot.set_defaults(run=_plot_command)


def _plot_command(args: argparse.Namespace) -> None:

    if args.output:
        metrics = pathlib.Path(args.metrics)
        check_output_not_input(args.output, [metrics, metrics / "metrics.jsonl"])
    path = plot_metrics(args.metrics, args.output)
    print(f"wrote {path}")

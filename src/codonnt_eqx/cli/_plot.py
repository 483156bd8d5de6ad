"""`codonnt-eqx plot`: a run's metrics as a figure."""

from __future__ import annotations

import argparse

from ..training import plot_metrics


def add_plot_parser(commands) -> None:
    plot = commands.add_parser("plot", help="plot a run's metrics.jsonl (needs matplotlib)")
    plot.add_argument("metrics", help="run folder or its metrics.jsonl")
    plot.add_argument("-o", "--output", help="PNG path (default: beside metrics.jsonl)")
    plot.set_defaults(run=_plot_command)


def _plot_command(args: argparse.Namespace) -> None:

    path = plot_metrics(args.metrics, args.output)
    print(f"wrote {path}")

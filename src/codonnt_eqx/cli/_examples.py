"""`codonnt-eqx examples DIR`: the shipped example inputs, copied where the user works."""

from __future__ import annotations

import argparse

from ..examples import EXAMPLES, copy_examples


def add_examples_parser(commands) -> None:
    p = commands.add_parser(
        "examples",
        help="copy the shipped example inputs (FASTA, variants, VCF, BED, a task) into DIR",
        description="Copy the example files the README's commands use into DIR: "
        + "; ".join(f"{name}: {what}" for name, what in EXAMPLES.items())
        + ".",
    )
    p.add_argument("folder", metavar="DIR", help="where to put them (created if needed)")
    p.add_argument("--overwrite", action="store_true", help="replace differing files there")
    p.set_defaults(run=_examples_command)


def _examples_command(args: argparse.Namespace) -> None:
    for path in copy_examples(args.folder, overwrite=args.overwrite):
        print(f"{path}: {EXAMPLES[path.name]}")

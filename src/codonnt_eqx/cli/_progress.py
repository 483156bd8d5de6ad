"""Reading records and showing progress, for the subcommands that stream FASTA files."""

from __future__ import annotations

import argparse
import sys

from ..inference import InvalidRecordError
from ..io import FastaError, iter_fasta


def records(args: argparse.Namespace):
    return iter_fasta(sys.stdin.buffer if args.fasta == "-" else args.fasta)


def unique_records(args: argparse.Namespace) -> list:
    """Every record of the FASTA input, refusing two records of one name: where names are
    keys (variants name their sequence), picking either would be a silent guess."""
    seen: dict[str, int] = {}
    out = []
    for record in records(args):
        if record.name in seen:
            raise FastaError(
                f"{args.fasta}: record name {record.name!r} appears twice (lines "
                f"{seen[record.name]} and {record.line}); variants name their sequence, so "
                "names must be unique"
            )
        seen[record.name] = record.line
        out.append(record)
    return out


def progress(unit: str, total: int | None = None):
    """A tqdm bar on stderr (of `total` units if known), or None without tqdm (an optional
    dependency)."""
    try:
        from tqdm import tqdm  # optional (embed/finetune extras): no bar without it
    except ImportError:
        return None
    return tqdm(total=total, unit=unit, file=sys.stderr, dynamic_ncols=True, mininterval=0.5)


def report_skipped(skipped: list[InvalidRecordError]) -> None:
    if skipped:
        print(f"skipped {len(skipped)} record(s) that cannot be tokenized:", file=sys.stderr)
        for error in skipped:
            print(f"  {error}", file=sys.stderr)

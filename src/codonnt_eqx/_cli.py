"""The `codonnt-eqx` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np

from ._fasta import FastaError, FastaRecord, read_fasta
from ._tokenizers import IUPAC_AMBIGUITY, KmerTokenizer, SequenceError, SequenceTooLongError


def _tokenizer(args: argparse.Namespace) -> KmerTokenizer:
    lenient = not args.strict
    return KmerTokenizer(args.k, uppercase=lenient, iupac_to_n=lenient)


def _base_counts(seq: str) -> tuple[int, int, int]:
    """(N, other IUPAC ambiguity codes, lowercase) counts of one sequence."""
    raw = np.frombuffer(seq.encode("ascii", errors="replace"), dtype=np.uint8)
    upper = np.frombuffer(seq.upper().encode("ascii", errors="replace"), dtype=np.uint8)
    n = int(np.count_nonzero(upper == ord("N")))
    ambiguous = int(np.isin(upper, np.frombuffer(IUPAC_AMBIGUITY.encode(), np.uint8)).sum())
    lowercase = int(np.count_nonzero((raw >= ord("a")) & (raw <= ord("z"))))
    return n, ambiguous, lowercase


def _print_token_summary(records: Sequence[FastaRecord], ids: np.ndarray, tok: KmerTokenizer):
    num_tokens = (ids != tok.pad_id).sum(axis=1)
    width = max(8, *(len(r.name) for r in records))
    print(f"{'sequence':<{width}}  {'bases':>8}  {'tokens':>7}  {'N':>5}  {'ambig':>5}  {'lower':>5}")
    totals = np.zeros(5, dtype=np.int64)
    for record, count in zip(records, num_tokens, strict=True):
        row = (len(record.sequence), int(count), *_base_counts(record.sequence))
        totals += row
        print(f"{record.name:<{width}}  {row[0]:>8}  {row[1]:>7}  {row[2]:>5}  {row[3]:>5}  {row[4]:>5}")
    print(
        f"{len(records)} sequences, {totals[0]} bases -> {totals[1]} tokens "
        f"(k={tok.k}, vocabulary {tok.vocab_size}, <cls> included); "
        f"{totals[2]} N, {totals[3]} other ambiguous bases mapped to N, {totals[4]} lowercase"
    )


def _tokenize_command(args: argparse.Namespace) -> None:
    records = read_fasta(args.fasta)
    tok = _tokenizer(args)
    ids = tok.batch_encode([r.sequence for r in records])
    print(f"{args.fasta}: tokenized with {tok!r}")
    _print_token_summary(records, ids, tok)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="codonnt-eqx", description="Codon-NT (Nucleotide Transformer, 3-mers) in JAX."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    tokenize = commands.add_parser("tokenize", help="tokenize a FASTA file and summarise it")
    tokenize.add_argument("fasta", help="FASTA file, plain or gzipped")
    tokenize.add_argument("--k", type=int, default=3, help="k-mer size (Codon-NT: 3)")
    tokenize.add_argument(
        "--strict",
        action="store_true",
        help="reject lowercase and IUPAC ambiguity codes instead of mapping them",
    )
    tokenize.set_defaults(run=_tokenize_command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (OSError, FastaError, SequenceError, SequenceTooLongError, ValueError) as e:
        print(f"codonnt-eqx: error: {e}", file=sys.stderr)
        return 1
    return 0

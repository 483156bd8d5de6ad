"""`codonnt-eqx tokenize`: tokenize a FASTA file and summarise it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np

from ..io import FastaRecord, read_fasta
from ..tokenizers import IUPAC_AMBIGUITY, MAX_K, Tokenizer
from ._options import add_fasta_input, int_in, kmer_tokenizer


def add_tokenize_parser(commands) -> None:
    tokenize = commands.add_parser("tokenize", help="tokenize a FASTA file and summarise it")
    add_fasta_input(tokenize)
    tokenize.add_argument("--k", type=int_in(1, MAX_K), default=3, help="k-mer size (Codon-NT: 3)")
    tokenize.set_defaults(run=_tokenize_command)


def _tokenize_command(args: argparse.Namespace) -> None:
    tokenize_and_summarise(args, kmer_tokenizer(args))


def _base_counts(seq: str) -> tuple[int, int, int]:
    """(N, other IUPAC ambiguity codes, lowercase) counts of one sequence."""
    raw = np.frombuffer(seq.encode("ascii", errors="replace"), dtype=np.uint8)
    upper = np.frombuffer(seq.upper().encode("ascii", errors="replace"), dtype=np.uint8)
    n = int(np.count_nonzero(upper == ord("N")))
    ambiguous = int(np.isin(upper, np.frombuffer(IUPAC_AMBIGUITY.encode(), np.uint8)).sum())
    lowercase = int(np.count_nonzero((raw >= ord("a")) & (raw <= ord("z"))))
    return n, ambiguous, lowercase


def _print_token_summary(records: Sequence[FastaRecord], ids: np.ndarray, tok: Tokenizer):
    num_tokens = (ids != tok.pad_id).sum(axis=1)
    width = max(8, *(len(r.name) for r in records))
    print(
        f"{'sequence':<{width}}  {'bases':>8}  {'tokens':>7}  {'N':>5}  {'ambig':>5}  {'lower':>5}"
    )
    totals = np.zeros(5, dtype=np.int64)
    for record, count in zip(records, num_tokens, strict=True):
        row = (len(record.sequence), int(count), *_base_counts(record.sequence))
        totals += row
        cells = "  ".join(f"{x:>{w}}" for x, w in zip(row, (8, 7, 5, 5, 5), strict=True))
        print(f"{record.name:<{width}}  {cells}")
    print(
        f"{len(records)} sequences, {totals[0]} bases -> {totals[1]} tokens "
        f"(k={getattr(tok, 'k', '-')}, vocabulary {tok.vocab_size}, <cls> included); "
        f"{totals[2]} N, {totals[3]} other ambiguous bases mapped to N, {totals[4]} lowercase"
    )


def tokenize_and_summarise(args: argparse.Namespace, tok: Tokenizer):
    """Read the FASTA file, tokenize it, print the summary; returns (records, ids)."""
    records = read_fasta(sys.stdin.buffer if args.fasta == "-" else args.fasta)
    ids = tok.batch_encode([r.sequence for r in records])
    print(f"{args.fasta}: tokenized with {tok!r}")
    _print_token_summary(records, ids, tok)
    return records, ids

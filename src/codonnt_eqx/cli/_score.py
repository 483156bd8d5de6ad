"""`codonnt-eqx score`: zero-shot variant scores or pseudo-log-likelihoods, as a TSV."""

from __future__ import annotations

import argparse
import sys
import time

from ..inference import Scorer
from ..io import check_output_not_input, read_variants, write_likelihoods, write_variant_scores
from ._options import (
    add_devices_option,
    add_fasta_input,
    add_model_source,
    add_run_options,
    int_in,
    load_model,
    run_options,
)
from ._progress import progress, records, unique_records


def add_score_parser(commands) -> None:
    """The `score` command."""

    p = commands.add_parser(
        "score",
        help="zero-shot variant scores (--variants) or pseudo-log-likelihoods, as a TSV",
        description="With --variants: the log-likelihood ratio alt vs ref of each variant "
        "with the tokens it changes masked. Without: each sequence's pseudo-log-likelihood.",
    )
    add_fasta_input(p)
    p.add_argument("-o", "--output", required=True, help="TSV to write (atomically)")
    p.add_argument(
        "--variants", help="TSV of sequence_name, position (1-based), ref, alt (- for none)"
    )
    p.add_argument(
        "--coding",
        default="auto",
        choices=["auto", "yes", "no"],
        help="are the sequences in-frame CDSs (consequence column)? auto: start..stop, length 3n",
    )
    p.add_argument(
        "--one-pass",
        action="store_true",
        help="without --variants: the one-pass unmasked approximation, not the masked PLL",
    )
    p.add_argument(
        "--skip-invalid",
        action="store_true",
        help="write unscorable variants (e.g. ref mismatches) with an error instead of stopping",
    )
    p.add_argument(
        "--batch-tokens", type=int_in(1), default=8192, help="padded tokens per batch and device"
    )
    p.add_argument("--bucket", type=int_in(1), default=128)
    p.add_argument("--window", type=int_in(2), help="tokens per window (default: 1000)")
    add_run_options(p)
    add_devices_option(p)
    add_model_source(p, default_help="(default: the shipped codon-nt-mini)")
    p.set_defaults(run=_score_command)


def _score_command(args: argparse.Namespace) -> None:
    """`codonnt-eqx score FASTA [--variants TSV] -o OUT.tsv`."""

    check_output_not_input(args.output, [args.fasta, args.variants])
    variants = read_variants(args.variants) if args.variants else None
    model, tok, description = load_model(args)
    print(f"Model: {description}.", file=sys.stderr)
    scorer = Scorer(
        model,
        tok,
        batch_tokens=args.batch_tokens,
        bucket=args.bucket,
        window=args.window,
        **run_options(args),
        devices=args.devices,
    )
    start = time.perf_counter()
    if variants is None:
        rows, skipped = [], []
        bar = progress("seq")
        for record in records(args):
            method = (
                scorer.one_pass_log_likelihood if args.one_pass else scorer.pseudo_log_likelihood
            )
            try:
                rows.append((record.name, len(record.sequence), method(record.sequence)))
            except ValueError as e:  # a record the tokenizer rejects
                if not args.skip_invalid:
                    raise ValueError(f"record {record.name!r}: {e}") from e
                skipped.append(f"{record.name}: {e}")
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        write_likelihoods(args.output, rows)
        print(f"wrote {args.output}: {len(rows)} sequences", file=sys.stderr)
        for line in skipped:
            print(f"skipped {line}", file=sys.stderr)
        return
    coding = {"auto": None, "yes": True, "no": False}[args.coding]
    scores = scorer.score_variants(unique_records(args), variants, coding=coding)
    failed = [s for s in scores if s.error is not None]
    if failed and not args.skip_invalid:
        shown = "; ".join(
            f"{s.variant.sequence_name}:{s.variant.position} {s.error}" for s in failed[:5]
        )
        more = f" (and {len(failed) - 5} more)" if len(failed) > 5 else ""
        raise ValueError(
            f"{len(failed)} of {len(scores)} variants cannot be scored: {shown}{more}; "
            "--skip-invalid writes them with the reason in the error column"
        )
    write_variant_scores(args.output, scores)
    wall = time.perf_counter() - start
    scored = len(scores) - len(failed)
    print(
        f"wrote {args.output}: {scored} variants scored, {len(failed)} not, in {wall:.1f} s "
        f"({scored / max(wall - scorer.runner.compile_seconds, 1e-9):,.1f} variants/s without "
        f"compilation; compile {scorer.runner.compile_seconds:.1f} s)",
        file=sys.stderr,
    )
    for s in failed:
        print(
            f"not scored: {s.variant.sequence_name}:{s.variant.position} {s.error}", file=sys.stderr
        )

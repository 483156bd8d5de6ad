"""`codonnt-eqx predict`: a fine-tuned run folder's predictions for a FASTA file or a table."""

from __future__ import annotations

import argparse
import collections
import itertools
import sys
import time

import jax

from ..finetune import (
    Predictor,
    prediction_columns,
    prediction_format,
    prediction_rows,
    read_sequences,
    write_predictions,
)
from ..inference import InvalidRecordError
from ..io import check_output_not_input
from ._options import add_devices_option, add_run_options, int_in, run_options
from ._progress import progress, report_skipped


def add_predict_parser(commands) -> None:
    p = commands.add_parser(
        "predict",
        help="predict with a fine-tuned model (a finetune/probe --out folder)",
        description="Predictions of a fine-tuned run folder (probe, IA3, LoRA or full) for "
        "every sequence of a FASTA file or table: name, prediction (value or class), the "
        "input's label when it has one, and per-class probabilities; one row per codon for "
        "per-residue tasks. Long sequences are windowed as in embed.",
    )
    p.add_argument(
        "folder", metavar="RUN", help="the fine-tuning run folder (holds adapter.safetensors)"
    )
    p.add_argument(
        "input",
        help="FASTA (plain or gzipped; - reads standard input) or a table (.csv/.tsv/.parquet) "
        "with a sequence column",
    )
    p.add_argument(
        "-o",
        "--output",
        default="-",
        help="OUT.tsv, OUT.csv or OUT.parquet (default: TSV on standard output)",
    )
    p.add_argument(
        "--checkpoint",
        help="the base model (default: the one the run recorded; not used after full fine-tuning)",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="reject lowercase and IUPAC ambiguity codes instead of mapping them",
    )
    p.add_argument("--sequence-column", help="table input: the DNA column (default: found)")
    p.add_argument("--name-column", help="table input: the name column (default: found, or row)")
    p.add_argument("--label-column", help="table input: a label column copied beside predictions")
    p.add_argument(
        "--skip-invalid",
        action="store_true",
        help="skip records that cannot be tokenized (listed at the end) instead of stopping",
    )
    p.add_argument(
        "--batch-tokens", type=int_in(1), default=8192, help="padded tokens per batch and device"
    )
    p.add_argument("--batch-size", type=int_in(1), help="at most this many rows per batch")
    p.add_argument("--window", type=int_in(2), help="tokens per window for long sequences")
    p.add_argument("--overlap", type=int_in(0), help="tokens shared by adjacent windows")
    add_run_options(p)
    add_devices_option(p)
    p.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> None:
    prediction_format(args.output)  # a bad name fails before the model loads
    if args.output != "-":
        check_output_not_input(args.output, [args.input, args.folder])
    predictor = Predictor.load(
        args.folder,
        checkpoint=args.checkpoint,
        strict=args.strict,
        batch_tokens=args.batch_tokens,
        max_batch=args.batch_size,
        window=args.window,
        overlap=args.overlap,
        devices=args.devices,
        **run_options(args),
    )
    inputs = read_sequences(
        args.input,
        sequence_column=args.sequence_column,
        name_column=args.name_column,
        label_column=args.label_column,
    )
    first = next(inputs, None)
    has_labels = first is not None and first.label is not None
    task = predictor.task_name or args.folder
    print(f"{task}: {predictor.kind}, mode {predictor.info['mode']}", file=sys.stderr)

    # The predictor reads a record, then tokenizes it at once (skipping it there if invalid),
    # and yields in input order: labels queue as records are read, and a skipped record's is
    # dropped as it is skipped.
    labels: collections.deque = collections.deque()
    skipped: list[InvalidRecordError] = []

    def read():
        for item in itertools.chain([first] if first is not None else [], inputs):
            labels.append(item.label)
            yield item

    def skip(error: InvalidRecordError) -> None:
        labels.pop()
        skipped.append(error)

    bar = progress("seq")

    def paired():
        for p in predictor(read(), on_invalid=skip if args.skip_invalid else None):
            label = labels.popleft()
            if bar is not None:
                bar.update(1)
            yield p, (label if has_labels else None)

    columns = prediction_columns(predictor.kind, predictor.classes, has_labels)
    start = time.perf_counter()
    try:
        rows = write_predictions(args.output, columns, prediction_rows(paired(), predictor.kind))
    finally:
        if bar is not None:
            bar.close()
    runner = predictor.embedder.runner
    where = "standard output" if args.output == "-" else args.output
    print(
        f"wrote {rows} row(s) to {where} in {time.perf_counter() - start:.1f} s "
        f"({runner.num_devices} {jax.default_backend()} device(s); compile "
        f"{runner.compile_seconds:.1f} s)",
        file=sys.stderr,
    )
    report_skipped(skipped)

"""`codonnt-eqx experiment tokenizations`: the tokenization comparison from the command line."""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
from typing import cast

from ..experiments import (
    ALL_ARMS,
    DEFAULT_ARMS,
    ComparisonConfig,
    compare_tokenizations,
    comparison_corpus,
    default_arms,
    plot_results,
    results_table,
)
from ..finetune import TASK_KINDS, TaskKind, load_task
from ..io import atomic_output, check_folder_not_input
from ._options import float_above, int_in

# What the experiment writes into --out besides one run folder per arm.
EXPERIMENT_FILES = ("results.json", "table.md", "command.json", "plot.png")


def add_experiment_parser(commands) -> None:
    """Add `experiment tokenizations` to the CLI's subcommands."""

    defaults = ComparisonConfig()
    experiment = commands.add_parser("experiment", help="run an experiment (tokenizations)")
    kinds = experiment.add_subparsers(dest="experiment", required=True, metavar="EXPERIMENT")
    p = kinds.add_parser(
        "tokenizations",
        help="pretrain one small model per tokenizer and compare them fairly",
        description="Pretrain a model of the same size per tokenization on the same coding "
        "sequences (same nucleotides seen), then compare held-out bits per nucleotide and a "
        "frozen linear probe on downstream tasks. Writes results.json, table.md and plot.png.",
    )
    p.add_argument("fasta", nargs="+", help="FASTA files of coding sequences (5' to 3', in frame)")
    p.add_argument("--out", required=True, help="results folder (one pretraining run per arm)")
    p.add_argument("--arms", nargs="+", choices=ALL_ARMS, default=list(DEFAULT_ARMS))
    p.add_argument(
        "--task",
        action="append",
        default=[],
        metavar="TABLE:KIND",
        help="a downstream task table and its kind (regression, classification, "
        "per-residue), e.g. runs/protein_tasks/kingdom.csv:classification; repeatable",
    )
    p.add_argument("--size", default=defaults.size, help="model body: tiny, mini or codon_nt")
    p.add_argument("--steps", type=int_in(1), default=defaults.steps)
    p.add_argument("--batch-windows", type=int_in(1), default=defaults.batch_windows)
    p.add_argument("--window-nucleotides", type=int_in(6), default=defaults.window_nucleotides)
    p.add_argument("--peak-lr", type=float_above(0.0), default=defaults.peak_lr)
    p.add_argument("--warmup-steps", type=int_in(1), default=defaults.warmup_steps)
    p.add_argument("--eval-every", type=int_in(1), default=defaults.eval_every)
    p.add_argument("--eval-windows", type=int_in(1), default=defaults.eval_windows)
    p.add_argument("--pll-windows", type=int_in(0), default=defaults.pll_windows)
    p.add_argument("--probe-epochs", type=int_in(1), default=defaults.probe_epochs)
    p.add_argument("--bpe-vocab-size", type=int_in(11), default=512)
    p.add_argument("--seed", type=int_in(0), default=defaults.seed)
    p.set_defaults(run=_run)


def _tasks(specs: list[str]) -> dict:

    tasks = {}
    for spec in specs:
        path, sep, kind = spec.rpartition(":")
        if not sep or kind not in TASK_KINDS:
            raise ValueError(f"--task {spec!r}: expected TABLE:KIND with KIND one of {TASK_KINDS}")
        name = pathlib.Path(path).name.split(".")[0]
        if name in tasks:
            raise ValueError(f"--task: two tasks are named {name!r}")
        tasks[name] = load_task(path, cast(TaskKind, kind))
    return tasks


def _run(args: argparse.Namespace) -> None:

    config = ComparisonConfig(
        size=args.size,
        window_nucleotides=args.window_nucleotides,
        batch_windows=args.batch_windows,
        steps=args.steps,
        peak_lr=args.peak_lr,
        warmup_steps=args.warmup_steps,
        eval_every=args.eval_every,
        eval_windows=args.eval_windows,
        pll_windows=args.pll_windows,
        probe_epochs=args.probe_epochs,
        seed=args.seed,
    )
    task_files = [spec.rpartition(":")[0] for spec in args.task]
    check_folder_not_input(
        args.out, [*args.fasta, *task_files], writes=[*EXPERIMENT_FILES, *args.arms]
    )
    tasks = _tasks(args.task)  # before any training: a bad table fails now
    bpe_training = []
    if "bpe" in args.arms:  # merges learned from the training parts only
        # the held-out split every arm uses (alignment 1: the BPE arm's)
        bpe_training = list(comparison_corpus(args.fasta, 1, config).training_sequences())
    arms = default_arms(args.arms, bpe_training=bpe_training, bpe_vocab_size=args.bpe_vocab_size)
    out = pathlib.Path(args.out)
    rows = compare_tokenizations(arms, args.fasta, out, config, tasks=tasks)
    table = results_table(rows)
    command = {
        "args": {k: v for k, v in vars(args).items() if k != "run"},
        "config": dataclasses.asdict(config),
    }
    with atomic_output(out / "table.md") as tmp:
        tmp.write_text(table)
    with atomic_output(out / "command.json") as tmp:
        tmp.write_text(json.dumps(command, indent=2) + "\n")
    try:
        plot_results(rows, out / "plot.png")
    except ImportError:
        print("matplotlib is not installed: no plot.png (pip install 'codonnt-eqx[plot]')")
    print(table)

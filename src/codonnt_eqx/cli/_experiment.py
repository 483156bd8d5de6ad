"""`codonnt-eqx experiment tokenizations`: the tokenization comparison from the command line."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
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
from ._run_settings import (
    SETTINGS_FILE,
    given_settings,
    read_settings,
    resolve_settings,
    save_settings,
)

# What the experiment writes into --out besides one run folder per arm.
EXPERIMENT_FILES = ("results.json", "table.md", "command.json", "plot.png")


_CONFIG = ComparisonConfig()
# Every setting with its default: saved in --out (settings.json), restored by --resume. The
# parser's defaults are None so that what was given can be told from what was not.
DEFAULTS = {
    "fasta": None,
    "arms": list(DEFAULT_ARMS),
    "task": [],
    "size": _CONFIG.size,
    "steps": _CONFIG.steps,
    "batch_windows": _CONFIG.batch_windows,
    "window_nucleotides": _CONFIG.window_nucleotides,
    "peak_lr": _CONFIG.peak_lr,
    "warmup_steps": _CONFIG.warmup_steps,
    "eval_every": _CONFIG.eval_every,
    "eval_windows": _CONFIG.eval_windows,
    "pll_windows": _CONFIG.pll_windows,
    "probe_epochs": _CONFIG.probe_epochs,
    "bpe_vocab_size": 512,
    "seed": _CONFIG.seed,
}


def add_experiment_parser(commands) -> None:
    """Add `experiment tokenizations` to the CLI's subcommands."""

    experiment = commands.add_parser("experiment", help="run an experiment (tokenizations)")
    kinds = experiment.add_subparsers(dest="experiment", required=True, metavar="EXPERIMENT")
    p = kinds.add_parser(
        "tokenizations",
        help="pretrain one small model per tokenizer and compare them fairly",
        description="Pretrain a model of the same size per tokenization on the same coding "
        "sequences (same nucleotides seen), then compare held-out bits per nucleotide and a "
        "frozen linear probe on downstream tasks. Writes results.json, table.md and plot.png. "
        f"The settings are saved in --out ({SETTINGS_FILE}): --resume restores them (finished "
        "arms are kept, an interrupted one continues), and options given again override them.",
    )
    p.add_argument("fasta", nargs="*", help="FASTA files of coding sequences (5' to 3', in frame)")
    p.add_argument("--out", required=True, help="results folder (one pretraining run per arm)")
    p.add_argument("--resume", action="store_true", help="continue the experiment in --out")
    p.add_argument("--arms", nargs="+", choices=ALL_ARMS, help=_default("arms"))
    p.add_argument(
        "--task",
        action="append",
        metavar="TABLE:KIND",
        help="a downstream task table and its kind (regression, classification, "
        "per-residue), e.g. runs/protein_tasks/kingdom.csv:classification; repeatable",
    )
    p.add_argument("--size", help="model body: tiny, mini or codon_nt " + _default("size"))
    p.add_argument("--steps", type=int_in(1), help=_default("steps"))
    p.add_argument("--batch-windows", type=int_in(1), help=_default("batch_windows"))
    p.add_argument("--window-nucleotides", type=int_in(6), help=_default("window_nucleotides"))
    p.add_argument("--peak-lr", type=float_above(0.0), help=_default("peak_lr"))
    p.add_argument("--warmup-steps", type=int_in(1), help=_default("warmup_steps"))
    p.add_argument("--eval-every", type=int_in(1), help=_default("eval_every"))
    p.add_argument("--eval-windows", type=int_in(1), help=_default("eval_windows"))
    p.add_argument("--pll-windows", type=int_in(0), help=_default("pll_windows"))
    p.add_argument("--probe-epochs", type=int_in(1), help=_default("probe_epochs"))
    p.add_argument("--bpe-vocab-size", type=int_in(11), help=_default("bpe_vocab_size"))
    p.add_argument("--seed", type=int_in(0), help=_default("seed"))
    p.set_defaults(run=_run, **dict.fromkeys(DEFAULTS))


def _default(name: str) -> str:
    value = DEFAULTS[name]
    return f"(default: {' '.join(value) if isinstance(value, list) else value})"


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

    given = given_settings(args, DEFAULTS, paths=("fasta",))
    if "task" in given:
        given["task"] = [_absolute_task(spec) for spec in given["task"]]
    saved = read_settings(args.out)
    if saved is not None and not args.resume and "fasta" not in given:
        raise ValueError(f"{args.out} holds an experiment: --resume continues it")
    s = argparse.Namespace(**resolve_settings(args.out, given, DEFAULTS, resume=args.resume))
    if not s.fasta:
        raise ValueError("give the FASTA files of coding sequences (--resume restores its own)")
    config = ComparisonConfig(
        size=s.size,
        window_nucleotides=s.window_nucleotides,
        batch_windows=s.batch_windows,
        steps=s.steps,
        peak_lr=s.peak_lr,
        warmup_steps=s.warmup_steps,
        eval_every=s.eval_every,
        eval_windows=s.eval_windows,
        pll_windows=s.pll_windows,
        probe_epochs=s.probe_epochs,
        seed=s.seed,
    )
    task_files = [spec.rpartition(":")[0] for spec in s.task]
    check_folder_not_input(
        args.out, [*s.fasta, *task_files], writes=[*EXPERIMENT_FILES, SETTINGS_FILE, *s.arms]
    )
    tasks = _tasks(s.task)  # before any training: a bad table fails now
    bpe_training = []
    if "bpe" in s.arms:  # merges learned from the training parts only
        # the held-out split every arm uses (alignment 1: the BPE arm's)
        bpe_training = list(comparison_corpus(s.fasta, 1, config).training_sequences())
    arms = default_arms(s.arms, bpe_training=bpe_training, bpe_vocab_size=s.bpe_vocab_size)
    out = pathlib.Path(args.out)
    save_settings(out, vars(s))  # checked above; the arms' own checkpoints check the rest
    rows = compare_tokenizations(arms, s.fasta, out, config, tasks=tasks)
    table = results_table(rows)
    command = {
        "args": vars(s),
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


def _absolute_task(spec: str) -> str:
    path, sep, kind = spec.rpartition(":")
    return f"{os.path.abspath(path)}:{kind}" if sep else spec

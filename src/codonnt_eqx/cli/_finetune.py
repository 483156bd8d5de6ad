"""The `finetune` and `probe` commands."""

from __future__ import annotations

import argparse
import json
import math
import os

from ..checkpoints import DEFAULT_MODEL, SHIPPED_MODELS, from_pretrained
from ..finetune import (
    LORA_TARGETS,
    MODES,
    RUN_FILES,
    TASK_KINDS,
    FinetuneConfig,
    finetune,
    load_finetuned,
    load_task,
)
from ..io import check_folder_not_input, claim_run_folder
from ._options import add_run_options, float_above, int_in, run_options


def add_finetune_parser(commands) -> None:
    """Add `finetune` (any mode) and `probe` (the frozen probe) to the CLI's subcommands."""
    finetune = commands.add_parser(
        "finetune",
        help="fit a downstream task: frozen probe, IA3, LoRA or full fine-tuning",
        description="Fit a task from coding sequences (regression, classification or "
        "per-residue classification) on a model's representations, with early stopping on "
        "the validation split; prints the test metrics and writes results.json, "
        "metrics.jsonl and the head/adapters (adapter.safetensors) to --out.",
    )
    _arguments(finetune, with_mode=True)
    probe = commands.add_parser(
        "probe",
        help="fit a head on frozen representations (finetune --mode probe)",
        description="The frozen probe: representations are computed once (cached with "
        "--cache), then a linear or MLP head is trained on them.",
    )
    _arguments(probe, with_mode=False)


def _arguments(p: argparse.ArgumentParser, *, with_mode: bool) -> None:

    p.add_argument(
        "tasks",
        nargs="+",
        help="a task folder (train.fna, val.fna, test.fna and any further named test sets, "
        "as InstaDeepAI/true-cds-protein-tasks publishes them), a table (.csv/.tsv/.parquet) "
        "with sequence, label and split columns, or one file per split (train.*, val.*, "
        "test.*); FASTA headers hold the label after their last '|' (>name|label)",
    )
    p.add_argument("--task-type", required=True, choices=TASK_KINDS, help="what the label is")
    p.add_argument("--out", required=True, help="run folder (results, metrics, head/adapters)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier run in --out")
    p.add_argument(
        "--checkpoint",
        default=DEFAULT_MODEL,
        help=f"model folder or shipped model name (default: the shipped {DEFAULT_MODEL})",
    )
    if with_mode:
        p.add_argument("--mode", default="probe", choices=MODES)
    else:
        p.set_defaults(mode="probe")
    head = p.add_argument_group("head")
    head.add_argument("--head", default="linear", choices=["linear", "mlp"])
    head.add_argument("--hidden", type=int_in(1), default=256, help="MLP hidden width")
    head.add_argument(
        "--layer", type=int, default=-1, help="representations of this layer (-1: final)"
    )
    fit = p.add_argument_group("training")
    fit.add_argument("--epochs", type=int_in(1), default=20)
    fit.add_argument("--patience", type=int_in(1), default=4, help="early-stopping epochs")
    fit.add_argument("--batch-size", type=int_in(1), default=8, help="sequences per step")
    fit.add_argument("--probe-batch-size", type=int_in(1), default=256)
    fit.add_argument("--lr", type=float_above(0.0), help="learning rate (default per mode)")
    fit.add_argument("--weight-decay", type=float, default=0.0)
    fit.add_argument("--lora-rank", type=int_in(1), default=8)
    fit.add_argument("--lora-alpha", type=float_above(0.0), default=16.0)
    fit.add_argument("--lora-targets", nargs="+", default=["query", "value"], choices=LORA_TARGETS)
    fit.add_argument("--max-codons", type=int_in(1), help="cut longer sequences")
    fit.add_argument("--bucket", type=int_in(1), default=32, help="pad to multiples of this")
    fit.add_argument("--seed", type=int, default=0)
    add_run_options(fit, remat=True)
    fit.add_argument("--cache", help="folder caching the probe's representations")
    fit.add_argument(
        "--init-head",
        help="start from the head of an earlier run folder (e.g. a probe's: linear probe, "
        "then fine-tune)",
    )
    fit.add_argument("--no-progress", action="store_true", help="no progress bar")
    data = p.add_argument_group("task files")
    data.add_argument("--name", help="task name (default: from the file names)")
    data.add_argument("--sequence-column")
    data.add_argument("--label-column")
    data.add_argument("--split-column")
    labels = data.add_mutually_exclusive_group()
    labels.add_argument(
        "--label-field",
        type=int,
        help="FASTA: take the label from this '|'-separated header field (0-based; -1: last)",
    )
    labels.add_argument(
        "--label-pattern",
        help="FASTA: a regular expression whose first group (or whole match) is the label",
    )
    data.add_argument(
        "--validation-fraction",
        type=float_above(0.0, 1.0),
        default=0.1,
        help="share of train held out when there is no validation split",
    )
    p.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> None:

    inputs = [*args.tasks, args.init_head, args.cache]
    if os.path.exists(args.checkpoint):
        inputs.append(args.checkpoint)
    check_folder_not_input(args.out, inputs, writes=RUN_FILES)
    claim_run_folder(args.out, RUN_FILES, overwrite=args.overwrite, create=False)
    task = load_task(
        args.tasks,
        args.task_type,
        name=args.name,
        sequence_column=args.sequence_column,
        label_column=args.label_column,
        split_column=args.split_column,
        label_field=args.label_field,
        label_pattern=args.label_pattern,
        validation_fraction=args.validation_fraction,
        seed=args.seed,
    )
    config = FinetuneConfig(
        mode=args.mode,
        hidden=args.hidden if args.head == "mlp" else None,
        layer=args.layer,
        learning_rate=args.lr,
        weight_decay=args.weight_decay,
        batch_size=args.batch_size,
        probe_batch_size=args.probe_batch_size,
        epochs=args.epochs,
        patience=args.patience,
        lora_rank=args.lora_rank,
        lora_alpha=args.lora_alpha,
        lora_targets=tuple(args.lora_targets),
        max_codons=args.max_codons,
        bucket=args.bucket,
        seed=args.seed,
        **run_options(args),
    )
    model, tok = from_pretrained(args.checkpoint)
    head = None
    if args.init_head:
        initial, info = load_finetuned(args.init_head, model, tok)
        saved_task = info.get("task") or {}
        if saved_task.get("kind") not in (None, task.kind) or saved_task.get("classes") not in (
            None,
            list(task.classes) if task.classes else None,
        ):
            raise ValueError(
                f"--init-head {args.init_head}: its head was fitted to a {saved_task.get('kind')} "
                f"task with classes {saved_task.get('classes')}; this task is {task.kind} with "
                f"classes {list(task.classes) if task.classes else None}"
            )
        head = initial.head.head
    shipped = args.checkpoint in SHIPPED_MODELS and not os.path.exists(args.checkpoint)
    print(
        f"model: {args.checkpoint}{' (shipped)' if shipped else ''}, "
        f"{model.num_parameters() / 1e6:.2f}M parameters"
    )
    result = finetune(
        model,
        tok,
        task,
        config,
        out=args.out,
        cache=args.cache,
        # A local folder is recorded absolute, so `predict` finds it from anywhere.
        model_name=os.path.abspath(args.checkpoint)
        if os.path.exists(args.checkpoint)
        else args.checkpoint,
        head=head,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    r = result.results
    print(
        f"\n{task.name} ({task.kind}), {config.mode}: best epoch {r['best_epoch']} of "
        f"{r['epochs_run']}, {r['trainable_parameters']:,} trainable parameters, "
        f"{r['seconds']:.0f} s"
    )
    print("test: " + json.dumps({k: round(v, 4) for k, v in result.test.items()}))
    for name, metrics in result.extra_tests.items():
        print(f"test set {name}: " + json.dumps({k: round(v, 4) for k, v in metrics.items()}))
    print(f"wrote {os.path.join(args.out, 'results.json')}, metrics.jsonl, adapter.safetensors")
    undefined = [
        f"{split} {k}"
        for split, metrics in [("test", result.test), *result.extra_tests.items()]
        for k, v in metrics.items()
        if not math.isfinite(v)
    ]
    if undefined:  # written above, but not a result: say so in the exit status
        raise ValueError(
            f"undefined metrics ({', '.join(undefined)}): the predictions are constant; "
            "see metrics.jsonl (a higher learning rate or more epochs may help)"
        )

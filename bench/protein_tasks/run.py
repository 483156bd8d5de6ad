"""Run the language-model side of the offline protein tasks: the frozen probe (linear and MLP
heads), IA³, LoRA and full fine-tuning of a model, each through the `codonnt-eqx finetune` CLI.

    python bench/protein_tasks/build.py --out runs/protein_tasks
    python bench/protein_tasks/baselines.py runs/protein_tasks --out bench/results/protein_tasks
    python bench/protein_tasks/run.py runs/protein_tasks --out bench/results/protein_tasks
    python bench/protein_tasks/table.py bench/results/protein_tasks \\
        --out bench/results/protein_tasks

Every run's results.json is copied to `<out>/lm/<task>-<method>.json` (or `--results`'s folder)
with the exact command; without --out or --results, `<out>` is a scratch folder (the one
baselines.py and table.py use without --out), never bench/results/. `--skip-existing` resumes
an interrupted sweep, `--dry-run` prints the commands. The recipe is sized for a 2-core CPU
(see `RECIPES`).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shlex
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from _common import add_out_argument, results_dir  # noqa: E402  (bench/_common.py)

TASKS = {
    "isoelectric_point": "regression",
    "kingdom": "classification",
    "residue_hydropathy": "per-residue",
    "gravy": "regression",
}
# method: extra CLI arguments. Probes train a head only and get many epochs. Fine-tuning
# starts from the linear probe's head (LP-FT) and runs at most 5 epochs (patience 2), so that
# the sweep fits the shared 2-core CPU in half an hour; the "-short" recipes (2 epochs on the
# first 160 codons of each gene, labels cut alike) were the first, quicker sweep.
COMMON = "--batch-size 8 --probe-batch-size 64 --bucket 64 --seed 0".split()
RECIPES = {
    "probe-linear": "--mode probe --head linear --lr 1e-2 --epochs 200 --patience 20".split(),
    "probe-mlp": "--mode probe --head mlp --lr 3e-3 --epochs 200 --patience 20".split(),
    "ia3": "--mode ia3 --epochs 5 --patience 2".split(),
    "lora": "--mode lora --lora-rank 8 --epochs 5 --patience 2".split(),
    "full": "--mode full --epochs 5 --patience 2".split(),
    # the first sweep, cut short to fit the shared CPU: 2 epochs on the first 160 codons
    "ia3-short": "--mode ia3 --epochs 2 --max-codons 160".split(),
    "full-short": "--mode full --epochs 2 --max-codons 160".split(),
}
# Per residue the probe has one row per residue (tens of thousands): bigger batches, fewer
# epochs.
PER_RESIDUE_PROBE = "--epochs 30 --patience 5 --probe-batch-size 512".split()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tasks", help="folder of build.py's tables")
    parser.add_argument("--checkpoint", default="codon-nt-mini")
    parser.add_argument("--runs", default="runs/protein_tasks/lm", help="run folders")
    where = parser.add_mutually_exclusive_group()
    add_out_argument(where, "protein_tasks", "results folder: the records go to its lm/")
    where.add_argument("--results", type=pathlib.Path, help="the records' folder itself")
    parser.add_argument("--only-tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    parser.add_argument("--methods", nargs="+", choices=list(RECIPES), default=list(RECIPES))
    parser.add_argument(
        "--tag", default="", help="prefix of the method names, e.g. 'random-init ' for a control"
    )
    parser.add_argument("--skip-existing", action="store_true")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    results = args.results or results_dir(args.out, "protein_tasks") / "lm"
    results.mkdir(parents=True, exist_ok=True)
    print(f"records: {results}", flush=True)
    cache = pathlib.Path(args.runs) / "cache"
    for method in args.methods:  # methods outer: every task gets the cheap probes first
        for task in args.only_tasks:
            name = f"{args.tag}{method}"
            target = results / f"{task}-{name.replace(' ', '-')}.json"
            if args.skip_existing and target.exists():
                continue
            out = pathlib.Path(args.runs) / f"{task}-{name.replace(' ', '-')}"
            recipe = list(RECIPES[method])
            if method.startswith("probe") and TASKS[task] == "per-residue":
                recipe += PER_RESIDUE_PROBE
            if not method.startswith("probe"):
                tag = args.tag.replace(" ", "-")
                recipe += [
                    "--init-head",
                    str(pathlib.Path(args.runs) / f"{task}-{tag}probe-linear"),
                ]
            command = [
                "codonnt-eqx",
                "finetune",
                str(pathlib.Path(args.tasks) / f"{task}.csv"),
                "--task-type",
                TASKS[task],
                "--checkpoint",
                args.checkpoint,
                "--out",
                str(out),
                "--cache",
                str(cache),
                "--no-progress",
                *COMMON,
                *recipe,
            ]
            printable = shlex.join(command)
            print(printable, flush=True)
            if args.dry_run:
                continue
            start = time.perf_counter()
            done = subprocess.run(command)
            if done.returncode:
                sys.exit(f"failed ({done.returncode}): {printable}")
            record = json.loads((out / "results.json").read_text())
            record |= {
                "method": name,
                "command": printable,
                "wall_seconds": time.perf_counter() - start,
            }
            target.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()

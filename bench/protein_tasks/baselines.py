"""Baselines without a language model on the offline protein tasks (or any task table).

    python bench/protein_tasks/baselines.py runs/protein_tasks --out bench/results/protein_tasks

Sequence tasks: 3-mer counts (overlapping, all three frames, as frequencies) and codon usage
(in-frame codon frequencies), each standardised, with a linear head (ridge / multinomial
logistic regression) and an MLP head (scikit-learn, one hidden layer of 256). Per-residue
tasks: the codon's one-hot (what a token embedding alone sees) and the one-hot of the codons
in a +-5 window (the context the windowed label is computed from), with logistic regression.
Regularisation is chosen on the validation split; test metrics are reported at that choice,
computed by the same code as the language-model runs (`codonnt_eqx.finetune.task_metrics`).
"""

from __future__ import annotations

import argparse
import itertools
import json
import pathlib
import sys
import time

import numpy as np

from codonnt_eqx.finetune import PRIMARY_METRIC, load_task, task_metrics

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from _common import add_out_argument, results_dir  # noqa: E402  (bench/_common.py)

TASKS = {
    "isoelectric_point": "regression",
    "gravy": "regression",
    "kingdom": "classification",
    "residue_hydropathy": "per-residue",
}
CODONS = ["".join(c) for c in itertools.product("ACGT", repeat=3)]
CODON_INDEX = {c: i for i, c in enumerate(CODONS)}
HALF_WINDOW = 5


def kmer_counts(seq: str) -> np.ndarray:
    x = np.zeros(64)
    for i in range(len(seq) - 2):
        x[CODON_INDEX[seq[i : i + 3]]] += 1
    return x / max(x.sum(), 1)


def codon_usage(seq: str) -> np.ndarray:
    x = np.zeros(64)
    for i in range(0, len(seq) - 2, 3):
        x[CODON_INDEX[seq[i : i + 3]]] += 1
    return x / max(x.sum(), 1)


def residue_rows(split, half: int):
    """(one-hot rows [residues, (2 half + 1) 64], labels) of the labelled codons; positions
    outside the sequence are all-zero blocks."""
    from scipy.sparse import csr_matrix

    rows, cols, labels = [], [], []
    row = 0
    for seq, label in zip(split.sequences, split.labels, strict=True):
        codons = [CODON_INDEX[seq[i : i + 3]] for i in range(0, len(seq), 3)]
        for i, y in enumerate(label):
            if y < 0:
                continue
            for offset in range(-half, half + 1):
                j = i + offset
                if 0 <= j < len(codons):
                    rows.append(row)
                    cols.append((offset + half) * 64 + codons[j])
            labels.append(y)
            row += 1
    x = csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(row, (2 * half + 1) * 64))
    return x, np.asarray(labels)


def fit_sequence(task, featurise, head: str, seed: int):
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.preprocessing import StandardScaler

    x = {s: np.stack([featurise(q) for q in task.split(s).sequences]) for s in SPLITS}
    y = {s: np.asarray(task.split(s).labels) for s in SPLITS}
    scaler = StandardScaler().fit(x["train"])
    x = {s: scaler.transform(v) for s, v in x.items()}
    regression = task.kind == "regression"
    if head == "linear":
        grid = [0.1, 1, 10, 100, 1000] if regression else [0.001, 0.01, 0.1, 1, 10]
        make = (
            (lambda a: Ridge(alpha=a))
            if regression
            else (lambda c: LogisticRegression(C=c, max_iter=2000))
        )
    else:
        grid = [1e-4, 1e-2, 1.0]
        make = (
            (
                lambda a: MLPRegressor(
                    hidden_layer_sizes=(256,), alpha=a, max_iter=500, random_state=seed
                )
            )
            if regression
            else (
                lambda a: MLPClassifier(
                    hidden_layer_sizes=(256,), alpha=a, max_iter=500, random_state=seed
                )
            )
        )
    return _select(task, grid, make, x, y)


def _select(task, grid, make, x, y):
    metric = PRIMARY_METRIC[task.kind]
    num_classes = None if task.kind == "regression" else task.num_outputs
    best = None
    for value in grid:
        model = make(value).fit(x["train"], y["train"])
        validation = task_metrics(
            task.kind, model.predict(x["validation"]), y["validation"], num_classes
        )
        score = validation[metric]
        if best is None or score > best[0]:
            test = task_metrics(task.kind, model.predict(x["test"]), y["test"], num_classes)
            best = (score, value, validation, test)
    return {"regularisation": best[1], "validation": best[2], "test": best[3]}


SPLITS = ("train", "validation", "test")


def fit_residues(task, half: int):
    from sklearn.linear_model import LogisticRegression

    data = {s: residue_rows(task.split(s), half) for s in SPLITS}
    x = {s: d[0] for s, d in data.items()}
    y = {s: d[1] for s, d in data.items()}
    return _select(task, [0.01, 0.1, 1.0], lambda c: LogisticRegression(C=c, max_iter=1000), x, y)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tasks", help="folder of build.py's tables")
    add_out_argument(parser, "protein_tasks", "folder of baselines.json (table.py reads it)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = []
    for name, kind in TASKS.items():
        task = load_task(pathlib.Path(args.tasks) / f"{name}.csv", kind)
        if kind == "per-residue":
            runs = [
                ("codon one-hot", "linear", lambda task=task: fit_residues(task, 0)),
                (
                    f"codon one-hot +-{HALF_WINDOW}",
                    "linear",
                    lambda task=task: fit_residues(task, HALF_WINDOW),
                ),
            ]
        else:
            runs = [
                (features, head, lambda f=f, h=head, task=task: fit_sequence(task, f, h, args.seed))
                for features, f in (("3-mer counts", kmer_counts), ("codon usage", codon_usage))
                for head in ("linear", "mlp")
            ]
        for features, head, run in runs:
            start = time.perf_counter()
            result = run()
            rows.append(
                {
                    "task": name,
                    "kind": kind,
                    "features": features,
                    "head": head,
                    **result,
                    "seconds": time.perf_counter() - start,
                }
            )
            print(
                f"{name:20s} {features:18s} {head:6s} test "
                + ", ".join(f"{k} {v:.3f}" for k, v in result["test"].items())
            )
    out = results_dir(args.out, "protein_tasks")
    (out / "baselines.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(f"wrote {out / 'baselines.json'}")


if __name__ == "__main__":
    main()

"""The offline protein tasks' results table (Markdown) and plot, from the baselines' and the
runs' JSON files.

    python bench/protein_tasks/table.py                    # what baselines.py and run.py wrote
    python bench/protein_tasks/table.py bench/results/protein_tasks \\
        --out bench/results/protein_tasks                  # the committed table

reads `baselines.json` and `lm/*.json` from the folder (default: the scratch folder that
baselines.py and run.py write into without --out) and writes `table.md` (every method's test
metrics; the primary metric first) and `test_metric.png` (primary test metric per task and
method; needs matplotlib) into --out (default: that scratch folder; bench/results/ only when
--out names it).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from _common import add_out_argument, results_dir, scratch_dir  # noqa: E402  (bench/_common.py)

PRIMARY = {"regression": "spearman", "classification": "mcc", "per-residue": "accuracy"}
OTHERS = {"regression": ["pearson", "r2"], "classification": ["accuracy"], "per-residue": ["mcc"]}
ORDER = ["isoelectric_point", "gravy", "kingdom", "residue_hydropathy"]


def rows(folder: pathlib.Path) -> list[dict]:
    out = []
    baselines = folder / "baselines.json"
    if baselines.exists():
        for r in json.loads(baselines.read_text()):
            out.append(
                {
                    "task": r["task"],
                    "kind": r["kind"],
                    "method": f"{r['features']}, {r['head']} (no LM)",
                    "trainable": None,
                    "test": r["test"],
                    "validation": r["validation"],
                    "seconds": r["seconds"],
                    "lm": False,
                }
            )
    for path in sorted((folder / "lm").glob("*.json")):
        r = json.loads(path.read_text())
        out.append(
            {
                "task": r["task"],
                "kind": r["kind"],
                "method": r["method"],
                "trainable": r["trainable_parameters"],
                "test": r["test"],
                "validation": r["validation"],
                "seconds": r["wall_seconds"],
                "lm": True,
                "epochs": f"{r['best_epoch']}/{r['epochs_run']}",
                "model": r["model"],
            }
        )
    return out


def table(records: list[dict]) -> str:
    lines = []
    for task in [t for t in ORDER if any(r["task"] == t for r in records)]:
        group = [r for r in records if r["task"] == task]
        kind = group[0]["kind"]
        metric, others = PRIMARY[kind], OTHERS[kind]
        best_baseline = max((r["test"][metric] for r in group if not r["lm"]), default=None)
        lines += [
            f"### {task} ({kind}; test {metric})",
            "",
            f"| method | test {metric} | vs best no-LM | "
            + " | ".join(f"test {o}" for o in others)
            + f" | validation {metric} | trainable params | best/run epochs | seconds |",
            "|---|---:|---:|" + "---:|" * len(others) + "---:|---:|---:|---:|",
        ]
        for r in sorted(group, key=lambda r: -r["test"][metric]):
            delta = "-"
            if r["lm"] and best_baseline is not None:
                delta = f"{r['test'][metric] - best_baseline:+.3f}"
            cells = [
                f"{r['test'][metric]:.3f}",
                delta,
                *(f"{r['test'][o]:.3f}" for o in others),
                f"{r['validation'][metric]:.3f}",
                "-" if r["trainable"] is None else f"{r['trainable']:,}",
                r.get("epochs", "-"),
                f"{r['seconds']:.0f}",
            ]
            lines.append(f"| {r['method']} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def plot(records: list[dict], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [t for t in ORDER if any(r["task"] == t for r in records)]
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 4.2), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        group = [r for r in records if r["task"] == task]
        metric = PRIMARY[group[0]["kind"]]
        group.sort(key=lambda r: r["test"][metric])
        colours = ["tab:blue" if r["lm"] else "tab:gray" for r in group]
        ax.barh([r["method"] for r in group], [r["test"][metric] for r in group], color=colours)
        ax.set_title(f"{task}\n(test {metric}; grey: no LM)", fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "folder",
        nargs="?",
        type=pathlib.Path,
        help="folder of baselines.json and lm/ (default: the scratch folder of baselines.py and "
        "run.py; bench/results/protein_tasks for the committed runs)",
    )
    add_out_argument(parser, "protein_tasks", "folder of table.md and test_metric.png")
    args = parser.parse_args()
    folder = args.folder or scratch_dir("protein_tasks")
    records = rows(folder)
    if not records:
        sys.exit(
            f"table.py: no baselines.json or lm/*.json in {folder} (run baselines.py and run.py, "
            "or give bench/results/protein_tasks for the committed runs)"
        )
    out = results_dir(args.out, "protein_tasks")
    text = table(records)
    (out / "table.md").write_text(text)
    print(text)
    print(f"read {folder}; wrote {out / 'table.md'}")
    try:
        plot(records, out / "test_metric.png")
        print(f"wrote {out / 'test_metric.png'}")
    except ImportError:
        print("matplotlib missing: no plot")


if __name__ == "__main__":
    main()

"""The comparison's table (Markdown) and plots (matplotlib, optional)."""

from __future__ import annotations

import math
import pathlib

from ..io import atomic_output


def _number(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def results_table(rows: list[dict]) -> str:
    """One Markdown row per arm: budget, speed, held-out bits/nt and each task's test metric,
    after pretraining and at initialisation."""
    tasks = sorted({t for row in rows for t in row["tasks"]})
    head = [
        "arm",
        "vocab",
        "tokens/window",
        "non-emb. params",
        "nt seen",
        "train s",
        "tokens/s",
        "bits/nt (masked)",
        "bits/nt (PLL)",
        "accuracy",
        *(f"{t} (at init)" if init else t for t in tasks for init in (False, True)),
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [
            r["arm"],
            str(r["vocab_size"]),
            str(r["tokens_per_window"]),
            f"{r['non_embedding_parameters']:,}",
            f"{r['nucleotides_seen']:,}",
            f"{r['train_seconds']:.0f}",
            f"{r['tokens_per_s']:,.0f}",
            _number(r["bits_per_nucleotide"]),
            _number(r["pll_bits_per_nucleotide"]),
            _number(r["accuracy"]),
            *(_number(r[key].get(t)) for t in tasks for key in ("tasks", "tasks_random_init")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_results(rows: list[dict], path: str | pathlib.Path) -> None:
    """Two panels: held-out bits/nt against nucleotides seen per arm; each task's test metric
    per arm. Needs matplotlib (`pip install 'codonnt-eqx[plot]'`)."""
    import matplotlib  # optional (the plot extra), and slow to import

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after use("Agg"): no display needed

    tasks = sorted({t for row in rows for t in row["tasks"]})
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), width_ratios=[1.2, 1])
    for r in rows:
        if r["mask_span"] > 1:
            # its train-time score counts the bases shown by neighbours: not comparable
            axes[0].plot([], [])  # keep colours aligned with the bars
            continue
        curve = r["curve"]
        axes[0].plot(
            [c["nucleotides_seen"] for c in curve],
            [c["bits_per_nucleotide"] for c in curve],
            marker="o",
            label=r["arm"],
        )
    axes[0].set(
        xlabel="nucleotides seen",
        ylabel="held-out bits / nucleotide\n(train-time eval, tokens that tile)",
    )
    axes[0].axhline(2.0, color="grey", lw=0.8, ls=":")
    axes[0].legend()
    width = 0.8 / max(len(rows), 1)
    for i, r in enumerate(rows):
        for key, style in (("tasks_random_init", dict(fill=False, hatch="//")), ("tasks", {})):
            values = [r[key].get(t) for t in tasks]
            xs = [j + i * width for j, v in enumerate(values) if v is not None]
            color = axes[0].lines[i].get_color() if axes[0].lines else None
            axes[1].bar(
                xs,
                [v for v in values if v is not None],
                width * (0.9 if key == "tasks" else 1.0),
                color=color if key == "tasks" else None,
                edgecolor=color,
                label=r["arm"] if key == "tasks" else None,
                **style,
            )
    axes[1].set_xticks([j + 0.4 - width / 2 for j in range(len(tasks))], tasks, rotation=15)
    axes[1].set(ylabel="test metric, frozen linear probe (hatched: at init)")
    axes[1].axhline(0, color="grey", lw=0.8)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)

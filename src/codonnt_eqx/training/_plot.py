"""metrics.jsonl -> a PNG of loss and bits per nucleotide against tokens seen."""

from __future__ import annotations

import json
import os
import pathlib

from ..io import atomic_output


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """The records of a run's metrics.jsonl (`path`: the file or its run folder)."""
    path = pathlib.Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    records = []
    with open(path) as f:
        for line_no, line in enumerate(f, start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}, line {line_no}: not JSON ({e})") from None
    if not records:
        raise ValueError(f"{path}: no metrics yet")
    return records


def plot_metrics(path: str | os.PathLike, output: str | os.PathLike | None = None) -> pathlib.Path:
    """Plot training and validation loss and bits per nucleotide against tokens seen.

    **Arguments:**

    - `path`: a run folder or its metrics.jsonl.
    - `output`: the PNG to write (default: metrics.png beside metrics.jsonl).

    **Returns:** the PNG's path. Needs matplotlib (`pip install "codonnt-eqx[plot]"`).
    """
    try:
        import matplotlib  # optional (the plot extra), and slow to import

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # after use("Agg"): no display needed
    except ImportError:
        raise ImportError('plotting needs matplotlib: pip install "codonnt-eqx[plot]"') from None
    records = read_metrics(path)
    folder = pathlib.Path(path) if pathlib.Path(path).is_dir() else pathlib.Path(path).parent
    output = pathlib.Path(output) if output else folder / "metrics.png"
    tokens_per_step = {
        r["step"]: r["tokens_seen"] / r["step"] for r in records if "tokens_seen" in r
    }
    per_step = next(iter(tokens_per_step.values()), 1.0)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for split, style in (("train", "-"), ("validation", "o-")):
        rows = [r for r in records if r.get("split") == split]
        if not rows:
            continue
        seen = [r.get("tokens_seen", r["step"] * per_step) for r in rows]
        axes[0].plot(seen, [r["loss"] for r in rows], style, label=split, markersize=3)
        axes[1].plot(
            seen, [r["bits_per_nucleotide"] for r in rows], style, label=split, markersize=3
        )
    axes[0].set(xlabel="tokens seen", ylabel="masked cross-entropy (nats / token)")
    axes[1].set(xlabel="tokens seen", ylabel="bits per nucleotide (masked)")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(str(folder))
    with atomic_output(output) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return output

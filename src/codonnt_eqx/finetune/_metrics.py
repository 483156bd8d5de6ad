"""Metrics of downstream tasks, in NumPy float64 (tested against scipy and scikit-learn)."""

from __future__ import annotations

import numpy as np
from jaxtyping import Float, Int

# The metric early stopping watches, per task kind (higher is better for all three).
PRIMARY_METRIC = {"regression": "spearman", "classification": "mcc", "per-residue": "accuracy"}


def pearson(prediction: Float[np.ndarray, " n"], target: Float[np.ndarray, " n"]) -> float:
    """Pearson correlation; NaN when either side is constant."""
    x, y = np.asarray(prediction, np.float64), np.asarray(target, np.float64)
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        # Tested exactly: subtracting the rounded mean of a constant leaves ~1e-16 residues,
        # which would correlate to a meaningless number instead of NaN (scipy's answer).
        return float("nan")
    x, y = x - x.mean(), y - y.mean()
    # Correlation is scale-free: scaling to a maximum of 1 keeps tiny values (1e-294) from
    # underflowing to a zero denominator when squared.
    x, y = x / np.abs(x).max(), y / np.abs(y).max()
    denominator = np.sqrt(np.sum(x * x) * np.sum(y * y))
    return float(np.sum(x * y) / denominator) if denominator > 0 else float("nan")


def _ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their average rank (scipy's `rankdata(method="average")`)."""
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], len(x)]
    average = (starts + ends + 1) / 2.0  # mean of the 1-based positions start+1 .. end
    ranks = np.empty(len(x), np.float64)
    ranks[order] = np.repeat(average, ends - starts)
    return ranks


def spearman(prediction: Float[np.ndarray, " n"], target: Float[np.ndarray, " n"]) -> float:
    """Spearman rank correlation (Pearson of average ranks); NaN when either side is constant."""
    return pearson(_ranks(np.asarray(prediction)), _ranks(np.asarray(target)))


def r2(prediction: Float[np.ndarray, " n"], target: Float[np.ndarray, " n"]) -> float:
    """Coefficient of determination 1 - SS_res / SS_tot (scikit-learn's `r2_score`)."""
    target = np.asarray(target, np.float64)
    residual = np.sum((target - prediction) ** 2)
    total = np.sum((target - target.mean()) ** 2)
    if total == 0:
        return 1.0 if residual == 0 else 0.0  # scikit-learn's convention
    return float(1.0 - residual / total)


def accuracy(prediction: Int[np.ndarray, " n"], target: Int[np.ndarray, " n"]) -> float:
    return float(np.mean(np.asarray(prediction) == np.asarray(target)))


def mcc(
    prediction: Int[np.ndarray, " n"], target: Int[np.ndarray, " n"], num_classes: int
) -> float:
    """Matthews correlation coefficient, multi-class (Gorodkin's R_K, as scikit-learn): 0 when
    either side predicts a single class."""
    confusion = np.zeros((num_classes, num_classes), np.float64)
    np.add.at(confusion, (np.asarray(target), np.asarray(prediction)), 1.0)
    t, p = confusion.sum(axis=1), confusion.sum(axis=0)
    n, correct = confusion.sum(), np.trace(confusion)
    numerator = correct * n - t @ p
    denominator = np.sqrt((n * n - p @ p) * (n * n - t @ t))
    return float(numerator / denominator) if denominator > 0 else 0.0


def task_metrics(kind: str, prediction, target, num_classes: int | None = None) -> dict:
    """Every metric of a task kind.

    - regression: `spearman`, `pearson`, `r2`, `mse` (float predictions and targets);
    - classification: `mcc`, `accuracy` (class indices);
    - per-residue: `accuracy` over all labelled residues pooled (not a mean of per-protein
      accuracies), `mcc` over the same residues; `prediction` and `target` are flat arrays of
      the labelled residues (targets of -1, unlabelled codons, must already be left out).
    """
    prediction, target = np.asarray(prediction), np.asarray(target)
    if prediction.shape != target.shape:
        raise ValueError(f"{prediction.shape} predictions for {target.shape} targets")
    if kind == "regression":
        return {
            "spearman": spearman(prediction, target),
            "pearson": pearson(prediction, target),
            "r2": r2(prediction, target),
            "mse": float(np.mean((np.asarray(prediction, np.float64) - target) ** 2)),
        }
    if num_classes is None:
        raise ValueError("num_classes is needed for classification metrics")
    return {
        "accuracy": accuracy(prediction, target),
        "mcc": mcc(prediction, target, num_classes),
    }

"""Variant tables in and score tables out (tab-separated)."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable

from ..inference import TokenLogLikelihood, Variant, VariantScore
from ._atomic_file import atomic_output

VARIANT_COLUMNS = ("sequence_name", "position", "ref", "alt")
SCORE_COLUMNS = (
    *VARIANT_COLUMNS,
    "score",
    "ref_log_prob",
    "alt_log_prob",
    "masked_tokens",
    "method",
    "consequence",
    "error",
)


def read_variants(path: str | os.PathLike) -> list[Variant]:
    """Variants from a TSV of `sequence_name, position, ref, alt` (1-based positions; `-`
    for an empty allele). A header line (its position field not a number), blank lines,
    `#` comments and further columns are ignored. Raises `ValueError` naming the line."""
    variants, first = [], True
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line.strip() or line.startswith("#"):
                continue
            fields = [x.strip() for x in line.split("\t")]
            if len(fields) < 4:
                raise ValueError(
                    f"{path}, line {line_no}: expected 4 tab-separated columns "
                    f"({', '.join(VARIANT_COLUMNS)}), got {len(fields)}"
                )
            name, position, ref, alt = fields[:4]
            header, first = first, False
            try:
                pos = int(position)
            except ValueError:
                if header:
                    continue
                raise ValueError(
                    f"{path}, line {line_no}: position {position!r} is not an integer"
                ) from None
            if pos < 1:
                raise ValueError(f"{path}, line {line_no}: positions are 1-based, got {pos}")
            for allele in (ref, alt):
                if not allele or (allele != "-" and not allele.isalpha()):
                    raise ValueError(
                        f"{path}, line {line_no}: allele {allele!r} is not bases (or - for none)"
                    )
            variants.append(Variant(name, pos, ref, alt))
    return variants


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return str(value).replace("\t", " ").replace("\n", " ")


def write_variant_scores(path: str | os.PathLike, scores: Iterable[VariantScore]) -> None:
    """A TSV with a header (`SCORE_COLUMNS`), one row per variant, written atomically."""
    with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write("\t".join(SCORE_COLUMNS) + "\n")
        for s in scores:
            v = s.variant
            row = (v.sequence_name, v.position, v.ref, v.alt, s.score, s.ref_log_prob)
            row += (s.alt_log_prob, s.masked_tokens, s.method, s.consequence, s.error)
            f.write("\t".join(map(_cell, row)) + "\n")


LIKELIHOOD_COLUMNS = ("name", "length", "num_tokens", "log_likelihood", "mean_log_prob", "method")


def write_likelihoods(
    path: str | os.PathLike, rows: Iterable[tuple[str, int, TokenLogLikelihood]]
) -> None:
    """A TSV of per-sequence (pseudo-)log-likelihoods, written atomically."""
    with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write("\t".join(LIKELIHOOD_COLUMNS) + "\n")
        for name, length, ll in rows:
            n = len(ll.log_probs)
            mean = ll.total / n if n else float("nan")
            f.write("\t".join(map(_cell, (name, length, n, ll.total, mean, ll.method))) + "\n")

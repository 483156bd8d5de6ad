"""Variant tables in and score tables out (tab-separated)."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable

from ..errors import InputError
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
    "aa_score",
    "error",
)


class VariantFileError(InputError):
    """A variant table that cannot be read; the message names the file, line and field."""


# Words a header row's position column may carry (any case); a header is recognised by its
# words, never by a failed parse, so a first data row with a malformed position is an error.
_POSITION_HEADERS = {"position", "pos", "start", "position_1based"}
_NAME_HEADERS = {"sequence_name", "sequence", "name", "seq", "seqid", "chrom", "id", "record"}


def _is_header(fields: list[str]) -> bool:
    name, position, ref, alt = (f.lower().lstrip("#") for f in fields[:4])
    return (
        position in _POSITION_HEADERS
        and name in _NAME_HEADERS
        and ref in {"ref", "reference"}
        and alt in {"alt", "alternative", "alternate"}
    )


def read_variants(path: str | os.PathLike) -> list[Variant]:
    """Variants from a TSV of `sequence_name, position, ref, alt` (1-based positions; `-`
    for an empty allele; alleles are A/C/G/T/N and IUPAC codes, any case).

    An optional first row naming the columns (`sequence_name position ref alt`, or `name`/
    `pos`/`reference`/`alternative` ...) is the header; blank lines, `#` comments and further
    columns are ignored. Anything else that does not parse raises `VariantFileError` naming the
    file, the line and the field."""
    variants, first = [], True
    try:
        f = open(path, encoding="utf-8")
    except OSError as e:
        raise VariantFileError(f"{path}: cannot read the variant table ({e.strerror})") from None
    with f:
        try:
            lines = list(f)
        except UnicodeDecodeError as e:
            raise VariantFileError(f"{path}: not a UTF-8 text table ({e})") from None
    for line_no, line in enumerate(lines, start=1):
        line = line.rstrip("\r\n")
        if not line.strip() or line.startswith("#") and not (first and _looks_header(line)):
            continue
        fields = [x.strip() for x in line.split("\t")]
        if len(fields) < 4:
            raise VariantFileError(
                f"{path}, line {line_no}: expected 4 tab-separated columns "
                f"({', '.join(VARIANT_COLUMNS)}), got {len(fields)}"
            )
        header, first = first, False
        if header and _is_header(fields):
            continue
        name, position, ref, alt = fields[:4]
        if not name:
            raise VariantFileError(f"{path}, line {line_no}: empty sequence_name")
        if not position.isascii() or not position.isdigit():
            raise VariantFileError(
                f"{path}, line {line_no}: position {position!r} is not a whole number"
                + (
                    " (a header row names its columns: sequence_name, position, ref, alt)"
                    if header
                    else ""
                )
            )
        pos = int(position)
        if pos < 1:
            raise VariantFileError(f"{path}, line {line_no}: position {pos}: positions are 1-based")
        for column, allele in (("ref", ref), ("alt", alt)):
            if allele != "-" and (not allele or not set(allele.upper()) <= _BASES):
                raise VariantFileError(
                    f"{path}, line {line_no}: {column} {allele!r} is not bases (or - for none)"
                )
        variants.append(Variant(name, pos, ref, alt))
    return variants


def _looks_header(line: str) -> bool:
    fields = [x.strip() for x in line.split("\t")]
    return len(fields) >= 4 and _is_header(fields)


_BASES = set("ACGTUN") | set("RYSWKMBDHV")


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
            row += (s.alt_log_prob, s.masked_tokens, s.method, s.consequence, s.aa_score)
            row += (s.error,)
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

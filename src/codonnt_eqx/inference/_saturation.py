"""Saturation mutagenesis in silico: every substitution of a sequence scored zero-shot, as a
table and a position x alternative matrix (the deep-mutational-scanning / EVE heatmap)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Literal

import numpy as np

from ..model import NucleotideTransformer
from ..tokenizers import CODON_TABLE, Tokenizer
from ._scorer import Scorer, Variant, VariantMethod, VariantScore
from ._sequences import NamedSequence, name_and_sequence

ScanMode = Literal["snv", "codon", "amino_acid"]
SCAN_MODES: tuple[str, ...] = ("snv", "codon", "amino_acid")
# Amino acids grouped as deep-mutational-scanning figures draw them: hydrophobic, aromatic,
# special, polar, charged, then the stop.
AMINO_ACID_ORDER = "AVLIMFWYCGPSTNQDEKRH*"
CODON_ORDER = tuple(sorted(CODON_TABLE, key=lambda c: (AMINO_ACID_ORDER.index(CODON_TABLE[c]), c)))
_BASES = "ACGT"
_POSITIONS_PER_CALL = 256  # positions handed to the scorer at a time: bounds memory


@dataclasses.dataclass(frozen=True)
class SaturationScan:
    """Every substitution of one sequence and its zero-shot scores, one row per substitution.

    - `name`, `mode` (`"snv"`, `"codon"` or `"amino_acid"`), `method` (the scorer's).
    - `position`: int `[rows]`, 1-based: a nucleotide for `snv`, a codon (= residue) for
      `codon` and `amino_acid`.
    - `ref`, `alt`: the base, codon or amino acid there and what replaces it.
    - `variant`: the nucleotide change scored (for `amino_acid`, the alternative amino acid's
      codon nearest the reference codon: fewest changed bases).
    - `score`: float64 `[rows]`, the token-level log-likelihood ratio of that change (nats);
      `aa_score`: log P(alt amino acid) - log P(ref amino acid) at the masked codon (NaN
      where undefined: not coding, or a change of more than one codon token).
    - `consequence`, `error` (why a row has no score; `""` when it has one).
    - `skipped`: positions not scanned because their reference has a base other than ACGT.
    """

    name: str
    mode: str
    method: str
    position: np.ndarray
    ref: tuple[str, ...]
    alt: tuple[str, ...]
    variant: tuple[Variant, ...]
    score: np.ndarray
    aa_score: np.ndarray
    consequence: tuple[str, ...]
    error: tuple[str, ...]
    skipped: tuple[int, ...] = ()

    @property
    def value(self) -> np.ndarray:
        """The score a heatmap shows: `aa_score` for `amino_acid` scans, `score` otherwise."""
        return self.aa_score if self.mode == "amino_acid" else self.score

    def alternatives(self) -> tuple[str, ...]:
        """The heatmap's rows: the bases, the 64 codons or the 21 amino acids (stop included)."""
        return {"snv": tuple(_BASES), "codon": CODON_ORDER, "amino_acid": tuple(AMINO_ACID_ORDER)}[
            self.mode
        ]

    def matrix(self) -> tuple[np.ndarray, tuple[str, ...], np.ndarray]:
        """(positions, alternatives, values float64 `[alternatives, positions]`) of `value`;
        NaN where the alternative is the reference or was not scored."""
        positions = np.unique(self.position)
        alternatives = self.alternatives()
        row = {a: i for i, a in enumerate(alternatives)}
        column = {int(p): j for j, p in enumerate(positions)}
        out = np.full((len(alternatives), len(positions)), np.nan)
        for p, a, v in zip(self.position, self.alt, self.value, strict=True):
            out[row[a], column[int(p)]] = v
        return positions, alternatives, out

    def reference_cells(self) -> list[tuple[int, int]]:
        """(alternative row, position column) of each position's reference in `matrix`."""
        positions, alternatives, _ = self.matrix()
        ref_at = dict(zip(self.position.tolist(), self.ref, strict=True))
        row = {a: i for i, a in enumerate(alternatives)}
        return [(row[ref_at[int(p)]], j) for j, p in enumerate(positions) if ref_at[int(p)] in row]


def saturation_scan(
    model: NucleotideTransformer,
    tokenizer: Tokenizer,
    record: NamedSequence | str,
    *,
    mode: ScanMode = "snv",
    positions: Iterable[int] | None = None,
    method: VariantMethod = "masked_marginal",
    coding: bool | None = None,
    **options,
) -> SaturationScan:
    """Every substitution of `record` scored zero-shot (options: `Scorer`'s; the rest as
    for `scan`). For several records, make one `Scorer` and call `scan` with it: compiled
    shapes are kept between records.

    ```python
    scan = saturation_scan(model, tok, "ATGGCGAAAGCCTAA", mode="amino_acid")
    positions, amino_acids, values = scan.matrix()  # [21, 5]
    ```
    """
    scorer = Scorer(model, tokenizer, **options)
    return scan(scorer, record, mode=mode, positions=positions, method=method, coding=coding)


def scan(
    scorer: Scorer,
    record: NamedSequence | str,
    *,
    mode: ScanMode = "snv",
    positions: Iterable[int] | None = None,
    method: VariantMethod = "masked_marginal",
    coding: bool | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> SaturationScan:
    """Score every substitution of `record` (a FASTA record, or a sequence string, named
    `seq0`) with `scorer` (long records are scored through its windows).

    - `mode`: `"snv"` every single-nucleotide change (3 per base); `"codon"` every other
      codon at each codon of frame 1 (63 per codon); `"amino_acid"` every other amino acid
      (20 per codon, stop included, scored by `aa_score`; needs a tokenizer that makes each
      codon one token).
    - `positions`: the 1-based positions to scan (nucleotides for `snv`, codons for the
      others), e.g. `range(10, 201)`; all by default.
    - `method`: `"masked_marginal"` (one masked pass per codon token, shared by all its
      substitutions) or `"wildtype_marginal"` (one unmasked pass per window).
    - `coding`: whether the sequence is an in-frame CDS (for `consequence` and `aa_score`);
      None decides with `looks_coding`. `amino_acid` scans treat the sequence as coding.
    - `on_progress(n)`: called with each number of positions done.
    """
    if mode not in SCAN_MODES:
        raise ValueError(f"mode must be one of {SCAN_MODES}, got {mode!r}")
    name, sequence = name_and_sequence(record, 0)
    upper = sequence.upper()
    if mode == "amino_acid":
        if scorer._codons is None:
            raise ValueError(
                "an amino_acid scan needs a tokenizer that makes each codon one token "
                "(3-mer or codon); scan codons or SNVs instead"
            )
        coding = True
    unit = 1 if mode == "snv" else 3
    count = len(sequence) // unit
    if count == 0:
        raise ValueError(f"{name}: {len(sequence)} bp, no {'base' if unit == 1 else 'codon'}")
    chosen = _chosen_positions(positions, count, name, "bases" if unit == 1 else "codons")
    rows: list[tuple[int, str, str, Variant]] = []
    skipped = []
    for p in chosen:
        here = upper[(p - 1) * unit : p * unit]
        if any(b not in _BASES for b in here):
            skipped.append(p)
            continue
        rows += [(p, ref, alt, v) for ref, alt, v in _substitutions(name, p, here, mode)]
    scores: list[VariantScore] = []
    done = 0
    per_call = _POSITIONS_PER_CALL
    if method == "wildtype_marginal":  # about a window of positions: one pass serves them all
        per_call = max(per_call, scorer.core.size * (3 // unit))
    for part in _chunks(rows, per_call):
        scores += scorer.score_variants(
            {name: sequence}, [v for *_, v in part], coding=coding, method=method
        )
        done += len({p for p, *_ in part})
        if on_progress is not None:
            on_progress(done)
    if on_progress is not None and skipped:
        on_progress(done + len(skipped))
    nan = float("nan")
    return SaturationScan(
        name=name,
        mode=mode,
        method=method,
        position=np.array([p for p, *_ in rows], np.int64),
        ref=tuple(r for _, r, _, _ in rows),
        alt=tuple(a for _, _, a, _ in rows),
        variant=tuple(v for *_, v in rows),
        score=np.array([nan if s.score is None else s.score for s in scores], np.float64),
        aa_score=np.array([nan if s.aa_score is None else s.aa_score for s in scores]),
        consequence=tuple(s.consequence for s in scores),
        error=tuple(s.error or "" for s in scores),
        skipped=tuple(skipped),
    )


def _chosen_positions(positions, count: int, name: str, unit: str) -> list[int]:
    if positions is None:
        return list(range(1, count + 1))
    chosen = sorted({int(p) for p in positions})
    outside = [p for p in chosen if not 1 <= p <= count]
    if outside:
        raise ValueError(
            f"{name} has {count} {unit}: position(s) {', '.join(map(str, outside[:5]))} "
            "outside 1.." + str(count)
        )
    if not chosen:
        raise ValueError(f"{name}: no positions to scan")
    return chosen


def _substitutions(name: str, p: int, here: str, mode: str):
    """(ref, alt, the nucleotide Variant) of every substitution at position `p`."""
    if mode == "snv":
        return [(here, b, Variant(name, p, here, b)) for b in _BASES if b != here]
    at = 3 * (p - 1) + 1
    if mode == "codon":
        return [(here, c, Variant(name, at, here, c)) for c in CODON_ORDER if c != here]
    ref_aa = CODON_TABLE[here]
    out = []
    for aa in AMINO_ACID_ORDER:
        if aa == ref_aa:
            continue
        codons = [c for c in CODON_ORDER if CODON_TABLE[c] == aa]
        nearest = min(codons, key=lambda c: sum(x != y for x, y in zip(c, here, strict=True)))
        out.append((ref_aa, aa, Variant(name, at, here, nearest)))
    return out


def _chunks(rows, positions_per_chunk: int):
    """`rows` in runs of whole positions, `positions_per_chunk` positions each: the
    substitutions of one position always go to the scorer together (they share a pass)."""
    part, seen = [], set()
    for row in rows:
        if row[0] not in seen and len(seen) == positions_per_chunk:
            yield part
            part, seen = [], set()
        seen.add(row[0])
        part.append(row)
    if part:
        yield part

"""What a variant does to the protein of an in-frame coding sequence."""

from __future__ import annotations

from ..tokenizers import CODON_TABLE, STOP_CODONS

START_CODONS = frozenset({"ATG", "GTG", "TTG"})  # the usual bacterial starts


def looks_coding(sequence: str) -> bool:
    """An in-frame coding sequence: a whole number of codons, a start codon first and a stop
    codon last (as gene callers such as pyrodigal write them)."""
    s = sequence.upper()
    return len(s) >= 6 and len(s) % 3 == 0 and s[:3] in START_CODONS and s[-3:] in STOP_CODONS


def consequence(cds: str, start: int, ref: str, alt: str) -> str:
    """The effect of replacing `cds[start : start + len(ref)]` by `alt` in an in-frame coding
    sequence, under the standard genetic code.

    **Returns:** `synonymous`, `missense`, `nonsense` (a new stop codon), `stop_lost`,
    `inframe_indel`, `frameshift`, or `unknown` when a touched codon has a base other than
    ACGT.
    """
    if len(ref) != len(alt):
        return "inframe_indel" if (len(alt) - len(ref)) % 3 == 0 else "frameshift"
    first, last = start // 3 * 3, -(-(start + len(ref)) // 3) * 3
    mutated = cds[:start] + alt + cds[start + len(ref) :]
    before = [CODON_TABLE.get(cds[i : i + 3].upper()) for i in range(first, last, 3)]
    after = [CODON_TABLE.get(mutated[i : i + 3].upper()) for i in range(first, last, 3)]
    if None in before or None in after:
        return "unknown"
    if before == after:
        return "synonymous"
    if "*" in after and "*" not in before:
        return "nonsense"
    if "*" in before and "*" not in after:
        return "stop_lost"
    return "missense"

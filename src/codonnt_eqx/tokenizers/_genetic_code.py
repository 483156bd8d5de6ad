"""The standard genetic code (NCBI translation table 1) and the reverse complement."""

from __future__ import annotations

_BASES = "TCAG"
# Amino acids of the 64 codons in TCAG order (first base slowest); "*" is a stop codon.
_AMINO_ACIDS = "FFLLSSSSYY**CC*WLLLLPPPPHHQQRRRRIIIMTTTTNNKKSSRRVVVVAAAADDEEGGGG"

CODON_TABLE: dict[str, str] = {
    a + b + c: _AMINO_ACIDS[16 * i + 4 * j + k]
    for i, a in enumerate(_BASES)
    for j, b in enumerate(_BASES)
    for k, c in enumerate(_BASES)
}
STOP_CODONS = frozenset(codon for codon, aa in CODON_TABLE.items() if aa == "*")


def translate(cds: str, *, to_stop: bool = False) -> str:
    """Translate an in-frame coding sequence (upper-case ACGT, length a multiple of 3) with the
    standard code; stops are `*`. `to_stop` ends at the first stop codon (excluded). A codon
    with any other character is a `ValueError` naming its position."""
    if len(cds) % 3:
        raise ValueError(f"a coding sequence of {len(cds)} bases is not a whole number of codons")
    protein = []
    for start in range(0, len(cds), 3):
        codon = cds[start : start + 3]
        try:
            aa = CODON_TABLE[codon]
        except KeyError:
            raise ValueError(f"codon {codon!r} at base {start + 1} is not ACGT") from None
        if aa == "*" and to_stop:
            break
        protein.append(aa)
    return "".join(protein)


_COMPLEMENT = str.maketrans("ACGTNRYSWKMBDHVacgtnryswkmbdhv", "TGCANYRSWMKVHDBtgcanyrswmkvhdb")


def reverse_complement(sequence: str) -> str:
    """The reverse complement (IUPAC codes and lowercase kept; other characters unchanged)."""
    return sequence.translate(_COMPLEMENT)[::-1]

import pytest

from codonnt_eqx.tokenizers._genetic_code import CODON_TABLE, STOP_CODONS, translate

# Written out by hand from NCBI translation table 1, grouped by amino acid (independent of the
# TCAG-ordered string the module derives its table from).
_BY_AMINO_ACID = {
    "A": "GCT GCC GCA GCG", "R": "CGT CGC CGA CGG AGA AGG", "N": "AAT AAC", "D": "GAT GAC",
    "C": "TGT TGC", "Q": "CAA CAG", "E": "GAA GAG", "G": "GGT GGC GGA GGG", "H": "CAT CAC",
    "I": "ATT ATC ATA", "L": "TTA TTG CTT CTC CTA CTG", "K": "AAA AAG", "M": "ATG",
    "F": "TTT TTC", "P": "CCT CCC CCA CCG", "S": "TCT TCC TCA TCG AGT AGC",
    "T": "ACT ACC ACA ACG", "W": "TGG", "Y": "TAT TAC", "V": "GTT GTC GTA GTG",
    "*": "TAA TAG TGA",
}  # fmt: skip


def test_table_matches_the_standard_code_written_by_amino_acid():
    expected = {c: aa for aa, codons in _BY_AMINO_ACID.items() for c in codons.split()}
    assert len(expected) == 64
    assert CODON_TABLE == expected
    assert STOP_CODONS == {"TAA", "TAG", "TGA"}


def test_translate():
    assert translate("ATGGCCTGGTAA") == "MAW*"
    assert translate("ATGTAAGCC", to_stop=True) == "M"
    with pytest.raises(ValueError, match="whole number"):
        translate("ATGG")
    with pytest.raises(ValueError, match="base 4"):
        translate("ATGNNN")

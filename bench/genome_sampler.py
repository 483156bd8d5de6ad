"""Load time, memory and batch time of the genome window sampler (`GenomeCorpus`).

    python bench/genome_sampler.py                       # a synthetic 160 Mbp corpus
    python bench/genome_sampler.py genome1.fa.gz genome2.fa --batch 64 --tokens 1000

Without FASTA paths it writes a synthetic plain FASTA (a 150 Mbp "plant" of five chromosomes
and a 10 Mbp "bacterium"; soft-masked lowercase stretches and N runs as in real assemblies)
to a temporary directory, in chunks so that writing it does not inflate the peak memory.
Memory is the process's resident set (Linux /proc) before and after loading and its peak.
"""

from __future__ import annotations

import argparse
import pathlib
import resource
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from _common import add_out_argument, environment, median_seconds, results_dir, write_result  # noqa: E402
from codonnt_eqx import KmerTokenizer  # noqa: E402
from codonnt_eqx.training._data import GenomeCorpus  # noqa: E402


def rss_mib() -> float:
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def write_synthetic(path: pathlib.Path, records: list[tuple[str, int]], seed: int) -> None:
    """Random bases, 60 per line; every 1 Mbp chunk gets a lowercase stretch and an N run."""
    rng = np.random.default_rng(seed)
    letters = np.frombuffer(b"ACGT", np.uint8)
    chunk = 1_000_020  # a multiple of 60
    with open(path, "wb") as f:
        for name, size in records:
            f.write(f">{name} synthetic\n".encode())
            for begin in range(0, size, chunk):
                n = min(chunk, size - begin)
                bases = letters[rng.integers(0, 4, n)]
                soft = rng.integers(0, max(1, n - 5000))
                bases[soft : soft + 5000] += 32  # lowercase: soft-masked repeat
                gap = rng.integers(0, max(1, n - 2000))
                bases[gap : gap + 2000] = ord("N")
                lines = [bases[i : i + 60].tobytes() for i in range(0, n, 60)]
                f.write(b"\n".join(lines) + b"\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fasta", nargs="*", help="FASTA files (default: a synthetic corpus)")
    parser.add_argument("--synthetic-mbp", type=int, default=160)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=20)
    add_out_argument(parser, "genome_sampler")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        paths = [pathlib.Path(p) for p in args.fasta]
        if not paths:
            plant_mbp = max(1, args.synthetic_mbp * 15 // 16)
            per = plant_mbp * 1_000_000 // 5
            paths = [pathlib.Path(tmp, "plant.fa"), pathlib.Path(tmp, "bacterium.fa")]
            write_synthetic(paths[0], [(f"chr{i + 1}", per) for i in range(5)], seed=0)
            write_synthetic(paths[1], [("chromosome", plant_mbp * 1_000_000 // 15)], seed=1)

        rss_before = rss_mib()
        start = time.perf_counter()
        corpus = GenomeCorpus.from_fasta(paths, validation_min_bases=3 * args.tokens)
        load_s = time.perf_counter() - start
        rss_after, peak = rss_mib(), peak_rss_mib()

    tok = KmerTokenizer(3)
    step = iter(range(10**9))
    options = dict(window_tokens=args.tokens, tokenizer=tok)
    batch_s = median_seconds(
        lambda: corpus.batch(0, next(step), args.batch, **options), args.repeats
    )
    coords_s = median_seconds(
        lambda: corpus.batch_coordinates(0, next(step), args.batch, **options), args.repeats
    )
    start = time.perf_counter()
    validation_rows = sum(
        int(b.is_real.sum()) for b in corpus.validation_batches(args.batch, **options)
    )
    validation_s = time.perf_counter() - start

    summaries = corpus.describe()
    bases = sum(s.bases for s in summaries)
    result = {
        "files": [s.__dict__ for s in summaries],
        "bases": bases,
        "load_s": load_s,
        "rss_before_mib": rss_before,
        "rss_after_mib": rss_after,
        "peak_rss_mib": peak,
        "batch": args.batch,
        "window_tokens": args.tokens,
        "batch_ms": batch_s * 1e3,
        "coordinates_ms": coords_s * 1e3,
        "validation_rows": validation_rows,
        "validation_s": validation_s,
        "environment": environment(),
    }
    markdown = (
        f"# Genome sampler\n\n{len(summaries)} files, {bases / 1e6:.1f} Mbp: loaded in "
        f"{load_s:.2f} s; resident memory {rss_before:.0f} -> {rss_after:.0f} MiB "
        f"(peak {peak:.0f} MiB).\n\n"
        f"| batch x tokens | batch (ms) | coordinates only (ms) |\n|---|---|---|\n"
        f"| {args.batch} x {args.tokens} | {batch_s * 1e3:.2f} | {coords_s * 1e3:.2f} |\n\n"
        f"{validation_rows} validation windows in {validation_s:.2f} s.\n"
    )
    path = write_result("genome_sampler", result, markdown, results_dir(args.out, "genome_sampler"))
    print(markdown)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

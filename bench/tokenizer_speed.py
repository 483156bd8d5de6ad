"""Nucleotides per second of `KmerTokenizer.batch_encode` against a pure-Python tokenizer.

    python bench/tokenizer_speed.py --num 10000 --length 6000 --k 3

The pure-Python side (tests/reference_tokenizer.py) applies the same rules token by token with
dict look-ups; its output is checked equal to ours on the timed data before timing.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent.parent / "tests"))
from _common import add_out_argument, environment, median_seconds, results_dir, write_result  # noqa: E402
from codonnt_eqx import KmerTokenizer  # noqa: E402
from reference_tokenizer import reference_encode  # noqa: E402


def random_dna(num: int, length: int, n_rate: float, seed: int) -> list[str]:
    """Random ACGT with each base replaced by N with probability `n_rate` (scattered Ns are
    the tokenizer's slow path; real assemblies have few, clustered Ns)."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 4, size=(num, length))
    codes[rng.random((num, length)) < n_rate] = 4
    letters = np.frombuffer(b"ACGTN", dtype=np.uint8)[codes]
    return [row.tobytes().decode() for row in letters]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=10_000)
    parser.add_argument("--length", type=int, default=6_000)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--n-rate", type=float, default=0.001, help="fraction of N bases")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--python-subset",
        type=int,
        default=500,
        help="sequences timed for the pure-Python side (it is slow)",
    )
    add_out_argument(parser, "tokenizer_speed")
    args = parser.parse_args()

    seqs = random_dna(args.num, args.length, args.n_rate, seed=0)
    tok = KmerTokenizer(args.k)
    subset = seqs[: args.python_subset]
    ours = tok.batch_encode(subset)
    for row, seq in zip(ours, subset, strict=True):
        ref = reference_encode(seq, args.k)
        assert row[: len(ref)].tolist() == ref, "implementations disagree"

    bases = args.num * args.length
    t_ours = median_seconds(lambda: tok.batch_encode(seqs), args.repeats)
    t_python = median_seconds(
        lambda: [reference_encode(s, args.k) for s in subset], max(1, args.repeats // 2)
    )
    ours_rate = bases / t_ours
    python_rate = len(subset) * args.length / t_python
    result = {
        "command": "python bench/tokenizer_speed.py " + " ".join(sys.argv[1:]),
        "num_sequences": args.num,
        "length": args.length,
        "k": args.k,
        "n_rate": args.n_rate,
        "batch_encode_seconds": t_ours,
        "batch_encode_bases_per_s": ours_rate,
        "pure_python_bases_per_s": python_rate,
        "speedup": ours_rate / python_rate,
        "environment": environment(),
    }
    md = (
        f"# Tokenizer speed (k={args.k}, {args.num} x {args.length} bp, N rate {args.n_rate})\n\n"
        f"`{result['command']}`\n\n"
        "| implementation | bases/s |\n|---|---|\n"
        f"| `KmerTokenizer.batch_encode` (NumPy) | {ours_rate:,.0f} |\n"
        f"| pure Python (dict per token) | {python_rate:,.0f} |\n\n"
        f"Speedup: **{ours_rate / python_rate:.1f}x**. Median of {args.repeats} runs after warm-up "
        f"(pure Python timed on the first {len(subset)} sequences). "
        f"Environment: `{result['environment']}`\n"
    )
    name = f"tokenizer_speed_k{args.k}_n{args.n_rate:g}"
    path = write_result(name, result, md, results_dir(args.out, "tokenizer_speed"))
    print(md)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

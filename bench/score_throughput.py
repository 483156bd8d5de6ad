"""Zero-shot variant scoring throughput: variants/s, compile time apart.

    python bench/score_throughput.py                  # 500 random SNVs in 50 E. coli genes
    python bench/score_throughput.py --variants 2000 --genes 200

Random single-nucleotide variants (seeded) in E. coli K-12 genes found with pyrodigal (as
`embed_throughput.py`), scored with `Scorer.score_variants` (one masked window of up to 1,000
tokens centred on each variant, float32) by a `codon_nt`-sized randomly initialised model.
The first call includes compilation (reported apart); variants/s is the median of
`--repeats` further calls. The pseudo-log-likelihood of one gene (every token masked in turn)
is timed too, as tokens/s.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from _common import add_out_argument, environment, median_seconds, results_dir, write_result
from embed_throughput import _config, benchmark_genes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genes", type=int, default=50)
    parser.add_argument("--variants", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="a 2-layer toy model (smoke tests)")
    parser.add_argument("--fasta", help="genes from this FASTA instead of E. coli K-12")
    add_out_argument(parser, "score_throughput")
    args = parser.parse_args()

    import jax

    from codonnt_eqx import KmerTokenizer, NucleotideTransformer, Scorer, Variant

    sequences, source = benchmark_genes(args.genes, args.fasta)
    genes = {f"gene{i}": g for i, g in enumerate(sequences)}
    rng = np.random.default_rng(0)
    names = list(genes)
    variants = []
    for _ in range(args.variants):
        name = names[rng.integers(len(names))]
        pos = int(rng.integers(len(genes[name])))
        ref = genes[name][pos]
        alt = str(rng.choice([b for b in "ACGT" if b != ref]))
        variants.append(Variant(name, pos + 1, ref, alt))
    model = NucleotideTransformer(_config("glu", args.tiny), key=jax.random.key(0))
    scorer = Scorer(model, KmerTokenizer(3))

    start = time.perf_counter()
    scores = scorer.score_variants(genes, variants)
    first_s = time.perf_counter() - start
    compile_variants = scorer.runner.compile_seconds
    failed = [s.error for s in scores if s.error is not None]
    assert not failed, failed[:3]
    seconds = median_seconds(lambda: scorer.score_variants(genes, variants), args.repeats, 0)

    gene = max(genes.values(), key=len) if args.tiny else sorted(genes.values(), key=len)[0]
    start = time.perf_counter()
    scorer.pseudo_log_likelihood(gene)
    pll_first = time.perf_counter() - start
    pll_s = median_seconds(lambda: scorer.pseudo_log_likelihood(gene), args.repeats, 0)
    tokens = len(KmerTokenizer(3).encode(gene))

    env = environment()
    row = dict(
        variants=len(variants),
        seconds=seconds,
        variants_per_s=len(variants) / seconds,
        first_call_seconds=first_s,
        compile_seconds=compile_variants,
        shapes=len(scorer.runner.shapes),
        pll_gene_tokens=tokens,
        pll_seconds=pll_s,
        pll_tokens_per_s=tokens / pll_s,
        pll_first_call_seconds=pll_first,
    )
    print(
        f"{len(variants)} SNVs: {row['variants_per_s']:,.1f} variants/s ({seconds:.1f} s), "
        f"compile {compile_variants:.1f} s; pseudo-log-likelihood of a {tokens}-token gene: "
        f"{row['pll_tokens_per_s']:,.1f} tokens/s ({pll_s:.1f} s)"
    )
    result = {
        "command": "python bench/score_throughput.py " + " ".join(sys.argv[1:]),
        "model": "tiny" if args.tiny else "codon_nt (random init), float32",
        "genes": len(genes),
        "row": row,
        "environment": env,
    }
    lines = [
        f"# Variant scoring throughput on {env['device']} ({env['cpu_count']} CPU cores), "
        f"jax {env['jax']}",
        "",
        f"`{result['command']}`",
        "",
        f"{len(variants)} random SNVs in {len(genes)} {source}; {result['model']}.",
        "",
        f"| variants/s | s / call | compile s | PLL tokens/s (gene of {tokens} tokens) |",
        "|---|---|---|---|",
        f"| {row['variants_per_s']:,.1f} | {seconds:.1f} | {compile_variants:.1f} | "
        f"{row['pll_tokens_per_s']:,.1f} |",
        "",
        f"Environment: `{env}`",
        "",
    ]
    device = str(env["device"]).lower().replace(" ", "-")
    name = f"score_throughput_{device}_jax{env['jax']}" + ("_tiny" if args.tiny else "")
    folder = results_dir(args.out, "score_throughput")
    print(f"wrote {write_result(name, result, chr(10).join(lines), folder)}")


if __name__ == "__main__":
    main()

"""Zero-shot variant scoring throughput: variants/s, compile time apart.

    python bench/score_throughput.py                  # 500 random SNVs in 50 E. coli genes
    python bench/score_throughput.py --variants 2000 --genes 200

Random single-nucleotide variants (seeded) in E. coli K-12 genes found with pyrodigal (as
`embed_throughput.py`), scored with `Scorer.score_variants` (one masked window of up to 1,000
tokens centred on each variant, float32) by a `codon_nt`-sized randomly initialised model.
The first call includes compilation (reported apart); variants/s is the median of
`--repeats` further calls. The pseudo-log-likelihood of one gene (every token masked in turn)
is timed too, as tokens/s.

Modes side by side on the same genes (`--saturation-codons N`): the per-variant path (one SNV
at each of N codons: one masked pass each), shared-pass masked marginals on a saturation set
(all 63 alternative codons at each of those N codons: one masked pass per codon), and
wild-type marginals on the same set (`method="wildtype_marginal"`: one unmasked pass per
window).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from _common import add_out_argument, environment, median_seconds, results_dir, write_result
from embed_throughput import _config, benchmark_genes
from train_step import cpu_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genes", type=int, default=50)
    parser.add_argument("--variants", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="a 2-layer toy model (smoke tests)")
    parser.add_argument("--fasta", help="genes from this FASTA instead of E. coli K-12")
    parser.add_argument(
        "--saturation-codons", type=int, default=24, help="codons of the saturation set"
    )
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
    modes = saturation_modes(scorer, genes, args.saturation_codons, args.repeats)

    env = environment()
    env["cpu_model"] = cpu_model()
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
        modes=modes,
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
        f"# Variant scoring throughput on {env['device']}: {env['cpu_model']} "
        f"({env['cpu_count']} cores), "
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
        f"Modes on {args.saturation_codons} consecutive codons of one gene (model rows: "
        "windows run):",
        "",
        "| mode | variants | model rows | s / call | variants/s | vs per-variant |",
        "|---|---|---|---|---|---|",
        *(
            f"| {m['mode']} | {m['variants']} | {m['rows']} | {m['seconds']:.2f} | "
            f"{m['variants_per_s']:,.1f} | {m['speedup']:.1f}x |"
            for m in modes
        ),
        "",
        f"Environment: `{env}`",
        "",
    ]
    device = str(env["device"]).lower().replace(" ", "-")
    name = f"score_throughput_{device}_jax{env['jax']}" + ("_tiny" if args.tiny else "")
    folder = results_dir(args.out, "score_throughput")
    print(f"wrote {write_result(name, result, chr(10).join(lines), folder)}")


def saturation_modes(scorer, genes: dict, codons: int, repeats: int) -> list[dict]:
    """variants/s of the per-variant path, shared-pass masked marginals and wild-type
    marginals, on `codons` consecutive codons (after the start codon) of the first gene that
    has them and is whole codons of A/C/G/T."""
    from codonnt_eqx import Variant

    name = next(
        n
        for n, g in genes.items()
        if len(g) % 3 == 0 and len(g) >= 3 * (codons + 2) and set(g) <= set("ACGT")
    )
    gene = genes[name]
    single, saturation = [], []
    bases = "ACGT"
    for c in range(1, codons + 1):
        codon = gene[3 * c : 3 * c + 3]
        single.append(Variant(name, 3 * c + 2, codon[1], "A" if codon[1] != "A" else "C"))
        others = [a + b + d for a in bases for b in bases for d in bases if a + b + d != codon]
        saturation += [Variant(name, 3 * c + 1, codon, alt) for alt in others]
    cases = [
        ("per-variant (one SNV per codon)", single, "masked_marginal"),
        ("saturation, shared masked passes", saturation, "masked_marginal"),
        ("saturation, wild-type marginals", saturation, "wildtype_marginal"),
    ]
    rows, run = [], scorer.core.run
    out = []
    for mode, variants, method in cases:
        rows.clear()
        scorer.core.run = lambda r, reduce: rows.append(len(r)) or run(r, reduce)
        scorer.score_variants(genes, variants, method=method)  # compiles its shapes
        counted = sum(rows)
        scorer.core.run = run
        seconds = median_seconds(
            lambda v=variants, m=method: scorer.score_variants(genes, v, method=m), repeats, 0
        )
        out.append(dict(mode=mode, variants=len(variants), rows=counted, seconds=seconds))
    for m in out:
        m["variants_per_s"] = m["variants"] / m["seconds"]
        m["speedup"] = m["variants_per_s"] / out[0]["variants_per_s"]
        print(f"{m['mode']}: {m['variants_per_s']:,.1f} variants/s ({m['speedup']:.1f}x)")
    return out


if __name__ == "__main__":
    main()

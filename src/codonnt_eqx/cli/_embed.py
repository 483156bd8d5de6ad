"""The command line's file-writing side: `embed -o OUT` and `score`."""

from __future__ import annotations

import argparse
import sys
import time

from ..inference import POOLINGS, Embedder, InvalidRecordError
from ..io import iter_fasta
from ..kernels import IMPLEMENTATIONS


def _records(args: argparse.Namespace):
    return iter_fasta(sys.stdin.buffer if args.fasta == "-" else args.fasta)


def _progress(unit: str):
    """A tqdm bar on stderr, or None without tqdm (an optional dependency)."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(unit=unit, file=sys.stderr, dynamic_ncols=True, mininterval=0.5)


def _report_skipped(skipped: list[InvalidRecordError]) -> None:
    if skipped:
        print(f"skipped {len(skipped)} record(s) that cannot be tokenized:", file=sys.stderr)
        for error in skipped:
            print(f"  {error}", file=sys.stderr)


def add_embed_output_options(embed: argparse.ArgumentParser) -> None:
    """`embed`'s options for writing embeddings to a file."""
    from ._main import _int_in

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
        "--batch-tokens", type=_int_in(1), default=8192, help="padded tokens per batch and device"
    )
    out.add_argument(
        "--window",
        type=_int_in(2),
        help="tokens per window for long sequences (default: 1000, or the model's positions)",
    )
    out.add_argument("--overlap", type=_int_in(0), help="tokens shared by adjacent windows")
    _devices_option(out)


def _devices_option(parser) -> None:
    from ._main import _int_in

    parser.add_argument(
        "--devices",
        type=_int_in(1),
        help="split each batch over the first N local devices (default: all of them)",
    )


def embed_to_file(args: argparse.Namespace) -> None:
    """`codonnt-eqx embed FASTA -o OUT`."""
    import jax

    from ..io import output_format, write_embeddings
    from ._main import _embedding_model

    output_format(args.output)  # a bad name fails before the model loads
    if args.per_token and args.rc_average:
        raise ValueError("--rc-average averages pooled embeddings; it cannot go with --per-token")
    model, tok, description = _embedding_model(args)
    print(f"Model: {description}.", file=sys.stderr)
    embedder = Embedder(
        model,
        tok,
        layers=args.layers,
        pooling="none" if args.per_token else args.pooling,
        dtype=args.dtype,
        batch_tokens=args.batch_tokens,
        max_batch=args.batch_size,
        bucket=args.bucket,
        window=args.window,
        overlap=args.overlap,
        rc_average=args.rc_average,
        attention=args.attention,
        devices=args.devices,
    )
    skipped: list[InvalidRecordError] = []
    bar = _progress("seq")

    def results():
        for result in embedder(
            _records(args), on_invalid=skipped.append if args.skip_invalid else None
        ):
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"{embedder.tokens_done:,} tokens", refresh=False)
            yield result

    start = time.perf_counter()
    try:
        count = write_embeddings(
            args.output,
            results(),
            layers=embedder.layers if args.layers else None,
            per_token=args.per_token,
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
    _report_skipped(skipped)


def add_score_parser(commands) -> None:
    """The `score` command."""
    from ._main import _int_in, _tokenizer_options

    p = commands.add_parser(
        "score",
        help="zero-shot variant scores (--variants) or pseudo-log-likelihoods, as a TSV",
        description="With --variants: the log-likelihood ratio alt vs ref of each variant "
        "with the tokens it changes masked. Without: each sequence's pseudo-log-likelihood.",
    )
    _tokenizer_options(p)
    p.add_argument("-o", "--output", required=True, help="TSV to write (atomically)")
    p.add_argument(
        "--variants", help="TSV of sequence_name, position (1-based), ref, alt (- for none)"
    )
    p.add_argument(
        "--coding",
        default="auto",
        choices=["auto", "yes", "no"],
        help="are the sequences in-frame CDSs (consequence column)? auto: start..stop, length 3n",
    )
    p.add_argument(
        "--one-pass",
        action="store_true",
        help="without --variants: the one-pass unmasked approximation, not the masked PLL",
    )
    p.add_argument(
        "--skip-invalid",
        action="store_true",
        help="write unscorable variants (e.g. ref mismatches) with an error instead of stopping",
    )
    p.add_argument(
        "--batch-tokens", type=_int_in(1), default=8192, help="padded tokens per batch and device"
    )
    p.add_argument("--bucket", type=_int_in(1), default=128)
    p.add_argument("--window", type=_int_in(2), help="tokens per window (default: 1000)")
    p.add_argument("--attention", default="auto", choices=IMPLEMENTATIONS)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    _devices_option(p)
    weights = p.add_mutually_exclusive_group()
    weights.add_argument("--checkpoint", help="folder of weights or a shipped model's name")
    weights.add_argument("--random-init", action="store_true", help="a random codon_nt model")
    p.add_argument("--seed", type=int, default=0, help="initialisation seed (--random-init)")
    p.set_defaults(run=score_command)


def score_command(args: argparse.Namespace) -> None:
    """`codonnt-eqx score FASTA [--variants TSV] -o OUT.tsv`."""
    from ..inference import Scorer
    from ..io import read_variants, write_likelihoods, write_variant_scores
    from ._main import _embedding_model

    variants = read_variants(args.variants) if args.variants else None
    model, tok, description = _embedding_model(args)
    print(f"Model: {description}.", file=sys.stderr)
    scorer = Scorer(
        model,
        tok,
        dtype=args.dtype,
        batch_tokens=args.batch_tokens,
        bucket=args.bucket,
        window=args.window,
        attention=args.attention,
        devices=args.devices,
    )
    start = time.perf_counter()
    if variants is None:
        rows, skipped = [], []
        bar = _progress("seq")
        for record in _records(args):
            method = (
                scorer.one_pass_log_likelihood if args.one_pass else scorer.pseudo_log_likelihood
            )
            try:
                rows.append((record.name, len(record.sequence), method(record.sequence)))
            except ValueError as e:  # a record the tokenizer rejects
                if not args.skip_invalid:
                    raise ValueError(f"record {record.name!r}: {e}") from e
                skipped.append(f"{record.name}: {e}")
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        write_likelihoods(args.output, rows)
        print(f"wrote {args.output}: {len(rows)} sequences", file=sys.stderr)
        for line in skipped:
            print(f"skipped {line}", file=sys.stderr)
        return
    coding = {"auto": None, "yes": True, "no": False}[args.coding]
    scores = scorer.score_variants(list(_records(args)), variants, coding=coding)
    failed = [s for s in scores if s.error is not None]
    if failed and not args.skip_invalid:
        shown = "; ".join(
            f"{s.variant.sequence_name}:{s.variant.position} {s.error}" for s in failed[:5]
        )
        more = f" (and {len(failed) - 5} more)" if len(failed) > 5 else ""
        raise ValueError(
            f"{len(failed)} of {len(scores)} variants cannot be scored: {shown}{more}; "
            "--skip-invalid writes them with the reason in the error column"
        )
    write_variant_scores(args.output, scores)
    wall = time.perf_counter() - start
    scored = len(scores) - len(failed)
    print(
        f"wrote {args.output}: {scored} variants scored, {len(failed)} not, in {wall:.1f} s "
        f"({scored / max(wall - scorer.runner.compile_seconds, 1e-9):,.1f} variants/s without "
        f"compilation; compile {scorer.runner.compile_seconds:.1f} s)",
        file=sys.stderr,
    )
    for s in failed:
        print(
            f"not scored: {s.variant.sequence_name}:{s.variant.position} {s.error}", file=sys.stderr
        )

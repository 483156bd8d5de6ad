"""The `codonnt-eqx` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np

from ._fasta import FastaRecord, read_fasta
from ._tokenizers import IUPAC_AMBIGUITY, MAX_K, KmerTokenizer
from .kernels._attention import IMPLEMENTATIONS


def _tokenizer(args: argparse.Namespace) -> KmerTokenizer:
    lenient = not args.strict
    return KmerTokenizer(args.k, uppercase=lenient, iupac_to_n=lenient)


def _base_counts(seq: str) -> tuple[int, int, int]:
    """(N, other IUPAC ambiguity codes, lowercase) counts of one sequence."""
    raw = np.frombuffer(seq.encode("ascii", errors="replace"), dtype=np.uint8)
    upper = np.frombuffer(seq.upper().encode("ascii", errors="replace"), dtype=np.uint8)
    n = int(np.count_nonzero(upper == ord("N")))
    ambiguous = int(np.isin(upper, np.frombuffer(IUPAC_AMBIGUITY.encode(), np.uint8)).sum())
    lowercase = int(np.count_nonzero((raw >= ord("a")) & (raw <= ord("z"))))
    return n, ambiguous, lowercase


def _print_token_summary(records: Sequence[FastaRecord], ids: np.ndarray, tok: KmerTokenizer):
    num_tokens = (ids != tok.pad_id).sum(axis=1)
    width = max(8, *(len(r.name) for r in records))
    print(
        f"{'sequence':<{width}}  {'bases':>8}  {'tokens':>7}  {'N':>5}  {'ambig':>5}  {'lower':>5}"
    )
    totals = np.zeros(5, dtype=np.int64)
    for record, count in zip(records, num_tokens, strict=True):
        row = (len(record.sequence), int(count), *_base_counts(record.sequence))
        totals += row
        cells = "  ".join(f"{x:>{w}}" for x, w in zip(row, (8, 7, 5, 5, 5), strict=True))
        print(f"{record.name:<{width}}  {cells}")
    print(
        f"{len(records)} sequences, {totals[0]} bases -> {totals[1]} tokens "
        f"(k={tok.k}, vocabulary {tok.vocab_size}, <cls> included); "
        f"{totals[2]} N, {totals[3]} other ambiguous bases mapped to N, {totals[4]} lowercase"
    )


def _tokenize_and_summarise(args: argparse.Namespace, tok: KmerTokenizer):
    """Read the FASTA file, tokenize it, print the summary; returns (records, ids)."""
    records = read_fasta(sys.stdin.buffer if args.fasta == "-" else args.fasta)
    ids = tok.batch_encode([r.sequence for r in records])
    print(f"{args.fasta}: tokenized with {tok!r}")
    _print_token_summary(records, ids, tok)
    return records, ids


def _tokenize_command(args: argparse.Namespace) -> None:
    _tokenize_and_summarise(args, _tokenizer(args))


def _batches(sizes: np.ndarray, batch_size: int, bucket: int):
    """Indices grouped by similar token count, each with its padded length (a multiple of
    `bucket`, so that only a few shapes are compiled)."""
    order = np.argsort(sizes, kind="stable")
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        yield idx, int(-(-sizes[idx].max() // bucket) * bucket)


def _embed_command(args: argparse.Namespace) -> None:
    import time

    import equinox as eqx
    import jax
    import jax.numpy as jnp

    from ._checkpoints import from_pretrained
    from ._config import preset
    from ._model import NucleotideTransformer

    if args.checkpoint:
        lenient = not args.strict
        model, tok = from_pretrained(args.checkpoint, uppercase=lenient, iupac_to_n=lenient)
        description = f"{args.checkpoint} ({model.num_parameters() / 1e6:.1f}M parameters)"
    else:
        tok = _tokenizer(args)
        model = NucleotideTransformer(preset("codon_nt"), key=jax.random.key(args.seed))
        description = (
            f"codon_nt preset ({model.num_parameters() / 1e6:.1f}M parameters), RANDOMLY "
            "INITIALISED - no weights are loaded (--checkpoint), so the embeddings below carry "
            "no biology"
        )
    records, ids = _tokenize_and_summarise(args, tok)
    sizes = (ids != tok.pad_id).sum(axis=1)
    config = model.config
    if config.positional_embedding == "learned" and sizes.max() > config.max_positions:
        i = int(np.argmax(sizes))
        raise ValueError(
            f"{records[i].name} has {sizes[i]} tokens; this model (learned positions) takes at "
            f"most {config.max_positions}"
        )
    print(f"\nModel: {description}.")
    dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[args.dtype]

    @eqx.filter_jit
    def embed(model, tokens):
        out = jax.vmap(lambda t: model(t, attention=args.attention, dtype=dtype))(tokens)
        return out.embeddings

    compiled, compile_s = {}, 0.0
    batches = list(_batches(sizes, args.batch_size, args.bucket))
    for idx, length in batches:
        shape = (len(idx), length)
        if shape not in compiled:
            start = time.perf_counter()
            compiled[shape] = embed.lower(model, jnp.zeros(shape, jnp.int32)).compile()
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


def _int_in(low: int, high: int | None = None):
    """An argparse type: an integer in [low, high]."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            bounds = f">= {low}" if high is None else f"in {low}..{high}"
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {value}")
        return value

    return parse


def _tokenizer_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("fasta", help="FASTA file, plain or gzipped; - reads standard input")
    parser.add_argument(
        "--strict",
        action="store_true",
        help="reject lowercase and IUPAC ambiguity codes instead of mapping them",
    )
    parser.set_defaults(k=3)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="codonnt-eqx", description="Codon-NT (Nucleotide Transformer, 3-mers) in JAX."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    tokenize = commands.add_parser("tokenize", help="tokenize a FASTA file and summarise it")
    _tokenizer_options(tokenize)
    tokenize.add_argument("--k", type=_int_in(1, MAX_K), default=3, help="k-mer size (Codon-NT: 3)")
    tokenize.set_defaults(run=_tokenize_command)

    embed = commands.add_parser(
        "embed", help="tokenize a FASTA file and embed it with a Codon-NT-sized model"
    )
    _tokenizer_options(embed)
    embed.add_argument("--batch-size", type=_int_in(1), default=1, help="sequences per batch")
    embed.add_argument(
        "--bucket",
        type=_int_in(1),
        default=128,
        help="pad batches to a multiple of this many tokens (fewer compiles)",
    )
    embed.add_argument(
        "--attention",
        default="auto",
        choices=IMPLEMENTATIONS,
    )
    embed.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    embed.add_argument(
        "--checkpoint", help="folder of published or saved weights (default: random init)"
    )
    embed.add_argument("--seed", type=int, default=0, help="initialisation seed")
    embed.set_defaults(run=_embed_command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (argument errors exit with 2)."""
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except BrokenPipeError:  # `codonnt-eqx ... | head`: the reader left, nothing to report
        sys.stderr.close()
        return 1
    except KeyboardInterrupt:
        print("codonnt-eqx: interrupted", file=sys.stderr)
        return 130
    except (OSError, ValueError) as e:  # FASTA, sequence, checkpoint and argument errors
        print(f"codonnt-eqx: error: {_one_line(e)}", file=sys.stderr)
        return 1
    return 0


def _one_line(error: Exception) -> str:
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        return f"{error.filename}: {error.strerror}"
    return " ".join(str(error).split()) or type(error).__name__

"""The `codonnt-eqx` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np

from ..accelerators import AcceleratorUnavailableError
from ..io import FastaRecord, read_fasta
from ..kernels import IMPLEMENTATIONS
from ..tokenizers import IUPAC_AMBIGUITY, MAX_K, KmerTokenizer
from ..training import TrainingError


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


def _embedding_model(args: argparse.Namespace):
    """(model, tokenizer, description) for `embed`: the shipped default model, the weights in
    --checkpoint (a folder or a shipped name), or a random initialisation on --random-init."""
    import jax

    from ..checkpoints import DEFAULT_MODEL, from_pretrained, names_shipped_model
    from ..model import NucleotideTransformer, preset

    if args.random_init:
        model = NucleotideTransformer(preset("codon_nt"), key=jax.random.key(args.seed))
        description = (
            f"codon_nt preset ({model.num_parameters() / 1e6:.1f}M parameters), RANDOMLY "
            f"INITIALISED (--random-init, seed {args.seed}): the embeddings below carry no biology"
        )
        return model, _tokenizer(args), description
    lenient = not args.strict
    name = args.checkpoint or DEFAULT_MODEL
    model, tok = from_pretrained(name, uppercase=lenient, iupac_to_n=lenient)
    size = f"{model.num_parameters() / 1e6:.1f}M parameters"
    if names_shipped_model(name):
        description = (
            f"{name} ({size}), shipped with codonnt-eqx: a small model pretrained here on a few "
            "genomes, not the published Codon-NT (see --checkpoint and the README)"
        )
    else:
        description = f"{name} ({size})"
    return model, tok, description


def _embed_command(args: argparse.Namespace) -> None:
    if args.output:
        from ._embed import embed_to_file

        return embed_to_file(args)
    import time

    import equinox as eqx
    import jax
    import jax.numpy as jnp

    model, tok, description = _embedding_model(args)
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
    batches = list(_batches(sizes, args.batch_size or 1, args.bucket))
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


def _pretrain_command(args: argparse.Namespace) -> None:
    import jax

    if args.distributed or args.coordinator or args.num_processes:
        # No arguments: jax detects SLURM, Open MPI, Kubernetes and TPU pods by itself.
        jax.distributed.initialize(
            coordinator_address=args.coordinator,
            num_processes=args.num_processes,
            process_id=args.process_id,
        )
    from ..model import ModelConfig, preset
    from ..training import GenomeCorpus, PretrainConfig, pretrain

    tok = KmerTokenizer(args.k, uppercase=True, iupac_to_n=True)
    sizes = (args.layers, args.width, args.heads, args.ffn)
    if any(s is not None for s in sizes) and any(s is None for s in sizes):
        raise ValueError("give all of --layers, --width, --heads and --ffn, or a --preset")
    if args.layers is not None:
        model_config = ModelConfig(
            vocab_size=tok.vocab_size,
            embed_dim=args.width,
            num_layers=args.layers,
            num_heads=args.heads,
            ffn_dim=args.ffn,
            pad_token_id=tok.pad_id,
            mask_token_id=tok.mask_id,
            k_for_kmers=args.k,
        )
    else:
        model_config = preset(args.preset)
    config = PretrainConfig(
        seq_length=args.seq_length,
        tokens_per_batch=args.tokens_per_batch,
        micro_batch_size=args.micro_batch,
        steps=args.steps,
        seed=args.seed,
        warmup_steps=args.warmup_steps,
        init_lr=args.init_lr,
        peak_lr=args.peak_lr,
        dtype=args.dtype,
        remat=args.remat,
        attention=args.attention,
        fsdp=args.fsdp,
        log_every=args.log_every,
        eval_every=args.eval_every,
        eval_windows=args.eval_windows,
        checkpoint_every=args.checkpoint_every,
        keep_checkpoints=args.keep,
    )
    corpus = GenomeCorpus.from_fasta(
        args.fasta,
        weights=args.weights,
        validation_fraction=args.validation_fraction,
        # at least one validation window per record long enough to spare it
        validation_min_bases=(args.seq_length - 1) * args.k,
    )
    if jax.process_index() == 0:
        for f in corpus.describe():
            print(
                f"{f.name}: {f.records} records, {f.bases:,} bases, {f.n_fraction:.1%} N, "
                f"{f.probability:.1%} of training windows, {f.validation_bases:,} held out"
            )
        print(
            f"model: {model_config.num_layers} x {model_config.embed_dim}, "
            f"{model_config.num_heads} heads; batch {config.batch_size} x {config.seq_length} "
            f"tokens ({config.accumulation} micro-batches) on {jax.device_count()} device(s)"
        )
    pretrain(model_config, tok, corpus, args.out, config, resume=args.resume)


def _plot_command(args: argparse.Namespace) -> None:
    from ..training import plot_metrics

    path = plot_metrics(args.metrics, args.output)
    print(f"wrote {path}")


def _float_above(low: float):
    """An argparse type: a finite float > low."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (value > low and value < float("inf")):
            raise argparse.ArgumentTypeError(f"must be a finite number > {low}, got {text}")
        return value

    return parse


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
        "embed", help="tokenize a FASTA file and embed it (default: the shipped codon-nt-mini)"
    )
    _tokenizer_options(embed)
    embed.add_argument(
        "--batch-size",
        type=_int_in(1),
        help="sequences per batch (default 1; with -o at most this many per device, default no "
        "limit)",
    )
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
    weights = embed.add_mutually_exclusive_group()
    weights.add_argument(
        "--checkpoint",
        help="folder of published or saved weights, or a shipped model's name "
        "(default: the shipped codon-nt-mini)",
    )
    weights.add_argument(
        "--random-init",
        action="store_true",
        help="a randomly initialised codon_nt-sized model instead of trained weights",
    )
    embed.add_argument("--seed", type=int, default=0, help="initialisation seed (--random-init)")
    embed.set_defaults(run=_embed_command)
    from ._embed import add_embed_output_options, add_score_parser

    add_embed_output_options(embed)
    _pretrain_parser(commands)
    add_score_parser(commands)
    from ._finetune import add_finetune_parser

    add_finetune_parser(commands)
    from ._experiment import add_experiment_parser

    add_experiment_parser(commands, _int_in, _float_above)
    from ._plan import add_plan_parser

    add_plan_parser(commands)
    return parser


def _pretrain_parser(commands) -> None:
    from ..model import PRESETS

    p = commands.add_parser(
        "pretrain",
        help="pretrain a model with masked language modelling on FASTA genomes",
        description="Masked-language-model pretraining (Codon-NT's recipe by default) on "
        "windows of FASTA genomes, resumable, on one or many devices and processes.",
    )
    p.add_argument("fasta", nargs="+", help="FASTA files, plain or gzipped")
    p.add_argument("--out", required=True, help="run folder (checkpoints, metrics, model)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--weights", type=_float_above(0.0), nargs="+", help="mixture weight per file")
    p.add_argument("--validation-fraction", type=_float_above(0.0), default=0.01)
    size = p.add_argument_group("model size (a preset, or all of --layers/--width/...)")
    size.add_argument("--preset", default="codon_nt", choices=sorted(PRESETS))
    size.add_argument("--layers", type=_int_in(1))
    size.add_argument("--width", type=_int_in(1), help="embedding dimension")
    size.add_argument("--heads", type=_int_in(1))
    size.add_argument("--ffn", type=_int_in(1), help="feed-forward (GLU) width")
    p.add_argument("--k", type=_int_in(1, MAX_K), default=3, help="k-mer size (Codon-NT: 3)")
    recipe = p.add_argument_group("recipe (defaults: Codon-NT's)")
    recipe.add_argument("--seq-length", type=_int_in(2), default=1000, help="tokens per window")
    recipe.add_argument("--tokens-per-batch", type=_int_in(1), default=1_000_000)
    recipe.add_argument("--micro-batch", type=_int_in(1), help="sequences per pass (accumulate)")
    recipe.add_argument("--steps", type=_int_in(1), default=100_000)
    recipe.add_argument("--warmup-steps", type=_int_in(1), default=16_000)
    recipe.add_argument("--init-lr", type=_float_above(0.0), default=5e-5)
    recipe.add_argument("--peak-lr", type=_float_above(0.0), default=1e-4)
    recipe.add_argument("--seed", type=_int_in(0), default=0)
    recipe.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    recipe.add_argument("--remat", action="store_true", help="recompute blocks in backward")
    recipe.add_argument("--attention", default="auto", choices=IMPLEMENTATIONS)
    run = p.add_argument_group("bookkeeping and devices")
    run.add_argument("--log-every", type=_int_in(1), default=10)
    run.add_argument("--eval-every", type=_int_in(1), default=1000)
    run.add_argument("--eval-windows", type=_int_in(1), default=512)
    run.add_argument("--checkpoint-every", type=_int_in(1), default=1000)
    run.add_argument("--keep", type=_int_in(1), default=3, help="checkpoints kept")
    run.add_argument("--fsdp", type=_int_in(1), default=1, help="devices sharding parameters")
    run.add_argument(
        "--distributed",
        action="store_true",
        help="multi-process run: jax.distributed finds the cluster (SLURM, MPI, TPU pods)",
    )
    run.add_argument("--coordinator", help="jax.distributed coordinator host:port")
    run.add_argument("--num-processes", type=_int_in(1))
    run.add_argument("--process-id", type=_int_in(0))
    p.set_defaults(run=_pretrain_command)

    plot = commands.add_parser("plot", help="plot a run's metrics.jsonl (needs matplotlib)")
    plot.add_argument("metrics", help="run folder or its metrics.jsonl")
    plot.add_argument("-o", "--output", help="PNG path (default: beside metrics.jsonl)")
    plot.set_defaults(run=_plot_command)


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
    except (OSError, ValueError, TrainingError, AcceleratorUnavailableError) as e:
        print(f"codonnt-eqx: error: {_one_line(e)}", file=sys.stderr)
        return 1
    return 0


def _one_line(error: Exception) -> str:
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        return f"{error.filename}: {error.strerror}"
    return " ".join(str(error).split()) or type(error).__name__

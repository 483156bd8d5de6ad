"""`codonnt-eqx pretrain`: masked-language-model pretraining on FASTA genomes."""

from __future__ import annotations

import argparse
import signal

import jax

from ..io import check_folder_not_input
from ..model import PRESETS, ModelConfig, preset
from ..tokenizers import MAX_K, KmerTokenizer
from ..training import RUN_FILES, GenomeCorpus, PretrainConfig, pretrain
from ._options import add_run_options, float_above, int_in, run_options
from ._signals import Signalled


def add_pretrain_parser(commands) -> None:

    p = commands.add_parser(
        "pretrain",
        help="pretrain a model with masked language modelling on FASTA genomes",
        description="Masked-language-model pretraining (Codon-NT's recipe by default) on "
        "windows of FASTA genomes, resumable, on one or many devices and processes.",
    )
    p.add_argument("fasta", nargs="+", help="FASTA files, plain or gzipped")
    p.add_argument("--out", required=True, help="run folder (checkpoints, metrics, model)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--weights", type=float_above(0.0), nargs="+", help="mixture weight per file")
    p.add_argument("--validation-fraction", type=float_above(0.0), default=0.01)
    size = p.add_argument_group("model size (a preset, or all of --layers/--width/...)")
    size.add_argument("--preset", default="codon_nt", choices=sorted(PRESETS))
    size.add_argument("--layers", type=int_in(1))
    size.add_argument("--width", type=int_in(1), help="embedding dimension")
    size.add_argument("--heads", type=int_in(1))
    size.add_argument("--ffn", type=int_in(1), help="feed-forward (GLU) width")
    p.add_argument("--k", type=int_in(1, MAX_K), default=3, help="k-mer size (Codon-NT: 3)")
    recipe = p.add_argument_group("recipe (defaults: Codon-NT's)")
    recipe.add_argument("--seq-length", type=int_in(2), default=1000, help="tokens per window")
    recipe.add_argument("--tokens-per-batch", type=int_in(1), default=1_000_000)
    recipe.add_argument("--micro-batch", type=int_in(1), help="sequences per pass (accumulate)")
    recipe.add_argument("--steps", type=int_in(1), default=100_000)
    recipe.add_argument("--warmup-steps", type=int_in(1), default=16_000)
    recipe.add_argument("--init-lr", type=float_above(0.0), default=5e-5)
    recipe.add_argument("--peak-lr", type=float_above(0.0), default=1e-4)
    recipe.add_argument("--seed", type=int_in(0), default=0)
    add_run_options(recipe, dtype="bfloat16", remat=True)
    run = p.add_argument_group("bookkeeping and devices")
    run.add_argument("--log-every", type=int_in(1), default=10)
    run.add_argument("--eval-every", type=int_in(1), default=1000)
    run.add_argument("--eval-windows", type=int_in(1), default=512)
    run.add_argument("--checkpoint-every", type=int_in(1), default=1000)
    run.add_argument("--keep", type=int_in(1), default=3, help="checkpoints kept")
    run.add_argument("--fsdp", type=int_in(1), default=1, help="devices sharding parameters")
    run.add_argument(
        "--distributed",
        action="store_true",
        help="multi-process run: jax.distributed finds the cluster (SLURM, MPI, TPU pods)",
    )
    run.add_argument("--coordinator", help="jax.distributed coordinator host:port")
    run.add_argument("--num-processes", type=int_in(1))
    run.add_argument("--process-id", type=int_in(0))
    p.set_defaults(run=_pretrain_command)


def _pretrain_command(args: argparse.Namespace) -> None:

    if args.distributed or args.coordinator or args.num_processes:
        # No arguments: jax detects SLURM, Open MPI, Kubernetes and TPU pods by itself.
        jax.distributed.initialize(
            coordinator_address=args.coordinator,
            num_processes=args.num_processes,
            process_id=args.process_id,
        )

    check_folder_not_input(args.out, args.fasta, writes=RUN_FILES)
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
        **run_options(args),
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
    result = pretrain(model_config, tok, corpus, args.out, config, resume=args.resume)
    if result.signal is not None:  # stopped cleanly with a checkpoint: exit as signalled
        raise Signalled(signal.Signals[result.signal])

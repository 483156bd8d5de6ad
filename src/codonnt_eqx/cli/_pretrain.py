"""`codonnt-eqx pretrain`: masked-language-model pretraining on FASTA genomes."""

from __future__ import annotations

import argparse
import pathlib
import signal

import jax

from ..io import OutputError, check_folder_not_input
from ..model import PRESETS, ModelConfig, preset
from ..tokenizers import MAX_K, KmerTokenizer
from ..training import RUN_FILES, GenomeCorpus, PretrainConfig, pretrain
from ._options import add_run_options, float_above, int_in, run_options
from ._run_settings import SETTINGS_FILE, given_settings, resolve_settings, save_settings
from ._signals import Signalled

# Every setting of a run, with its default: saved in the run folder, restored by --resume.
# The parser's defaults are None so that what was given on the command line can be told
# from what was not.
DEFAULTS = {
    "fasta": None,
    "weights": None,
    "validation_fraction": 0.01,
    "preset": "codon_nt",
    "layers": None,
    "width": None,
    "heads": None,
    "ffn": None,
    "k": 3,
    "seq_length": 1000,
    "tokens_per_batch": 1_000_000,
    "micro_batch": None,
    "steps": 100_000,
    "warmup_steps": 16_000,
    "init_lr": 5e-5,
    "peak_lr": 1e-4,
    "seed": 0,
    "attention": "auto",
    "dtype": "bfloat16",
    "remat": False,
    "log_every": 10,
    "eval_every": 1000,
    "eval_windows": 512,
    "checkpoint_every": 1000,
    "keep": 3,
    "fsdp": 1,
}


def add_pretrain_parser(commands) -> None:

    p = commands.add_parser(
        "pretrain",
        help="pretrain a model with masked language modelling on FASTA genomes",
        description="Masked-language-model pretraining (Codon-NT's recipe by default) on "
        "windows of FASTA genomes, resumable, on one or many devices and processes. The run's "
        f"settings are saved in --out ({SETTINGS_FILE}): --resume restores them, and options "
        "given again override them (each override is reported).",
    )
    p.add_argument("fasta", nargs="*", help="FASTA files, plain or gzipped (restored on --resume)")
    p.add_argument("--out", required=True, help="run folder (checkpoints, metrics, model)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--weights", type=float_above(0.0), nargs="+", help="mixture weight per file")
    p.add_argument(
        "--validation-fraction", type=float_above(0.0), help=_default("validation_fraction")
    )
    size = p.add_argument_group("model size (a preset, or all of --layers/--width/...)")
    size.add_argument("--preset", choices=sorted(PRESETS), help=_default("preset"))
    size.add_argument("--layers", type=int_in(1))
    size.add_argument("--width", type=int_in(1), help="embedding dimension")
    size.add_argument("--heads", type=int_in(1))
    size.add_argument("--ffn", type=int_in(1), help="feed-forward (GLU) width")
    p.add_argument("--k", type=int_in(1, MAX_K), help="k-mer size (Codon-NT: 3)")
    recipe = p.add_argument_group("recipe (defaults: Codon-NT's)")
    recipe.add_argument(
        "--seq-length", type=int_in(2), help="tokens per window " + _default("seq_length")
    )
    recipe.add_argument("--tokens-per-batch", type=int_in(1), help=_default("tokens_per_batch"))
    recipe.add_argument("--micro-batch", type=int_in(1), help="sequences per pass (accumulate)")
    recipe.add_argument("--steps", type=int_in(1), help=_default("steps"))
    recipe.add_argument("--warmup-steps", type=int_in(1), help=_default("warmup_steps"))
    recipe.add_argument("--init-lr", type=float_above(0.0), help=_default("init_lr"))
    recipe.add_argument("--peak-lr", type=float_above(0.0), help=_default("peak_lr"))
    recipe.add_argument("--seed", type=int_in(0), help=_default("seed"))
    add_run_options(recipe, dtype=DEFAULTS["dtype"], remat=True)
    run = p.add_argument_group("bookkeeping and devices")
    run.add_argument("--log-every", type=int_in(1), help=_default("log_every"))
    run.add_argument("--eval-every", type=int_in(1), help=_default("eval_every"))
    run.add_argument("--eval-windows", type=int_in(1), help=_default("eval_windows"))
    run.add_argument("--checkpoint-every", type=int_in(1), help=_default("checkpoint_every"))
    run.add_argument("--keep", type=int_in(1), help="checkpoints kept " + _default("keep"))
    run.add_argument(
        "--fsdp", type=int_in(1), help="devices sharding parameters " + _default("fsdp")
    )
    run.add_argument(
        "--distributed",
        action="store_true",
        help="multi-process run: jax.distributed finds the cluster (SLURM, MPI, TPU pods)",
    )
    run.add_argument("--coordinator", help="jax.distributed coordinator host:port")
    run.add_argument("--num-processes", type=int_in(1))
    run.add_argument("--process-id", type=int_in(0))
    p.set_defaults(run=_pretrain_command, **dict.fromkeys(DEFAULTS))


def _default(name: str) -> str:
    return f"(default: {DEFAULTS[name]})"


def _pretrain_command(args: argparse.Namespace) -> None:

    if args.distributed or args.coordinator or args.num_processes:
        # No arguments: jax detects SLURM, Open MPI, Kubernetes and TPU pods by itself.
        jax.distributed.initialize(
            coordinator_address=args.coordinator,
            num_processes=args.num_processes,
            process_id=args.process_id,
        )

    given = given_settings(args, DEFAULTS, paths=("fasta",))
    if not args.resume:
        _check_fresh(args.out)
    s = argparse.Namespace(**resolve_settings(args.out, given, DEFAULTS, resume=args.resume))
    if not s.fasta:
        raise ValueError("give the FASTA files to train on (a resumed run restores its own)")
    check_folder_not_input(args.out, s.fasta, writes=(*RUN_FILES, SETTINGS_FILE))
    tok = KmerTokenizer(s.k, uppercase=True, iupac_to_n=True)
    sizes = (s.layers, s.width, s.heads, s.ffn)
    if any(v is not None for v in sizes) and any(v is None for v in sizes):
        raise ValueError("give all of --layers, --width, --heads and --ffn, or a --preset")
    if s.layers is not None:
        model_config = ModelConfig(
            vocab_size=tok.vocab_size,
            embed_dim=s.width,
            num_layers=s.layers,
            num_heads=s.heads,
            ffn_dim=s.ffn,
            pad_token_id=tok.pad_id,
            mask_token_id=tok.mask_id,
            k_for_kmers=s.k,
        )
    else:
        model_config = preset(s.preset)
    config = PretrainConfig(
        seq_length=s.seq_length,
        tokens_per_batch=s.tokens_per_batch,
        micro_batch_size=s.micro_batch,
        steps=s.steps,
        seed=s.seed,
        warmup_steps=s.warmup_steps,
        init_lr=s.init_lr,
        peak_lr=s.peak_lr,
        **run_options(s),
        fsdp=s.fsdp,
        log_every=s.log_every,
        eval_every=s.eval_every,
        eval_windows=s.eval_windows,
        checkpoint_every=s.checkpoint_every,
        keep_checkpoints=s.keep,
    )
    corpus = GenomeCorpus.from_fasta(
        s.fasta,
        weights=s.weights,
        validation_fraction=s.validation_fraction,
        # at least one validation window per record long enough to spare it
        validation_min_bases=(s.seq_length - 1) * s.k,
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

    def started(step: int) -> None:
        # Saved once the folder and any checkpoint were accepted, so a refused override
        # never replaces the run's settings.
        if jax.process_index() == 0:
            save_settings(args.out, vars(s))

    result = pretrain(
        model_config, tok, corpus, args.out, config, resume=args.resume, started=started
    )
    if result.signal is not None:  # stopped cleanly with a checkpoint: exit as signalled
        raise Signalled(signal.Signals[result.signal])


def _check_fresh(out: str) -> None:
    # The run folder is checked before settings are written into it; `pretrain` checks it
    # again for library callers.
    held = [n for n in (*RUN_FILES, SETTINGS_FILE) if (pathlib.Path(out) / n).exists()]
    if held:
        raise OutputError(
            f"{out} already holds a run ({', '.join(held)}); --resume continues it, or "
            "choose another folder"
        )

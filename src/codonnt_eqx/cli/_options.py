"""Options several subcommands share, declared once: argument types, the FASTA input, the run
options of the model (`RunOptions`), where the weights come from, the devices."""

from __future__ import annotations

import argparse
import math

import jax

from ..checkpoints import DEFAULT_MODEL, from_pretrained, names_shipped_model
from ..finetune import is_finetuned_folder, load_run
from ..model import DTYPES, IMPLEMENTATIONS, NucleotideTransformer, preset
from ..tokenizers import KmerTokenizer, Tokenizer


def float_above(low: float, high: float | None = None, *, high_inclusive: bool = False):
    """An argparse type: a finite float > low (and < high, or <= high if `high_inclusive`)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        inside = value > low and math.isfinite(value)
        if high is not None:
            inside = inside and (value <= high if high_inclusive else value < high)
        if not inside:
            if high is None:
                raise argparse.ArgumentTypeError(f"must be a finite number > {low}, got {text}")
            bracket = "]" if high_inclusive else ")"
            raise argparse.ArgumentTypeError(f"must be in ({low}, {high}{bracket}, got {text}")
        return value

    return parse


def int_in(low: int, high: int | None = None):
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


def add_fasta_input(parser: argparse.ArgumentParser) -> None:
    """The FASTA argument and how strictly its bases are read."""
    parser.add_argument("fasta", help="FASTA file, plain or gzipped; - reads standard input")
    parser.add_argument(
        "--strict",
        action="store_true",
        help="reject lowercase and IUPAC ambiguity codes instead of mapping them",
    )
    parser.set_defaults(k=3)


def add_run_options(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    *,
    dtype: str = "float32",
    remat: bool = False,
) -> None:
    """`--attention`, `--dtype` (and `--remat` where a backward pass runs): the model's
    `RunOptions`, with the same choices in every subcommand."""
    parser.add_argument(
        "--attention", default="auto", choices=IMPLEMENTATIONS, help="attention implementation"
    )
    parser.add_argument("--dtype", default=dtype, choices=tuple(DTYPES), help="compute dtype")
    if remat:
        parser.add_argument(
            "--remat",
            action=argparse.BooleanOptionalAction,
            default=False,
            help="recompute blocks in the backward pass",
        )


def run_options(args: argparse.Namespace) -> dict:
    """The `RunOptions` fields given on the command line, as keyword arguments."""
    options = {"attention": args.attention, "dtype": args.dtype}
    if hasattr(args, "remat"):
        options["remat"] = args.remat
    return options


def add_model_source(parser: argparse.ArgumentParser, *, default_help: str) -> None:
    """`--checkpoint` or `--random-init` (with `--seed`)."""
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument(
        "--checkpoint",
        help="folder of published or saved weights, or a shipped model's name " + default_help,
    )
    weights.add_argument(
        "--random-init",
        action="store_true",
        help="a randomly initialised codon_nt-sized model instead of trained weights",
    )
    parser.add_argument("--seed", type=int, default=0, help="initialisation seed (--random-init)")


def add_devices_option(parser) -> None:
    parser.add_argument(
        "--devices",
        type=int_in(1),
        help="split each batch over the first N local devices (default: all of them)",
    )


def kmer_tokenizer(args: argparse.Namespace) -> KmerTokenizer:
    """The k-mer tokenizer of `--k`, lenient unless `--strict`."""
    lenient = not args.strict
    return KmerTokenizer(args.k, uppercase=lenient, iupac_to_n=lenient)


def load_model(args: argparse.Namespace) -> tuple[NucleotideTransformer, Tokenizer, str]:
    """(model, tokenizer, description): the shipped default model, the weights in
    --checkpoint (a folder or a shipped name), or a random initialisation on --random-init."""
    if args.random_init:
        model = NucleotideTransformer(preset("codon_nt"), key=jax.random.key(args.seed))
        description = (
            f"codon_nt preset ({model.num_parameters() / 1e6:.1f}M parameters), RANDOMLY "
            f"INITIALISED (--random-init, seed {args.seed}): the embeddings below carry no biology"
        )
        return model, kmer_tokenizer(args), description
    lenient = not args.strict
    name = args.checkpoint or DEFAULT_MODEL
    if is_finetuned_folder(name):  # a fine-tuning run: its base with its adapters on
        finetuned, tok, info = load_run(name, strict=args.strict)
        model = finetuned.model
        size = f"{model.num_parameters() / 1e6:.1f}M parameters"
        base = info.get("base_model") or "its base"
        return model, tok, f"{name} ({size}: {base} fine-tuned, mode {info['mode']})"
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

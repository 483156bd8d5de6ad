"""The `codonnt-eqx` command line: the parser of every subcommand, and `main`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..accelerators import AcceleratorUnavailableError
from ..training import TrainingError
from ._embed import add_embed_parser
from ._experiment import add_experiment_parser
from ._finetune import add_finetune_parser
from ._plan import add_plan_parser
from ._plot import add_plot_parser
from ._pretrain import add_pretrain_parser
from ._score import add_score_parser
from ._tokenize import add_tokenize_parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="codonnt-eqx", description="Codon-NT (Nucleotide Transformer, 3-mers) in JAX."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    add_tokenize_parser(commands)
    add_embed_parser(commands)
    add_pretrain_parser(commands)
    add_plot_parser(commands)
    add_score_parser(commands)
    add_finetune_parser(commands)
    add_experiment_parser(commands)
    add_plan_parser(commands)
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
    except (OSError, ValueError, TrainingError, AcceleratorUnavailableError) as e:
        print(f"codonnt-eqx: error: {_one_line(e)}", file=sys.stderr)
        return 1
    return 0


def _one_line(error: Exception) -> str:
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        return f"{error.filename}: {error.strerror}"
    return " ".join(str(error).split()) or type(error).__name__

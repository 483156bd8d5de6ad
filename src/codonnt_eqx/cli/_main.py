"""The `codonnt-eqx` command line: the parser of every subcommand, and `main`."""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import os
import signal
import sys
import threading
from collections.abc import Sequence

import jax

from ..accelerators import AcceleratorUnavailableError
from ..cpu import restart_with_hugepages
from ..training import TrainingError
from ._embed import add_embed_parser
from ._examples import add_examples_parser
from ._experiment import add_experiment_parser
from ._finetune import add_finetune_parser
from ._plan import add_plan_parser
from ._plot import add_plot_parser
from ._predict import add_predict_parser
from ._pretrain import add_pretrain_parser
from ._scan import add_scan_parser
from ._score import add_score_parser
from ._signals import Signalled, on_signal
from ._tokenize import add_tokenize_parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="codonnt-eqx", description="Codon-NT (Nucleotide Transformer, 3-mers) in JAX."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument(
        "--device",
        choices=_PLATFORMS,
        help="run on this kind of device (default: JAX's choice, an accelerator if present)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    add_examples_parser(commands)
    add_tokenize_parser(commands)
    add_embed_parser(commands)
    add_pretrain_parser(commands)
    add_plot_parser(commands)
    add_score_parser(commands)
    add_scan_parser(commands)
    add_finetune_parser(commands)
    add_predict_parser(commands)
    add_experiment_parser(commands)
    add_plan_parser(commands)
    return parser


_PLATFORMS = ("cpu", "gpu", "tpu")


def _version() -> str:
    try:
        return importlib.metadata.version("codonnt-eqx")
    except importlib.metadata.PackageNotFoundError:  # a source tree that is not installed
        return "unknown (not installed)"


def _device(kind: str | None):
    """A context making the first device of `kind` JAX's default for this run."""
    if kind is None:
        return contextlib.nullcontext()
    try:
        devices = jax.devices(kind)
    except RuntimeError as e:
        raise AcceleratorUnavailableError(
            f"--device {kind}: no {kind} device here ({' '.join(str(e).split())[:200]})"
        ) from None
    return jax.default_device(devices[0])


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status: 0, 1 for an error, 2 for bad arguments,
    130 after SIGINT (Ctrl-C) and 143 after SIGTERM, with no partial output left behind."""
    args = build_parser().parse_args(argv)
    handlers = {}
    if threading.current_thread() is threading.main_thread():
        handlers = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with _device(args.device):
            args.run(args)
    except BrokenPipeError:  # `codonnt-eqx ... | head`: the reader left, nothing to report
        sys.stderr.close()
        return 1
    except KeyboardInterrupt as e:
        signum = e.signum if isinstance(e, Signalled) else signal.SIGINT
        name = "terminated" if signum == signal.SIGTERM else "interrupted"
        print(f"codonnt-eqx: {name}; no partial output was kept", file=sys.stderr)
        return 128 + signum
    except (OSError, ValueError, TrainingError, AcceleratorUnavailableError) as e:
        print(f"codonnt-eqx: error: {_one_line(e)}", file=sys.stderr)
        return 1
    finally:
        for s, handler in handlers.items():
            signal.signal(s, handler)
    return 0


# The subcommands that run a model, where the restart's second start-up (a few seconds of
# imports) is small beside the work.
_COMPUTES = frozenset(
    {"embed", "pretrain", "score", "scan", "finetune", "probe", "predict", "experiment"}
)


def run() -> None:
    """The `codonnt-eqx` executable: `main`, then exit. After a signal the process ends at
    once (`os._exit`, output flushed): unwinding the interpreter while XLA's threads are
    still running can crash it at exit and turn status 130 into a segmentation fault.

    A command that computes first restarts itself with huge pages for XLA:CPU's buffers where
    that pays (`codonnt_eqx.cpu.restart_with_hugepages`; `CODONNT_EQX_HUGEPAGES=0` keeps it
    from doing so): a CPU training step at Codon-NT size then spends 0.4 s in the kernel's
    page faults instead of 1.9 (`codonnt_eqx/cpu/_hugepages.py`)."""
    if _COMPUTES.intersection(sys.argv[1:]):
        restart_with_hugepages()
    code = main()
    if code >= 128:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
    sys.exit(code)


def _one_line(error: Exception) -> str:
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        return f"{error.filename}: {error.strerror}"
    return " ".join(str(error).split()) or type(error).__name__

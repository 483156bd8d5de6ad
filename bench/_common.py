"""Shared helpers for the benchmark scripts: timing, the record of where a run happened, and
where a run writes.

Without `--out` every script writes into a scratch folder, `$CODONNT_BENCH_RESULTS` if set, else
`<temp dir>/codonnt-eqx-bench/<script>`, and says where; the committed results under
`bench/results/` are only rewritten by an explicit `--out bench/results/...`.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from importlib import metadata

# The committed results: written only when a script's `--out` names them.
COMMITTED = pathlib.Path(__file__).resolve().parent / "results"
# Where a run goes without `--out` (the scratch folder): this environment variable if set...
SCRATCH_ENV = "CODONNT_BENCH_RESULTS"
# ... else a folder per script under this one.
SCRATCH_ROOT = pathlib.Path(tempfile.gettempdir()) / "codonnt-eqx-bench"
# Set (as the tests do, by monkeypatching) to send every default output here instead.
RESULTS: pathlib.Path | None = None


def scratch_dir(name: str, *, fresh: bool = False) -> pathlib.Path:
    """The folder a script called `name` writes into without `--out` (not created): `RESULTS`
    if set, else `$CODONNT_BENCH_RESULTS` if set, else `<temp dir>/codonnt-eqx-bench/<name>`.
    `fresh`: a new empty folder inside that one, for a script that resumes from what it finds.
    """
    if RESULTS is not None:
        base = pathlib.Path(RESULTS)
    elif os.environ.get(SCRATCH_ENV):
        base = pathlib.Path(os.environ[SCRATCH_ENV])
    else:
        base = SCRATCH_ROOT / name
    if fresh:
        base.mkdir(parents=True, exist_ok=True)
        return pathlib.Path(tempfile.mkdtemp(prefix=f"{pathlib.PurePath(name).name}-", dir=base))
    return base


def results_dir(
    out: str | os.PathLike[str] | None, name: str, *, fresh: bool = False
) -> pathlib.Path:
    """`out` if given (the only way a script writes into bench/results/), else the scratch
    folder of `name`; created, and said on stdout when it is the scratch one."""
    path = pathlib.Path(out) if out is not None else scratch_dir(name, fresh=fresh)
    path.mkdir(parents=True, exist_ok=True)
    if out is None:
        print(f"no --out: writing to the scratch folder {path}", flush=True)
    return path


def add_out_argument(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    name: str,
    what: str = "results folder",
) -> None:
    """`--out`, defaulting to None: `results_dir(args.out, name)` is then the scratch folder."""
    parser.add_argument(
        "--out",
        type=pathlib.Path,
        default=None,
        help=(
            f"{what} (default: the scratch folder ${SCRATCH_ENV}, else {SCRATCH_ROOT / name}; "
            "--out bench/results/... updates the committed results)"
        ).replace("%", "%%"),
    )


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall time of `fn()` over `repeats` runs after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _thp_mode() -> str | None:
    try:
        from codonnt_eqx.cpu import transparent_hugepages
    except ImportError:  # a benchmark without the package still records its numbers
        return None
    return transparent_hugepages()


def environment() -> dict[str, object]:
    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    env: dict[str, object] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        **{pkg: version(pkg) for pkg in ("numpy", "jax", "jaxlib", "equinox", "codonnt-eqx")},
        # malloc's huge pages change XLA:CPU's step time (codonnt_eqx.cpu.hugepage_environment)
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES"),
        "transparent_hugepages": _thp_mode(),
    }
    try:
        import jax

        env["device"] = str(jax.devices()[0].device_kind)
    except Exception:  # noqa: BLE001 - a benchmark without jax still records its numbers
        env["device"] = None
    return env


def write_result(name: str, result: dict, markdown: str, folder: pathlib.Path) -> pathlib.Path:
    """`<folder>/<name>.json` and `<folder>/<name>.md` (`folder`: `results_dir(args.out, ...)`)."""
    folder.mkdir(parents=True, exist_ok=True)
    json_path = folder / f"{name}.json"
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    (folder / f"{name}.md").write_text(markdown)
    return json_path

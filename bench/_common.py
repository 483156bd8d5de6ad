"""Shared helpers for the benchmark scripts: timing and the record of where a run happened."""

from __future__ import annotations

import json
import os
import pathlib
import platform
import statistics
import time
from collections.abc import Callable
from importlib import metadata

# Overridable so that the smoke tests do not overwrite committed results.
RESULTS = pathlib.Path(
    os.environ.get("CODONNT_BENCH_RESULTS", pathlib.Path(__file__).parent / "results")
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
    }
    try:
        import jax

        env["device"] = str(jax.devices()[0].device_kind)
    except Exception:  # noqa: BLE001 - a benchmark without jax still records its numbers
        env["device"] = None
    return env


def write_result(name: str, result: dict, markdown: str) -> pathlib.Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    json_path = RESULTS / f"{name}.json"
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown)
    return json_path

"""Will it fit? The planner's table for every preset: per-device memory and the largest batch of
inference, pretraining (with and without remat) and full fine-tuning, on one H100 80 GB, 8 H100
over 2 hosts (FSDP), one TPU v5e chip and a v5e 2x2 slice, from deviceless compiles on a CPU.

    python bench/memory_plan.py --out bench/results/memory_plan      # the committed table
    python bench/memory_plan.py --sizes tiny --targets h100 --limit 8  # a quick look

Rows are appended to `plan.jsonl` as they finish (a rerun skips the rows already there), and
`table.md` is rewritten after each. Needs the accelerators extra (`pip install
'.[accelerators]'`). Without --out, results go to a new scratch folder (never bench/results/).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import subprocess
import time
from importlib import metadata

from _common import add_out_argument, environment, results_dir
from codonnt_eqx import PRESETS
from codonnt_eqx.accelerators import largest_batch, model_sizes, prepare_environment, target

# (target, fsdp, workload, remat): the rows of the table for each size, in the order they are
# computed (the most asked first, so that a run cut short still answers them for every size).
ROWS = (
    ("h100", 1, "pretrain", False),
    ("v5e", 1, "pretrain", False),
    ("h100", 1, "inference", False),
    ("v5e", 1, "inference", False),
    ("h100", 1, "finetune", False),
    ("v5e", 1, "finetune", False),
    ("h100", 1, "pretrain", True),
    ("v5e", 1, "pretrain", True),
    ("h100x8", 8, "pretrain", False),
    ("v5e-4", 4, "pretrain", False),
)
_ORDER = {row: i for i, row in enumerate(sorted(ROWS))}
GIB = 1 << 30


def _cpu() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor()
    names = [line.split(":", 1)[1].strip() for line in out.splitlines() if "Model name" in line]
    return names[0] if names else platform.processor()


def _key(row: dict) -> tuple:
    return (row["size"], row["target"], row["fsdp"], row["workload"], row["remat"])


def _markdown(rows: list[dict], env: dict, command: str) -> str:
    lines = [
        "# Memory plan: largest batch per device, from deviceless compiles",
        "",
        f"Command: `{command}`  ",
        f"Machine: {env['cpu']} ({env['cpu_count']} cores), jax {env['jax']}, jaxlib "
        f"{env['jaxlib']}, CUDA plugin {env['cuda_plugin']}, libtpu {env['libtpu']}.",
        "",
        f"Sequences of {rows[0]['length'] if rows else '?'} tokens, bfloat16 compute, float32 "
        "weights and Adam state. `batch` is per device; `peak` is XLA's per-device total "
        "(arguments + outputs - donated + temporaries + code) at that batch. Usable memory: "
        "H100 80 GB has 79.1 GiB, of which JAX preallocates 75% by default (59.3 GiB, "
        "`XLA_PYTHON_CLIENT_MEM_FRACTION`; raise it to use more); TPU v5e: 16 GiB, and its "
        "compiler refuses a program that does not fit. Compile seconds: all the compiles of "
        "the row's search, on this CPU.",
        "",
        "| size | target | fsdp | workload | remat | params GiB | Adam GiB | largest batch "
        "| temporaries GiB | peak GiB | usable GiB | compiles | compile s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    sizes = list(model_sizes())
    ordered = sorted(
        rows,
        key=lambda r: (
            sizes.index(r["size"]),
            _ORDER.get((r["target"], r["fsdp"], r["workload"], r["remat"]), 99),
        ),
    )
    for r in ordered:
        best = r["best"] or r["plans"][0]
        lines.append(
            "| "
            + " | ".join(
                [
                    r["size"],
                    r["target"],
                    str(r["fsdp"]),
                    r["workload"],
                    "on" if r["remat"] else "off",
                    f"{best['parameter_bytes'] / GIB:.2f}",
                    f"{best['optimizer_bytes'] / GIB:.2f}",
                    str(r["largest_batch"]),
                    f"{best['temp_bytes'] / GIB:.2f}",
                    f"{best['peak_bytes'] / GIB:.2f}",
                    f"{best['usable_bytes'] / GIB:.2f}",
                    str(len(r["plans"])),
                    f"{sum(p['compile_seconds'] for p in r['plans']):.0f}",
                ]
            )
            + " |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=list(PRESETS), choices=model_sizes())
    parser.add_argument("--targets", nargs="+", help="only these targets' rows")
    parser.add_argument("--length", type=int, default=1000)
    parser.add_argument("--limit", type=int, default=4096, help="largest batch searched")
    add_out_argument(parser, "memory_plan")
    args = parser.parse_args()
    prepare_environment()  # before `environment()` starts JAX's backends
    out = results_dir(args.out, "memory_plan", fresh=True)  # a fresh scratch folder: no resume
    print(f"results: {out}", flush=True)
    log = out / "plan.jsonl"
    rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    done = {_key(r) for r in rows}
    versions = environment()
    env = {
        "cpu": _cpu(),
        "cpu_count": versions["cpu_count"],
        "jax": versions["jax"],
        "jaxlib": versions["jaxlib"],
        "cuda_plugin": _version("jax-cuda12-plugin"),
        "libtpu": _version("libtpu"),
    }
    command = "python bench/memory_plan.py --out " + str(args.out or "<scratch>")
    sizes = model_sizes()
    for name, fsdp, workload, remat in ROWS:
        for size in args.sizes:
            if args.targets and name not in args.targets:
                continue
            key = (size, target(name).name, fsdp, workload, remat)
            if key in done:
                continue
            start = time.perf_counter()
            batch, best, plans = largest_batch(
                sizes[size],
                name,
                limit=args.limit,
                workload=workload,
                length=args.length,
                remat=remat,
                fsdp=fsdp,
            )
            row = {
                "size": size,
                "target": name,
                "fsdp": fsdp,
                "workload": workload,
                "remat": remat,
                "length": args.length,
                "largest_batch": batch,
                "best": None if best is None else dataclasses.asdict(best),
                "plans": [dataclasses.asdict(p) for p in plans],
                "seconds": time.perf_counter() - start,
            }
            rows.append(row)
            with log.open("a") as f:
                f.write(json.dumps(row) + "\n")
            (out / "table.md").write_text(_markdown(rows, env, command))
            print(
                f"{size} {name} fsdp={fsdp} {workload} remat={remat}: batch {batch} "
                f"({len(plans)} compiles, {row['seconds']:.0f} s)",
                flush=True,
            )
    (out / "table.md").write_text(_markdown(rows, env, command))


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()

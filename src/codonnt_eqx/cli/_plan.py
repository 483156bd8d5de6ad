"""`codonnt-eqx plan`: will a model fit on a GPU or TPU, answered on a laptop."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import sys
from typing import Any

from ..accelerators import TARGETS, WORKLOADS, MemoryPlan, largest_batch, plan_memory, target
from ..io import atomic_output
from ..model import model_sizes
from ._options import float_above, int_in

_GIB = 1 << 30


def add_plan_parser(commands) -> None:
    p = commands.add_parser(
        "plan",
        help="per-device memory and the largest batch that fits on a GPU/TPU (no GPU needed)",
        description="Compiles the real step for the target without its hardware (deviceless) "
        "and reports per device: parameters, optimizer state, activations and temporaries, "
        "and the largest batch that fits (a search over compiles). Needs the accelerators "
        "extra: pip install 'codonnt-eqx[accelerators]'.",
    )
    p.add_argument("--size", default="codon_nt", choices=sorted(model_sizes()))
    p.add_argument("--target", default="h100", choices=sorted(TARGETS), nargs="+")
    p.add_argument("--workload", choices=WORKLOADS, nargs="+", default=list(WORKLOADS))
    p.add_argument("--length", type=int_in(1), default=1000, help="tokens per sequence")
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32", "float16"])
    p.add_argument("--remat", choices=["off", "on", "both"], default="off", help="pretraining only")
    p.add_argument("--fsdp", type=int_in(1), default=1, help="devices sharding parameters")
    p.add_argument("--batch", type=int_in(1), help="plan this batch per device (no search)")
    p.add_argument("--limit", type=int_in(1), default=4096, help="largest batch searched")
    p.add_argument(
        "--memory-fraction",
        type=float_above(0.0, 1.0, high_inclusive=True),
        help="share of device memory usable (default: 0.75 on GPUs, JAX's preallocation; "
        "1.0 on TPUs)",
    )
    p.add_argument("--json", help="also write every plan compiled to this JSON file")
    p.set_defaults(run=plan_command)


def _gib(n: int) -> str:
    return f"{n / _GIB:.2f}"


def _row(plan: MemoryPlan, batch: int | None) -> str:
    cells = [
        plan.target,
        plan.workload,
        "on" if plan.remat else "off",
        str(plan.fsdp),
        _gib(plan.parameter_bytes),
        _gib(plan.optimizer_bytes),
        _gib(plan.temp_bytes),
        _gib(plan.peak_bytes),
        _gib(plan.usable_bytes),
        str(plan.batch_per_device) if batch is None else str(batch),
        f"{plan.compile_seconds:.1f}",
    ]
    return "| " + " | ".join(cells) + " |"


HEADER = (
    "| target | workload | remat | fsdp | params GiB | optimizer GiB | temporaries GiB "
    "| peak GiB | usable GiB | batch | compile s |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|"
)


def plan_command(args) -> None:
    config = model_sizes()[args.size]
    remats = {"off": [False], "on": [True], "both": [False, True]}[args.remat]
    print(
        f"{args.size}: {config.num_layers} layers x {config.embed_dim}, {args.length} tokens "
        f"per sequence, {args.dtype} compute, float32 weights and optimizer state",
        file=sys.stderr,
    )
    print(HEADER)
    records = []
    for name in args.target:
        t = target(name)
        if args.fsdp > 1 and t.num_devices % args.fsdp:
            raise ValueError(f"--fsdp {args.fsdp} does not divide {t.name}'s {t.num_devices}")
        for workload in args.workload:
            for remat in remats if workload == "pretrain" else [False]:
                options: dict[str, Any] = dict(
                    workload=workload,
                    length=args.length,
                    dtype=args.dtype,
                    remat=remat,
                    fsdp=args.fsdp,
                    memory_fraction=args.memory_fraction,
                )
                if args.batch is not None:
                    plan = plan_memory(config, t, batch=args.batch, **options)
                    plans, shown, batch = [plan], plan, None
                else:
                    batch, best, plans = largest_batch(config, t, limit=args.limit, **options)
                    shown = best if best is not None else plans[0]
                print(_row(shown, batch), flush=True)
                records.append(
                    {
                        "size": args.size,
                        "largest_batch": batch,
                        "plans": [dataclasses.asdict(p) for p in plans],
                    }
                )
    print(
        "GPU: JAX preallocates 75% of device memory by default (XLA_PYTHON_CLIENT_MEM_FRACTION); "
        "'usable' is that share unless --memory-fraction says otherwise.",
        file=sys.stderr,
    )
    if args.json:
        with atomic_output(pathlib.Path(args.json)) as tmp:
            tmp.write_text(json.dumps(records, indent=2) + "\n")

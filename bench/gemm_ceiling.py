"""The matrix-multiply ceiling of this machine: GFLOP/s of XLA (and PyTorch, if installed) on
the GEMM shapes of a Codon-NT training step, float32 and bfloat16.

    python bench/gemm_ceiling.py                 # tokens = 2 x 1000, Codon-NT's projections
    python bench/gemm_ceiling.py --tokens 4000

A transformer step is mostly these products (tokens x 512 by 512 x 512 for the attention
projections, 512 x 2048 and 2048 x 512 for the feed-forward, their transposes in the
backward), so their best throughput bounds what any implementation of the step can reach on
this CPU: `bench/train_step.py` reports its GFLOP/s on the same footing. Each product is timed
alone (median of `--repeats` after warm-up, jitted for JAX; compile not timed).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import time

import numpy as np

from _common import add_out_argument, environment, median_seconds, results_dir, write_result


def shapes(tokens: int, square: int = 2048) -> list[tuple[str, int, int, int]]:
    """(what, m, k, n): an [m, k] @ [k, n] product of the step."""
    return [
        ("attention projection", tokens, 512, 512),
        ("FFN in (GELU 3072)", tokens, 512, 3072),
        ("FFN out (GELU 3072)", tokens, 3072, 512),
        ("GLU in (2 x 2048)", tokens, 512, 4096),
        ("weight gradient", 512, tokens, 512),
        (f"square {square}", square, square, square),
    ]


def jax_gflops(m: int, k: int, n: int, dtype: str, repeats: int) -> float:
    import jax

    a = jax.random.normal(jax.random.key(0), (m, k), dtype)
    b = jax.random.normal(jax.random.key(1), (k, n), dtype)
    f = jax.jit(lambda a, b: a @ b)
    f(a, b).block_until_ready()
    seconds = median_seconds(lambda: f(a, b).block_until_ready(), repeats, warmup=2)
    return 2 * m * k * n / seconds / 1e9


def torch_gflops(m: int, k: int, n: int, dtype: str, repeats: int) -> float:
    import torch

    torch.set_num_threads(os.cpu_count())
    a = torch.randn(m, k).to(getattr(torch, dtype))
    b = torch.randn(k, n).to(getattr(torch, dtype))
    with torch.no_grad():
        seconds = median_seconds(lambda: a @ b, repeats, warmup=2)
    return 2 * m * k * n / seconds / 1e9


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--square", type=int, default=2048, help="side of the square reference product")
    add_out_argument(p, "gemm_ceiling")
    args = p.parse_args()
    has_torch = importlib.util.find_spec("torch") is not None
    load_start = os.getloadavg()
    rows = []
    for what, m, k, n in shapes(args.tokens, args.square):
        for dtype in ("float32", "bfloat16"):
            row = {"what": what, "m": m, "k": k, "n": n, "dtype": dtype}
            row["jax"] = jax_gflops(m, k, n, dtype, args.repeats)
            row["torch"] = torch_gflops(m, k, n, dtype, args.repeats) if has_torch else None
            rows.append(row)
            print(row, flush=True)
    env = environment()
    if has_torch:
        import torch

        env["torch"] = torch.__version__
    env["load_average_start"], env["load_average_end"] = load_start, os.getloadavg()
    env["date"] = time.strftime("%Y-%m-%d")
    lines = [
        f"# GEMM ceiling, {args.tokens} tokens (GFLOP/s, median of {args.repeats})",
        "",
        f"`python bench/gemm_ceiling.py --tokens {args.tokens} --repeats {args.repeats} "
        f"--square {args.square}" + (f" --out {args.out}" if args.out else "") + "`",
        "",
        "| product | m x k x n | dtype | XLA (jax) | PyTorch |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        t = f"{r['torch']:.0f}" if r["torch"] is not None else "-"
        lines.append(
            f"| {r['what']} | {r['m']} x {r['k']} x {r['n']} | {r['dtype']} | {r['jax']:.0f} | "
            f"{t} |"
        )
    f32 = [r["jax"] for r in rows if r["dtype"] == "float32"]
    lines += [
        "",
        f"Best XLA float32 product: {max(f32):.0f} GFLOP/s; median over the step's shapes: "
        f"{np.median(f32[:-1]):.0f}.",
        "",
        f"Environment: `{env}`",
        "",
    ]
    path = write_result(
        f"gemm_ceiling_cpu_jax{env['jax']}",
        {"rows": rows, "environment": env},
        "\n".join(lines),
        results_dir(args.out, "gemm_ceiling"),
    )
    print("\n".join(lines))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

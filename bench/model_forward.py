"""Forward throughput of the `codon_nt` preset: tokens/s, compile time and peak memory.

    python bench/model_forward.py                          # batch 1 and 8 x 1000 tokens,
                                                           # float32 and bfloat16
    python bench/model_forward.py --batches 8 --dtypes bfloat16 --attention pallas

Each configuration runs in its own process so that its peak resident memory (CPU) or peak
device memory (GPU) is its own. Times are medians after warm-up; compile time apart.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

from _common import add_out_argument, environment, median_seconds, results_dir, write_result


def run_one(batch: int, length: int, dtype_name: str, attention: str, repeats: int) -> dict:
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import numpy as np

    from codonnt_eqx import NucleotideTransformer, preset, with_options

    model = NucleotideTransformer(preset("codon_nt"), key=jax.random.key(0))
    dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[dtype_name]
    rng = np.random.default_rng(0)
    tokens = jnp.asarray(rng.integers(6, 75, size=(batch, length)), jnp.int32).at[:, 0].set(3)

    @eqx.filter_jit
    def forward(model, tokens):
        return jax.vmap(with_options(model, attention=attention, dtype=dtype))(tokens).logits

    start = time.perf_counter()
    compiled = forward.lower(model, tokens).compile()
    compile_s = time.perf_counter() - start
    seconds = median_seconds(lambda: jax.block_until_ready(compiled(model, tokens)), repeats)
    device = jax.devices()[0]
    stats = device.memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    if peak is None:  # CPU: the process's peak resident set (KiB on Linux)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return dict(
        batch=batch,
        length=length,
        dtype=dtype_name,
        attention=attention,
        seconds=seconds,
        tokens_per_s=batch * length / seconds,
        compile_seconds=compile_s,
        peak_bytes=peak,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--length", type=int, default=1000)
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--attention", default="auto")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    add_out_argument(parser, "model_forward")
    args = parser.parse_args()
    if args.one:
        row = run_one(args.batches[0], args.length, args.dtypes[0], args.attention, args.repeats)
        print(json.dumps(row))
        return

    rows = []
    for batch in args.batches:
        for dtype in args.dtypes:
            cmd = [
                sys.executable,
                __file__,
                "--one",
                "--batches",
                str(batch),
                "--length",
                str(args.length),
                "--dtypes",
                dtype,
                "--attention",
                args.attention,
                "--repeats",
                str(args.repeats),
            ]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            row = json.loads(out.strip().splitlines()[-1])
            rows.append(row)
            print(
                f"batch {batch} x {args.length} {dtype:>8}: {row['tokens_per_s']:10,.0f} tokens/s "
                f"({row['seconds'] * 1e3:.1f} ms), compile {row['compile_seconds']:.2f} s, "
                f"peak {row['peak_bytes'] / 2**20:,.0f} MiB"
            )
    env = environment()
    result = {
        "command": "python bench/model_forward.py " + " ".join(sys.argv[1:]),
        "model": "codon_nt",
        "rows": rows,
        "environment": env,
    }
    lines = [
        f"# codon_nt forward on {env['device']} ({env['cpu_count']} CPU cores), jax {env['jax']}",
        "",
        f"`{result['command']}`",
        "",
        "| batch x length | dtype | attention | tokens/s | ms / batch | compile s | peak MiB |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['batch']} x {r['length']} | {r['dtype']} | {r['attention']} | "
        f"{r['tokens_per_s']:,.0f} | {r['seconds'] * 1e3:.1f} | {r['compile_seconds']:.2f} | "
        f"{r['peak_bytes'] / 2**20:,.0f} |"
        for r in rows
    ]
    lines += ["", f"Environment: `{env}`", ""]
    name = f"model_forward_{str(env['device']).lower().replace(' ', '-')}_jax{env['jax']}"
    folder = results_dir(args.out, "model_forward")
    print(f"wrote {write_result(name, result, chr(10).join(lines), folder)}")


if __name__ == "__main__":
    main()

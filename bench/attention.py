"""Attention microbenchmark: our Pallas flash attention against reference JAX, XLA, cuDNN and
JAX's bundled Pallas kernel; forward and forward+backward, bfloat16, with and without padding.

    python bench/attention.py                      # GPU/TPU: the full sweep
    python bench/attention.py --lengths 256 512    # CPU: reference, XLA and blocked, and an
                                                   # interpret-mode correctness check of ours

Writes bench/results/attention_<device>_jax<version>.{json,md,png}. Times are medians of
`--repeats` runs after warm-up; compile time is reported apart. TFLOP/s counts the nominal
4*B*H*L*L*D forward FLOPs (x2.5 for forward+backward) over all L keys, padding or not.
"""

from __future__ import annotations

import argparse
import re
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from codonnt_eqx.kernels import attention, flash_attention

from _common import environment, median_seconds, write_result


def _bundled_pallas_mha():
    """JAX's own (deprecated) Triton flash attention, if this jax ships it: a peer."""
    try:
        from jax.experimental.pallas.ops.gpu import attention as ops
    except Exception:  # noqa: BLE001 - absent or broken in this jax: the column is skipped
        return None

    def mha(q, k, v, lengths):
        del lengths  # no key padding support; timed on the unpadded case only
        return ops.mha(q, k, v, segment_ids=None)

    return mha


def implementations(platform: str):
    impls = {
        "reference": lambda q, k, v, n: attention(q, k, v, n, implementation="reference"),
        "xla": lambda q, k, v, n: attention(q, k, v, n, implementation="xla"),
        "blocked": lambda q, k, v, n: attention(q, k, v, n, implementation="blocked"),
    }
    if platform == "cpu":
        return impls
    impls["pallas (ours)"] = lambda q, k, v, n: flash_attention(q, k, v, n)
    if platform == "gpu":
        impls["cudnn"] = lambda q, k, v, n: attention(q, k, v, n, implementation="cudnn")
        bundled = _bundled_pallas_mha()
        if bundled is not None:
            impls["jax pallas mha"] = bundled
    return impls


def time_one(fn, q, k, v, lengths, mode: str, repeats: int):
    if mode == "fwd":
        step = jax.jit(fn)
    else:

        def loss(q, k, v, n):
            return jnp.sum(fn(q, k, v, n).astype(jnp.float32))

        step = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
    start = time.perf_counter()
    jax.block_until_ready(step(q, k, v, lengths))
    compile_s = time.perf_counter() - start
    seconds = median_seconds(lambda: jax.block_until_ready(step(q, k, v, lengths)), repeats)
    return compile_s, seconds


def peak_memory() -> int | None:
    stats = jax.devices()[0].memory_stats() or {}
    return stats.get("peak_bytes_in_use")


def check_interpret_mode(dtype) -> float:
    """Max |ours - reference| of a small padded case, run in interpret mode (CPU)."""
    rng = np.random.default_rng(0)
    q, k, v = (jnp.asarray(rng.normal(size=(2, 200, 4, 32)), dtype) for _ in range(3))
    lengths = jnp.array([200, 77])
    ours = flash_attention(q, k, v, lengths, interpret=True, backend="gpu")
    ref = attention(q, k, v, lengths, implementation="reference")
    return float(jnp.max(jnp.abs(ours.astype(jnp.float32) - ref.astype(jnp.float32))))


def plot(rows, path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    series = sorted({(r["impl"], r["mode"], r["head_dim"], r["padded"]) for r in rows})
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=False)
    for ax, mode in zip(axes, ("fwd", "fwd+bwd"), strict=True):
        for impl, m, d, padded in series:
            if m != mode:
                continue
            pts = sorted(
                (r["length"], r["tflops"])
                for r in rows
                if (r["impl"], r["mode"], r["head_dim"], r["padded"]) == (impl, m, d, padded)
            )
            ax.plot(
                *zip(*pts, strict=True), marker="o", label=f"{impl} D={d}{' pad' if padded else ''}"
            )
        ax.set(xscale="log", xlabel="sequence length", ylabel="TFLOP/s (nominal)", title=mode)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--lengths", type=int, nargs="+", default=[512, 1024, 2048, 4096, 8192, 16384]
    )
    parser.add_argument("--head-dims", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--tokens", type=int, default=32768, help="batch x length")
    parser.add_argument("--model-dim", type=int, default=2048, help="heads x head_dim")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    platform = jax.default_backend()
    dtype = jnp.bfloat16
    rows = []
    rng = np.random.default_rng(0)
    for d in args.head_dims:
        for length in args.lengths:
            batch = max(1, args.tokens // length)
            heads = max(1, args.model_dim // d)
            q, k, v = (
                jnp.asarray(rng.normal(size=(batch, length, heads, d)), dtype) for _ in range(3)
            )
            for padded in (False, True):
                lengths = (
                    jnp.asarray(rng.integers(length // 2, length + 1, size=batch), jnp.int32)
                    if padded
                    else jnp.full((batch,), length, jnp.int32)
                )
                for name, fn in implementations(platform).items():
                    if padded and name == "jax pallas mha":
                        continue
                    for mode in ("fwd", "fwd+bwd"):
                        try:
                            compile_s, seconds = time_one(fn, q, k, v, lengths, mode, args.repeats)
                        except Exception as e:  # noqa: BLE001 - record why a cell is empty
                            print(f"{name} {mode} L={length} D={d}: {type(e).__name__}: {e}"[:300])
                            continue
                        flops = (
                            4 * batch * heads * length * length * d * (2.5 if mode != "fwd" else 1)
                        )
                        row = dict(
                            impl=name,
                            mode=mode,
                            length=length,
                            head_dim=d,
                            batch=batch,
                            heads=heads,
                            padded=padded,
                            seconds=seconds,
                            compile_seconds=compile_s,
                            tflops=flops / seconds / 1e12,
                            peak_bytes=peak_memory(),
                        )
                        rows.append(row)
                        print(
                            f"{name:>15} {mode:>7} L={length:>5} D={d:>3} pad={padded!s:>5} "
                            f"{seconds * 1e3:9.3f} ms {row['tflops']:7.2f} TFLOP/s"
                        )
    env = environment()
    result = {
        "command": "python bench/attention.py " + " ".join(sys.argv[1:]),
        "dtype": "bfloat16",
        "rows": rows,
        "environment": env,
    }
    if platform == "cpu":
        result["interpret_mode_max_abs_error"] = {
            "float32": check_interpret_mode(jnp.float32),
            "bfloat16": check_interpret_mode(jnp.bfloat16),
        }
    device = re.sub(r"[^A-Za-z0-9]+", "-", str(env["device"])).strip("-").lower()
    name = f"attention_{device}_jax{jax.__version__}"
    lines = [
        f"# Attention benchmark on {env['device']} (jax {jax.__version__}, bfloat16)",
        "",
        f"`{result['command']}`",
        "",
        "| impl | mode | L | D | B x H | padded | ms | TFLOP/s | compile s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['impl']} | {r['mode']} | {r['length']} | {r['head_dim']} | {r['batch']} x "
        f"{r['heads']} | {r['padded']} | {r['seconds'] * 1e3:.3f} | {r['tflops']:.2f} | "
        f"{r['compile_seconds']:.2f} |"
        for r in rows
    ]
    if "interpret_mode_max_abs_error" in result:
        lines += [
            "",
            f"Interpret-mode check of our kernel (max abs error vs reference): "
            f"{result['interpret_mode_max_abs_error']}",
        ]
    lines += ["", f"Environment: `{env}`", ""]
    path = write_result(name, result, "\n".join(lines))
    if rows and plot(rows, path.with_suffix(".png")):
        print(f"wrote {path.with_suffix('.png')}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

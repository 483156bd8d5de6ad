"""Attention microbenchmark: our Pallas flash attention (the default choice, and by name our
Triton and Mosaic GPU kernels) against reference JAX, XLA, cuDNN, JAX's bundled Pallas kernels
(Triton `mha`, Mosaic GPU `attention_mgpu`) and tokamax where it is installed; forward and
forward+backward, bfloat16, with and without padding.

    python bench/attention.py                      # GPU/TPU: the full sweep
    python bench/attention.py --lengths 256 512    # CPU: reference, XLA, blocked, MKL, torch,
                                                   # and an interpret-mode check of ours
    python bench/attention.py --lengths 1000 --head-dims 32 --tokens 2000 --model-dim 512 \
        --dtype float32                            # CPU: Codon-NT's attention, batch 2

Writes attention_<device>_jax<version>.{json,md,png} into --out (default: a scratch folder;
`--out bench/results` for the committed ones). Times are medians of
`--repeats` runs after warm-up; compile time (`jax.jit(f).lower(...).compile()`) is measured
apart from them. Any error fails the run: implementations that cannot run on this platform are
left out by an explicit check before the sweep, and recorded as skipped with the reason.
TFLOP/s counts the nominal 4*B*H*L*L*D forward FLOPs (x2.5 for forward+backward) over all L
keys, padding or not; each row records the machine's load, as other processes inflate times.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import sys
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from codonnt_eqx.kernels import attention, flash_attention

from _common import add_out_argument, environment, median_seconds, results_dir, write_result

_BUNDLED_MHA = "jax.experimental.pallas.ops.gpu.attention"
_BUNDLED_MGPU = "jax.experimental.pallas.ops.gpu.attention_mgpu"
UNPADDED_ONLY = ("jax pallas mha", "jax mosaic gpu")


def _module_exists(name: str) -> bool:
    """Whether `name` can be imported, without importing it (parents are imported)."""
    parent = name.rpartition(".")[0]
    if parent and not _module_exists(parent):
        return False
    return importlib.util.find_spec(name) is not None


def _bundled_pallas_mha():
    """JAX's own (deprecated) Triton flash attention: a peer. No key padding support, so it is
    timed on the unpadded case only."""
    from jax.experimental.pallas.ops.gpu import attention as ops

    def mha(q, k, v, lengths):
        del lengths
        return ops.mha(q, k, v, segment_ids=None)

    return mha


def _bundled_mosaic_gpu():
    """JAX's bundled Mosaic GPU attention (FA3-style warp specialisation): a peer. No key
    padding; head_dim a multiple of 64 and length of 256 (2 x block_q)."""
    from jax.experimental.pallas.ops.gpu import attention_mgpu as ops

    config = ops.TuningConfig(block_q=128, block_kv=128, max_concurrent_steps=2)

    def mgpu(q, k, v, lengths):
        del lengths
        return ops.attention(q, k, v, config)

    return mgpu


def _tokamax():
    import tokamax

    def attend(q, k, v, lengths):
        return tokamax.dot_product_attention(q, k, v, key_value_seq_lengths=lengths)

    return attend


def shape_skip(name: str, head_dim: int, length: int, padded: bool) -> bool:
    """Cases a peer cannot take, left out by this check (and said so in `skipped`)."""
    if padded and name in UNPADDED_ONLY:
        return True
    return name == "jax mosaic gpu" and bool(head_dim % 64 or length % 256)


def _hopper() -> bool:
    capability = getattr(jax.devices()[0], "compute_capability", "0")
    return int(str(capability).split(".")[0]) >= 9


def _mkl_attention():
    from codonnt_eqx.cpu import mkl_attention

    return lambda q, k, v, n: mkl_attention(q, k, v, n)


def _mkl_unavailable() -> str | None:
    """Why `mkl_attention` cannot run here (None: it can), whether or not it pays on this CPU
    (`mkl_attention_pays`): the benchmark is what measures that."""
    try:
        from codonnt_eqx.cpu import MklGemmUnavailable, mkl_gemm_library
    except ImportError as error:
        return f"codonnt_eqx.cpu does not import: {error}"
    try:
        mkl_gemm_library()  # one library holds the GEMM and the attention
    except (MklGemmUnavailable, OSError) as error:
        return f"the MKL library does not build or load here: {error}"
    return None


class TorchSdpa:
    """PyTorch's `scaled_dot_product_attention` (CPU: its flash kernel) as a peer, on the same
    [batch, length, heads, dim] values; padded keys masked out. Not a JAX function: timed by
    `time_one`, with no compile time; `run()` returns the output."""

    def __call__(self, q, k, v, lengths, mode: str):
        import torch

        def tensor(x):
            # torch has no ml_dtypes' bfloat16: go through float32.
            t = torch.from_numpy(np.array(x, np.float32)).to(_torch_dtype(x.dtype))
            return t.transpose(1, 2).contiguous().requires_grad_(mode != "fwd")

        tq, tk, tv = (tensor(x) for x in (q, k, v))
        length = q.shape[1]
        keep = torch.arange(length)[None, :] < torch.from_numpy(np.asarray(lengths))[:, None]
        mask = None if bool(keep.all()) else keep[:, None, None, :]

        def run():
            with torch.inference_mode(mode == "fwd"):
                out = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, attn_mask=mask)
            if mode != "fwd":
                out.float().sum().backward()
                for t in (tq, tk, tv):
                    t.grad = None
            return out

        return run


def _torch_dtype(dtype):
    import torch

    return {"bfloat16": torch.bfloat16, "float32": torch.float32, "float16": torch.float16}[
        jnp.dtype(dtype).name
    ]


def implementations(platform: str) -> tuple[dict, dict[str, str]]:
    """(name -> fn(q, k, v, lengths), name -> why it is not run here).

    The only way a column is left out: a check made here, before anything runs, and recorded
    with the results. Whatever fails while running fails the benchmark.
    """
    impls = {
        "reference": lambda q, k, v, n: attention(q, k, v, n, implementation="reference"),
        "xla": lambda q, k, v, n: attention(q, k, v, n, implementation="xla"),
        "blocked": lambda q, k, v, n: attention(q, k, v, n, implementation="blocked"),
    }
    skipped = {}
    if platform == "cpu":
        skipped["pallas (ours)"] = (
            "CPU runs Pallas in interpret mode only: checked for correctness, not timed"
        )
    else:
        impls["pallas (ours)"] = lambda q, k, v, n: flash_attention(q, k, v, n)
    if platform == "gpu":
        impls["cudnn"] = lambda q, k, v, n: attention(q, k, v, n, implementation="cudnn")
    else:
        skipped["cudnn"] = f"needs a CUDA GPU; platform is {platform}"
    if platform != "gpu":
        skipped["jax pallas mha"] = f"a GPU (Triton) kernel; platform is {platform}"
    elif not _module_exists(_BUNDLED_MHA):
        skipped["jax pallas mha"] = f"{_BUNDLED_MHA} is not in jax {jax.__version__}"
    else:
        impls["jax pallas mha"] = _bundled_pallas_mha()
        skipped["jax pallas mha, padded"] = "no key padding support: timed unpadded only"
    if platform == "gpu":
        impls["ours triton"] = lambda q, k, v, n: flash_attention(q, k, v, n, backend="gpu")
    if platform != "gpu" or not _hopper():
        why = f"needs a CUDA GPU of compute capability >= 9.0; platform is {platform}"
        skipped["ours mosaic gpu"] = skipped["jax mosaic gpu"] = why
    elif not _module_exists(_BUNDLED_MGPU):
        skipped["jax mosaic gpu"] = f"{_BUNDLED_MGPU} is not in jax {jax.__version__}"
    else:
        impls["ours mosaic gpu"] = lambda q, k, v, n: flash_attention(
            q, k, v, n, backend="mosaic_gpu"
        )
        impls["jax mosaic gpu"] = _bundled_mosaic_gpu()
        skipped["jax mosaic gpu, some shapes"] = (
            "no key padding, head_dim % 64 == 0 and length % 256 == 0 only: timed there"
        )
    if platform != "cpu":
        skipped["mkl (ours, cpu)"] = skipped["torch sdpa"] = f"CPU peers; platform is {platform}"
    else:
        why = _mkl_unavailable()
        if why is None:
            impls["mkl (ours, cpu)"] = _mkl_attention()
        else:
            skipped["mkl (ours, cpu)"] = why
        if _module_exists("torch"):
            impls["torch sdpa"] = TorchSdpa()
        else:
            skipped["torch sdpa"] = "torch is not installed"
    if platform != "gpu":
        skipped["tokamax"] = f"a GPU peer here; platform is {platform}"
    elif not _module_exists("tokamax"):
        skipped["tokamax"] = "not installed (pip install tokamax)"
    else:
        impls["tokamax"] = _tokamax()
    return impls, skipped


def compile_step(fn, q, k, v, lengths, mode: str) -> tuple[Callable, float]:
    """(executable, compile seconds): `fn` (or its gradient) compiled ahead of time, so that no
    run is timed as compilation and no compilation as a run."""
    if mode == "fwd":
        step = fn
    else:

        def loss(q, k, v, n):
            return jnp.sum(fn(q, k, v, n).astype(jnp.float32))

        step = jax.grad(loss, argnums=(0, 1, 2))
    # Otherwise the padded case (same function, same shapes) reuses the unpadded executable.
    jax.clear_caches()
    start = time.perf_counter()
    compiled = jax.jit(step).lower(q, k, v, lengths).compile()
    return compiled, time.perf_counter() - start


def time_one(fn, q, k, v, lengths, mode: str, repeats: int) -> tuple[float | None, float]:
    """(compile seconds, median seconds of `repeats` runs after a warm-up); no compile time
    for PyTorch."""
    if isinstance(fn, TorchSdpa):
        return None, median_seconds(fn(q, k, v, lengths, mode), repeats)
    step, compile_s = compile_step(fn, q, k, v, lengths, mode)
    return compile_s, median_seconds(lambda: jax.block_until_ready(step(q, k, v, lengths)), repeats)


def peak_memory() -> int | None:
    stats = jax.devices()[0].memory_stats() or {}
    return stats.get("peak_bytes_in_use")


def check_interpret_mode(dtype, backend: str = "gpu") -> float:
    """Max |ours - reference| of a small padded case, run in interpret mode (CPU)."""
    rng = np.random.default_rng(0)
    q, k, v = (jnp.asarray(rng.normal(size=(2, 200, 4, 32)), dtype) for _ in range(3))
    lengths = jnp.array([200, 77])
    ours = flash_attention(q, k, v, lengths, interpret=True, backend=backend)
    ref = attention(q, k, v, lengths, implementation="reference")
    return float(jnp.max(jnp.abs(ours.astype(jnp.float32) - ref.astype(jnp.float32))))


def _compile_cell(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.2f}"


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


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--lengths", type=int, nargs="+", default=[512, 1024, 2048, 4096, 8192, 16384]
    )
    parser.add_argument("--head-dims", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--tokens", type=int, default=32768, help="batch x length")
    parser.add_argument("--model-dim", type=int, default=2048, help="heads x head_dim")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--dtype", choices=("bfloat16", "float32", "float16"), default="bfloat16")
    add_out_argument(parser, "attention")
    args = parser.parse_args(argv)

    platform = jax.default_backend()
    impls, skipped = implementations(platform)
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")
    dtype = jnp.dtype(args.dtype)
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
                for name, fn in impls.items():
                    if shape_skip(name, d, length, padded):
                        continue  # recorded in `skipped`
                    for mode in ("fwd", "fwd+bwd"):
                        compile_s, seconds = time_one(fn, q, k, v, lengths, mode, args.repeats)
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
                            # Other processes inflate every time: say how busy the machine was.
                            load_1min=os.getloadavg()[0],
                        )
                        rows.append(row)
                        print(
                            f"{name:>15} {mode:>7} L={length:>5} D={d:>3} pad={padded!s:>5} "
                            f"{seconds * 1e3:9.3f} ms {row['tflops']:7.2f} TFLOP/s"
                        )
    env = environment()
    result = {
        "command": "python bench/attention.py " + " ".join(argv),
        "dtype": args.dtype,
        "compile_method": "jax.jit(f).lower(...).compile(), apart from the timed runs",
        "skipped": skipped,
        "rows": rows,
        "environment": env,
    }
    if platform == "cpu":
        result["interpret_mode_max_abs_error"] = {
            "float32": check_interpret_mode(jnp.float32),
            "bfloat16": check_interpret_mode(jnp.bfloat16),
            "bfloat16, mosaic_gpu": check_interpret_mode(jnp.bfloat16, "mosaic_gpu"),
        }
    device = re.sub(r"[^A-Za-z0-9]+", "-", str(env["device"])).strip("-").lower()
    suffix = "" if args.dtype == "bfloat16" else f"_{args.dtype}"
    name = f"attention_{device}_jax{jax.__version__}{suffix}"
    lines = [
        f"# Attention benchmark on {env['device']} (jax {jax.__version__}, {args.dtype})",
        "",
        f"`{result['command']}`",
        "",
        "| impl | mode | L | D | B x H | padded | ms | TFLOP/s | compile s | load |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['impl']} | {r['mode']} | {r['length']} | {r['head_dim']} | {r['batch']} x "
        f"{r['heads']} | {r['padded']} | {r['seconds'] * 1e3:.3f} | {r['tflops']:.2f} | "
        f"{_compile_cell(r['compile_seconds'])} | {r['load_1min']:.1f} |"
        for r in rows
    ]
    lines += [
        "",
        "compile s: `jax.jit(f).lower(...).compile()`, timed apart from the runs. ms: median "
        "of the runs after one warm-up. load: the machine's 1-minute load average after the cell "
        f"({env['cpu_count']} CPUs; above that, other processes were competing).",
        "",
        "Not run here (checked before running):",
        *(f"- {name}: {why}" for name, why in skipped.items()),
    ]
    if "interpret_mode_max_abs_error" in result:
        lines += [
            "",
            f"Interpret-mode check of our kernel (max abs error vs reference): "
            f"{result['interpret_mode_max_abs_error']}",
        ]
    lines += ["", f"Environment: `{env}`", ""]
    path = write_result(name, result, "\n".join(lines), results_dir(args.out, "attention"))
    if rows and plot(rows, path.with_suffix(".png")):
        print(f"wrote {path.with_suffix('.png')}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

"""The prepared GPU run: correctness of the compiled kernels, the attention microbenchmark, a
block-size sweep, the model's throughput and MFU, and attention memory, in <= 8 minutes.

    PYTHONUNBUFFERED=1 timeout 480 python bench/gpu/run.py --out bench/results/gpu_h100_jax0.11.2
    python bench/gpu/run.py --dry-run      # tiny sizes on CPU (Pallas in interpret mode)

Everything is written after every case (results.json and results.md in --out), so a run cut
off leaves what it measured. Each section is wrapped: its failure is recorded with the error
and the run goes on to the next; the exit status is 1 if any section failed. A time budget
(--budget-s) is shared out among the sections still to run, the unused part of one passing to
the ones after it; what does not fit is recorded as skipped. See bench/gpu/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import itertools
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from importlib import metadata

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from codonnt_eqx.kernels import BlockSizes, attention, flash_attention, reference_attention

import codonnt_eqx
from codonnt_eqx import kernels
from codonnt_eqx.training import MaskedLM, codon_nt_optimizer, make_train_step

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
# bench/_common.py
from _common import add_out_argument, environment, median_seconds, results_dir  # noqa: E402

OURS = "pallas (ours)"
SWEPT_KERNELS = ("mosaic_gpu", "gpu")  # flash_attention backends: Mosaic GPU, Triton
# Dense bfloat16 tensor-core peaks (NVIDIA datasheets, no sparsity), matched in this order
# against jax's device_kind (e.g. "NVIDIA H100 80GB HBM3", "NVIDIA H200").
PEAK_BF16_TFLOPS = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H200 NVL", 835.0),
    ("H100", 989.0),
    ("H200", 989.0),
    ("H800", 989.0),
    ("A100", 312.0),
)
TOLERANCE = {"bfloat16": 2e-2, "float16": 5e-3, "float32": 1e-4}  # max|err| / max|reference|
MODEL_TOLERANCE = {"bfloat16": 5e-2, "float32": 1e-3}  # 12 layers compound the kernel's error
DTYPES = {"bfloat16": jnp.bfloat16, "float16": jnp.float16, "float32": jnp.float32}


@dataclasses.dataclass(frozen=True)
class Sizes:
    check_lengths: tuple[int, ...]
    check_head_dims: tuple[int, ...]
    check_heads: int
    model_check_length: int
    bench_lengths: tuple[int, ...]
    bench_heads: dict[int, int]  # head_dim -> heads
    bench_tokens: int  # batch x length
    sweep_length: int
    sweep_head_dims: tuple[int, ...]
    sweep_candidates: int | None  # None: all
    model_length: int
    model_batches: tuple[int, ...]
    memory_lengths: tuple[int, ...]
    memory_heads: int
    memory_head_dim: int
    repeats: int  # at most, after warm-up
    min_repeats: int
    target_s: float  # timed runs per case stop at about this many seconds

    def model_config(self, dry: bool):
        config = codonnt_eqx.preset("codon_nt")
        if dry:
            config = config.replace(embed_dim=64, num_layers=2, num_heads=4, ffn_dim=128)
        return config


FULL = Sizes(
    check_lengths=(100, 1000),
    check_head_dims=(32, 64, 128),
    check_heads=2,
    model_check_length=1000,
    bench_lengths=(1024, 2048, 4096, 8192, 16384),
    bench_heads={32: 16, 64: 8},
    bench_tokens=32768,
    sweep_length=4096,
    sweep_head_dims=(32, 64),
    sweep_candidates=None,
    model_length=1000,
    model_batches=(64, 128, 256),
    memory_lengths=(1024, 2048, 4096, 8192, 16384, 32768),
    memory_heads=16,
    memory_head_dim=32,
    repeats=20,
    min_repeats=3,
    target_s=0.5,
)
DRY = Sizes(
    check_lengths=(50,),
    check_head_dims=(16, 32),
    check_heads=2,
    model_check_length=64,
    bench_lengths=(128,),
    bench_heads={32: 2},
    bench_tokens=256,
    sweep_length=128,
    sweep_head_dims=(32,),
    sweep_candidates=1,
    model_length=64,
    model_batches=(2,),
    memory_lengths=(64, 128),
    memory_heads=2,
    memory_head_dim=16,
    repeats=2,
    min_repeats=1,
    target_s=0.05,
)
# How the budget is shared among the sections still to run (the environment takes seconds).
WEIGHTS = {
    "environment": 0.01,
    "correctness": 0.2,
    "attention": 0.33,
    "block_sizes": 0.1,
    "model": 0.25,
    "memory": 0.12,
}


def say(*parts) -> None:
    print(*parts, flush=True)


class Interrupted(BaseException):
    """SIGTERM (e.g. from `timeout`): not an `Exception`, so no section catches it."""


def _interrupt(signum, frame):
    raise Interrupted(f"signal {signum}")


def _error_text(e: BaseException, limit: int = 2000) -> str:
    text = f"{type(e).__name__}: {e}"
    return text if len(text) <= limit else text[: limit // 2] + " ... " + text[-limit // 2 :]


def _is_oom(e: BaseException) -> bool:
    text = str(e)
    return "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower()


def _atomic_write(path: pathlib.Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class Clock:
    """Seconds left to a section: its share of the budget, never past the run's deadline."""

    def __init__(self, deadline: float, share_end: float):
        self.end = min(deadline, share_end)

    def left(self) -> float:
        return self.end - time.monotonic()


class Results:
    """The run's record, rewritten (JSON and markdown) after every case."""

    def __init__(self, out: pathlib.Path, meta: dict, t0: float):
        self.out, self.t0 = out, t0
        self.data: dict = {"meta": meta, "sections": {}}

    def save(self) -> None:
        self.data["meta"]["elapsed_s"] = round(time.monotonic() - self.t0, 1)
        _atomic_write(self.out / "results.json", json.dumps(self.data, indent=2, default=str))
        _atomic_write(self.out / "results.md", markdown(self.data))


@dataclasses.dataclass
class Context:
    sizes: Sizes
    dry: bool
    platform: str
    results: Results
    script: pathlib.Path

    @property
    def interpret(self) -> bool | None:
        return interpret_on(self.platform)


def interpret_on(platform: str) -> bool | None:
    """flash_attention's `interpret`: off a GPU each kernel's own interpreter (without it,
    backend='mosaic_gpu' would interpret the Triton kernels on a CPU)."""
    return None if platform == "gpu" else True


def run_case(ctx: Context, sec: dict, clock: Clock, case: dict, measure, *, ours: bool) -> dict:
    """`measure() -> dict` into `case`, which joins the section's cases and is saved at once.

    An error is recorded in the case; one of our own code that is not out-of-memory (or a
    failed correctness check) also fails the section."""
    sec.setdefault("cases", []).append(case)
    if clock.left() <= 0:
        case.update(status="skipped", reason="out of time")
    else:
        start = time.perf_counter()
        try:
            case.update(measure())
            case.setdefault("status", "ok")
        except Exception as e:  # noqa: BLE001 - recorded, and the next case runs
            case.update(status="oom" if _is_oom(e) else "error", error=_error_text(e))
            if ours and not _is_oom(e):
                sec.setdefault("failures", []).append(_label(case))
        case["wall_s"] = time.perf_counter() - start
    if case.get("passed") is False:
        sec.setdefault("failures", []).append(_label(case))
    say(f"  {_label(case)}: {_summary(case)}")
    ctx.results.save()
    return case


_LABEL_KEYS = ("impl", "kernel", "kind", "dtype", "head_dim", "length", "batch", "mode", "blocks")
_SUMMARY_KEYS = ("rel_error", "max_abs_diff", "ms", "tflops", "tokens_per_s", "mfu")


def _label(case: dict) -> str:
    return " ".join(f"{k}={case[k]}" for k in _LABEL_KEYS if k in case)


def _summary(case: dict) -> str:
    if case["status"] != "ok":
        return f"{case['status']}: {case.get('reason') or case.get('error', '')[:300]}"
    parts = [f"{k}={case[k]:.4g}" for k in _SUMMARY_KEYS if case.get(k) is not None]
    if "passed" in case:
        parts.append("PASS" if case["passed"] else "FAIL")
    return " ".join(parts) or "ok"


def _compiled_memory(compiled) -> dict | None:
    try:
        ma = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - not every backend has it
        return None
    if ma is None:
        return None
    fields = ("argument", "output", "temp", "alias", "generated_code")
    sizes = {f: int(getattr(ma, f"{f}_size_in_bytes", 0) or 0) for f in fields}
    sizes["total"] = sizes["argument"] + sizes["output"] + sizes["temp"] - sizes["alias"]
    return sizes


def timed(ctx: Context, fn: Callable, *args) -> dict:
    """`fn` compiled ahead of time (compile seconds apart), then the median of N runs after
    warm-up, N chosen so that a case takes about `target_s`."""
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - start

    def run():
        jax.block_until_ready(compiled(*args))

    start = time.perf_counter()
    run()
    first = time.perf_counter() - start
    s = ctx.sizes
    runs = max(s.min_repeats, min(s.repeats, int(s.target_s / max(first, 1e-6))))
    seconds = median_seconds(run, runs, warmup=1)
    return dict(seconds=seconds, ms=seconds * 1e3, runs=runs, compile_s=compile_s)


def _gradient(fn: Callable) -> Callable:
    """d/d(q, k, v) of sum(fn(q, k, v)): forward and backward."""

    def loss(q, k, v):
        return jnp.sum(fn(q, k, v).astype(jnp.float32))

    return jax.grad(loss, argnums=(0, 1, 2))


def _qkv(rng, batch: int, length: int, heads: int, head_dim: int, dtype) -> tuple:
    return tuple(
        jnp.asarray(rng.normal(size=(batch, length, heads, head_dim)), dtype) for _ in range(3)
    )


def _peak_tflops(device_kind: str) -> float | None:
    for name, tflops in PEAK_BF16_TFLOPS:
        if name.lower() in device_kind.lower():
            return tflops
    return None


# 1. environment -------------------------------------------------------------------------------


def section_environment(ctx: Context, sec: dict, clock: Clock) -> None:
    dev = jax.devices()[0]
    info = environment()
    info.update(
        jax=jax.__version__,
        backend=jax.default_backend(),
        device_kind=dev.device_kind,
        device_count=jax.device_count(),
        local_device_count=jax.local_device_count(),
        process_count=jax.process_count(),
        platform_version=getattr(dev.client, "platform_version", None),
        peak_bf16_tflops=_peak_tflops(dev.device_kind),
    )
    for name in ("platform", "id", "compute_capability", "core_count", "local_hardware_id"):
        value = getattr(dev, name, None)
        if value is not None:
            info[f"device_{name}"] = str(value)
    stats = dev.memory_stats()
    info["memory_stats"] = stats if stats is not None else "None on this platform"
    for pkg in ("jaxlib", "jax-cuda12-plugin", "jax-cuda12-pjrt", "jax-cuda13-plugin",
                "jax-cuda13-pjrt", "optax", "jaxtyping"):  # fmt: skip
        try:
            info[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    info["env"] = {
        k: v for k, v in os.environ.items() if k.startswith(("XLA_", "JAX_", "CUDA_VISIBLE"))
    }
    sec["info"] = info
    for key in ("jax", "backend", "device_kind", "device_count", "peak_bf16_tflops"):
        say(f"  {key}: {info[key]}")


# 2. correctness -------------------------------------------------------------------------------


def _output_and_gradients(attn: Callable) -> Callable:
    """(attn(q, k, v, lengths), and the gradient of sum(w * output) wrt q, k, v)."""

    def f(q, k, v, lengths, w):
        out, pullback = jax.vjp(lambda q, k, v: attn(q, k, v, lengths), q, k, v)
        return (out, *pullback(w.astype(out.dtype)))

    return jax.jit(f)


def _relative(x, ref) -> tuple[float, float]:
    """(max |x - ref|, max |ref|)."""
    err = jnp.max(jnp.abs(x.astype(jnp.float32) - ref))
    return float(err), float(jnp.max(jnp.abs(ref)))


def _padded_lengths(length: int) -> list[int]:
    return [length, (2 * length) // 3 + 1, length // 3, 0]


def section_correctness(ctx: Context, sec: dict, clock: Clock) -> None:
    s = ctx.sizes
    sec["tolerance"] = {**TOLERANCE, "model": MODEL_TOLERANCE}
    sec["note"] = (
        "ours (flash_attention with backend='gpu' (Triton) and 'mosaic_gpu' (bf16/f16 only), "
        "compiled on GPU, interpret mode on CPU) against "
        "reference_attention on the same inputs upcast to float32, at HIGHEST matmul "
        "precision; error = max|ours - ref| / max|ref| over the output and the gradients of "
        "sum(w * output) (w random) wrt q, k, v; kv_lengths per row: L, 2L/3+1, L/3, 0"
    )
    sec["kernels_ran"] = "compiled" if ctx.platform == "gpu" else f"interpret mode ({ctx.platform})"
    ref = _output_and_gradients(reference_attention)
    rng = np.random.default_rng(0)
    for backend, dtype_name, head_dim, length in itertools.product(
        SWEPT_KERNELS, DTYPES, s.check_head_dims, s.check_lengths
    ):
        if backend == "mosaic_gpu" and dtype_name == "float32":
            continue  # 16-bit inputs only
        dtype = DTYPES[dtype_name]
        ours = _output_and_gradients(
            functools.partial(flash_attention, backend=backend, interpret=ctx.interpret)
        )
        case = dict(kernel=backend, dtype=dtype_name, head_dim=head_dim, length=length)

        def measure(dtype=dtype, dtype_name=dtype_name, head_dim=head_dim, length=length,
                    ours=ours):  # fmt: skip
            shape = (4, length, s.check_heads, head_dim)
            q, k, v, w = (jnp.asarray(rng.normal(size=shape), dtype) for _ in range(4))
            lengths = jnp.asarray(_padded_lengths(length), jnp.int32)
            got = ours(q, k, v, lengths, w)
            with jax.default_matmul_precision("highest"):
                f32 = (x.astype(jnp.float32) for x in (q, k, v))
                want = ref(*f32, lengths, w.astype(jnp.float32))
            row = {}
            for name, x, r in zip(("out", "dq", "dk", "dv"), got, want, strict=True):
                err, scale = _relative(x, r)
                row[f"{name}_max_abs_error"] = err
                row[f"{name}_max_abs_ref"] = scale
                row[f"{name}_rel_error"] = err / scale if scale else err
            rel = max(row[f"{n}_rel_error"] for n in ("out", "dq", "dk", "dv"))
            return dict(
                row,
                kv_lengths=_padded_lengths(length),
                rel_error=rel,
                tolerance=TOLERANCE[dtype_name],
                passed=bool(rel <= TOLERANCE[dtype_name]),
            )

        run_case(ctx, sec, clock, case, measure, ours=True)

    config = s.model_config(ctx.dry)
    model = codonnt_eqx.NucleotideTransformer(config, key=jax.random.key(0))
    length = s.model_check_length
    valid = [length, int(length * 0.7), length // 3, 1]
    tokens = _tokens(rng, len(valid), length, config.vocab_size)
    tokens = np.where(np.arange(length)[None, :] < np.array(valid)[:, None], tokens, 1)
    tokens = jnp.asarray(tokens, jnp.int32)
    sec["model_note"] = (
        f"{'tiny ' if ctx.dry else ''}codon_nt, random init, tokens [{len(valid)}, {length}] "
        f"with {valid} non-pad tokens; attention='pallas' vs 'reference', max|diff| of the "
        "logits / max|reference logits|; float32 at HIGHEST matmul precision"
    )

    @eqx.filter_jit
    def logits(model, tokens, implementation, dtype):
        run = codonnt_eqx.with_options(model, attention=implementation, dtype=dtype)
        return jax.vmap(run)(tokens).logits

    for dtype_name in ("float32", "bfloat16"):
        case = dict(kind="model", dtype=dtype_name, length=length)

        def measure(dtype_name=dtype_name):
            precise = dtype_name == "float32"
            with jax.default_matmul_precision("highest") if precise else contextlib.nullcontext():
                got = logits(model, tokens, "pallas", DTYPES[dtype_name])
                want = logits(model, tokens, "reference", DTYPES[dtype_name])
            diff, scale = _relative(got, want)
            rel = diff / scale if scale else diff
            tol = MODEL_TOLERANCE[dtype_name]
            return dict(
                max_abs_diff=diff, max_abs_ref=scale, rel_error=rel, tolerance=tol,
                passed=bool(rel <= tol),
            )  # fmt: skip

        run_case(ctx, sec, clock, case, measure, ours=True)


def _tokens(rng, batch: int, length: int, vocab: int) -> np.ndarray:
    """Random 3-mer ids (after the special ids of KmerTokenizer(3)), <cls> first."""
    first = max(codonnt_eqx.KmerTokenizer(3).special_ids) + 1
    tokens = rng.integers(first, vocab, size=(batch, length)).astype(np.int32)
    tokens[:, 0] = codonnt_eqx.KmerTokenizer(3).cls_id
    return tokens


# 3. attention microbenchmark ------------------------------------------------------------------


def _bundled_mosaic_gpu(q, k, v):
    """JAX's bundled Mosaic GPU attention (FA3-style: two compute warpgroups and a TMA one),
    without key padding; head_dim a multiple of 64 and length of 256 (2 x block_q)."""
    from jax.experimental.pallas.ops.gpu import attention_mgpu

    config = attention_mgpu.TuningConfig(block_q=128, block_kv=128, max_concurrent_steps=2)
    return attention_mgpu.attention(q, k, v, config)


def _tokamax(q, k, v):
    import tokamax

    return tokamax.dot_product_attention(q, k, v)


def _attention_impls(platform: str) -> tuple[dict[str, Callable], dict[str, str]]:
    """Ours (`"pallas"`: Mosaic GPU on sm90+ in bf16, else Triton), our Triton and Mosaic GPU
    kernels by name, and the peers."""
    impls = {
        OURS: lambda q, k, v: attention(q, k, v, implementation="pallas"),
        "ours-triton": lambda q, k, v: flash_attention(q, k, v, backend="gpu"),
        "ours-mosaic-gpu": lambda q, k, v: flash_attention(
            q, k, v, backend="mosaic_gpu", interpret=interpret_on(platform)
        ),
        "cudnn": lambda q, k, v: jax.nn.dot_product_attention(q, k, v, implementation="cudnn"),
        "jax-mosaic-gpu": _bundled_mosaic_gpu,
        "tokamax": _tokamax,
        "xla": lambda q, k, v: jax.nn.dot_product_attention(q, k, v, implementation="xla"),
        "reference": lambda q, k, v: attention(q, k, v, implementation="reference"),
    }
    skipped = {}
    if platform != "gpu":
        for name in ("cudnn", "jax-mosaic-gpu", "tokamax"):
            skipped[name] = f"needs a CUDA GPU; platform is {platform}"
        del impls["ours-triton"]  # the same kernel OURS runs in interpret mode here
    try:
        import tokamax  # noqa: F401
    except ImportError as e:
        skipped.setdefault("tokamax", f"not installed ({e})")
    for name in skipped:
        impls.pop(name, None)
    return impls, skipped


def _unsupported(name: str, head_dim: int, length: int) -> str | None:
    """Why a peer cannot run a shape (instead of a recorded error)."""
    if name == "jax-mosaic-gpu" and (head_dim % 64 or length % 256):
        return "JAX's bundled kernel needs head_dim % 64 == 0 and length % 256 == 0"
    return None


def attention_flops(batch: int, heads: int, length: int, head_dim: int, mode: str) -> float:
    """Nominal: 4*B*H*L*L*D forward (QK^T and PV), x3.5 for forward+backward (bwd = 2.5 fwd)."""
    return 4 * batch * heads * length * length * head_dim * (1.0 if mode == "fwd" else 3.5)


def section_attention(ctx: Context, sec: dict, clock: Clock) -> None:
    s = ctx.sizes
    impls, skipped = _attention_impls(ctx.platform)
    sec["skipped_impls"] = skipped
    sec["note"] = (
        "bfloat16, no padding, batch x length = "
        f"{s.bench_tokens} tokens; ours = attention(implementation='pallas'), xla/cudnn = "
        "jax.nn.dot_product_attention, reference = attention(implementation='reference'). "
        "ms: median of N runs after warm-up (block_until_ready), compile apart "
        "(jax.jit(f).lower(...).compile()). TFLOP/s: nominal 4*B*H*L*L*D forward, "
        "x3.5 for fwd+bwd (backward = 2.5 x forward), over all L keys. fwd+bwd: gradient of "
        "sum(out) wrt q, k, v."
    )
    for name, why in skipped.items():
        say(f"  skipped {name}: {why}")
    # Ours and cuDNN everywhere first, so that a run cut short still has the comparison.
    first = (OURS, "cudnn", "ours-triton", "ours-mosaic-gpu", "jax-mosaic-gpu", "tokamax")
    passes = [[n for n in first if n in impls], [n for n in ("xla", "reference")]]
    rng = np.random.default_rng(0)
    too_big: dict[tuple, int] = {}  # (impl, head_dim, mode) -> length that ran out of memory
    for names in passes:
        for head_dim, heads in s.bench_heads.items():
            for length in s.bench_lengths:
                batch = max(1, s.bench_tokens // length)
                for name in names:
                    for mode in ("fwd", "fwd+bwd"):
                        case = dict(
                            impl=name, head_dim=head_dim, length=length, mode=mode,
                            batch=batch, heads=heads,
                        )  # fmt: skip
                        oom_at = too_big.get((name, head_dim, mode))
                        why = _unsupported(name, head_dim, length)
                        if why is not None:
                            case.update(status="skipped", reason=why)
                            sec.setdefault("cases", []).append(case)
                            continue
                        if oom_at is not None:
                            case.update(status="skipped", reason=f"out of memory at L={oom_at}")
                            sec.setdefault("cases", []).append(case)
                            continue

                        def measure(name=name, mode=mode, length=length, batch=batch,
                                    head_dim=head_dim, heads=heads):  # fmt: skip
                            q, k, v = _qkv(rng, batch, length, heads, head_dim, jnp.bfloat16)
                            fn = impls[name] if mode == "fwd" else _gradient(impls[name])
                            row = timed(ctx, fn, q, k, v)
                            flops = attention_flops(batch, heads, length, head_dim, mode)
                            return dict(row, tflops=flops / row["seconds"] / 1e12)

                        ours = name == OURS or name.startswith("ours-")
                        run_case(ctx, sec, clock, case, measure, ours=ours)
                        if case["status"] == "oom":
                            too_big[(name, head_dim, mode)] = length
    _add_ratios(sec.get("cases", []))


def _add_ratios(cases: list[dict]) -> None:
    """Each timed case's speed relative to cuDNN's at the same shape and mode."""
    cudnn = {
        (c["head_dim"], c["length"], c["mode"]): c["seconds"]
        for c in cases
        if c["impl"] == "cudnn" and c["status"] == "ok"
    }
    for c in cases:
        base = cudnn.get((c["head_dim"], c["length"], c["mode"]))
        if c["status"] == "ok" and base:
            c["speed_vs_cudnn"] = base / c["seconds"]


# 4. block-size sweep --------------------------------------------------------------------------


def _candidates(head_dim: int, limit: int | None) -> list[tuple[str, BlockSizes | None]]:
    """(backend, blocks): per kernel the defaults (None), then the bf16 candidates for
    `head_dim` that fit an H100's shared memory: exactly those the deviceless compile tests
    build for an H100."""
    out = []
    for backend in SWEPT_KERNELS:
        candidates = list(kernels.candidate_block_sizes(backend, head_dim, 2))
        if limit is not None:
            candidates = candidates[:limit]
        out += [(backend, None), *((backend, b) for b in candidates)]
    return out


def _blocks_text(blocks: BlockSizes | None) -> str:
    if blocks is None:
        return "default"
    text = f"fwd {blocks.block_q}x{blocks.block_k} bwd {blocks.block_q_bwd}x{blocks.block_k_bwd}"
    if blocks.num_warps is not None:
        text += f" warps {blocks.num_warps}"
    return text + f" stages {blocks.num_stages}"


def section_block_sizes(ctx: Context, sec: dict, clock: Clock) -> None:
    s = ctx.sizes
    sec["candidates_from"] = (
        "codonnt_eqx.kernels.candidate_block_sizes(backend, head_dim, 2) for backend in "
        f"{SWEPT_KERNELS}"
    )
    length = s.sweep_length
    batch = max(1, s.bench_tokens // length)
    sec["note"] = (
        f"flash_attention(block_sizes=...), bfloat16, L={length}, batch {batch}, no padding; "
        "'default' is block_sizes=None. fwd ranks the forward tiles; fwd+bwd both."
    )
    rng = np.random.default_rng(0)
    inputs = {
        d: _qkv(rng, batch, length, s.bench_heads[d], d, jnp.bfloat16) for d in s.sweep_head_dims
    }
    candidates = {d: _candidates(d, s.sweep_candidates) for d in inputs}
    # Candidates outermost: a run cut short has the first ones at every head dim.
    for i in range(max(len(c) for c in candidates.values())):
        for head_dim, (q, k, v) in inputs.items():
            if i >= len(candidates[head_dim]):
                continue
            backend, blocks = candidates[head_dim][i]
            heads = s.bench_heads[head_dim]
            for mode in ("fwd+bwd", "fwd"):
                case = dict(
                    kernel=backend, head_dim=head_dim, length=length, mode=mode,
                    blocks=_blocks_text(blocks), batch=batch, heads=heads,
                    block_sizes=None if blocks is None else dataclasses.asdict(blocks),
                )  # fmt: skip

                def measure(blocks=blocks, mode=mode, q=q, k=k, v=v, heads=heads,
                            head_dim=head_dim, backend=backend):  # fmt: skip
                    def fn(q, k, v):
                        return flash_attention(
                            q, k, v, block_sizes=blocks, backend=backend, interpret=ctx.interpret
                        )

                    row = timed(ctx, fn if mode == "fwd" else _gradient(fn), q, k, v)
                    flops = attention_flops(batch, heads, length, head_dim, mode)
                    return dict(row, tflops=flops / row["seconds"] / 1e12)

                run_case(ctx, sec, clock, case, measure, ours=True)
    del inputs
    best = {}
    for c in sec.get("cases", []):
        if c["status"] != "ok":
            continue
        key = f"{c['kernel']} D={c['head_dim']} {c['mode']}"
        if key not in best or c["seconds"] < best[key]["seconds"]:
            best[key] = c
    default = {
        f"{c['kernel']} D={c['head_dim']} {c['mode']}": c["seconds"]
        for c in sec.get("cases", [])
        if c["status"] == "ok" and c["blocks"] == "default"
    }
    sec["best"] = {
        key: dict(
            blocks=c["blocks"],
            block_sizes=c["block_sizes"],
            ms=c["ms"],
            tflops=c["tflops"],
            speedup_vs_default=default[key] / c["seconds"] if key in default else None,
        )
        for key, c in best.items()
    }


# 5. the model ---------------------------------------------------------------------------------


def _model_flops(config, batch: int, length: int, nonembed: int, train: bool) -> float:
    """2N per token forward (6N with backward) plus attention scores and weighted values,
    4 * layers * L^2 * (heads * head_dim) per sequence forward (12 with backward)."""
    width = config.num_heads * config.head_dim
    factor = 3 if train else 1
    per_sequence = (
        2 * factor * nonembed * length + 4 * factor * config.num_layers * length**2 * width
    )
    return batch * per_sequence


def section_model(ctx: Context, sec: dict, clock: Clock) -> None:
    s = ctx.sizes
    config = s.model_config(ctx.dry)
    model = codonnt_eqx.NucleotideTransformer(config, key=jax.random.key(0))
    total = model.num_parameters()
    embedding = model.embed.size + (
        0 if model.position_embed is None else model.position_embed.size
    )
    nonembed = total - embedding
    peak = _peak_tflops(jax.devices()[0].device_kind)
    length = s.model_length
    sec.update(
        config=dataclasses.asdict(config),
        parameters=total,
        non_embedding_parameters=nonembed,
        peak_bf16_tflops=peak,
        note=(
            "bfloat16 compute (parameters float32), attention='auto' (ours on GPU), no padding. "
            "Model FLOPs: forward 2*N*tokens + 4*layers*L^2*d per sequence, train step "
            "6*N*tokens + 12*layers*L^2*d per sequence (N: non-embedding parameters, "
            "d = heads * head_dim; backward = 2 x forward, no rematerialisation counted); "
            "MFU = model FLOP/s / the device's dense bf16 peak. Train step: "
            "make_train_step(codon_nt_optimizer(), MaskedLM.for_tokenizer(KmerTokenizer(3))) "
            "on with_options(model, dtype='bfloat16'), tokens [1, batch, L]; compile_s is the "
            "first step's time minus the median step (its compile and one run)."
        ),
    )
    rng = np.random.default_rng(0)

    @eqx.filter_jit
    def forward(model, tokens):
        return jax.vmap(codonnt_eqx.with_options(model, dtype="bfloat16"))(tokens).logits

    def mfu(flops: float, seconds: float) -> float | None:
        return flops / seconds / (peak * 1e12) if peak else None

    oom = False
    for batch in s.model_batches:
        case = dict(kind="forward", batch=batch, length=length)
        if oom:
            case.update(status="skipped", reason="out of memory at a smaller batch")
            sec.setdefault("cases", []).append(case)
            continue

        def measure(batch=batch):
            tokens = jnp.asarray(_tokens(rng, batch, length, config.vocab_size))
            start = time.perf_counter()
            compiled = forward.lower(model, tokens).compile()
            compile_s = time.perf_counter() - start

            def run():
                jax.block_until_ready(compiled(model, tokens))

            run()
            seconds = median_seconds(run, max(s.min_repeats, min(5, s.repeats)))
            flops = _model_flops(config, batch, length, nonembed, train=False)
            return dict(
                seconds=seconds, ms=seconds * 1e3, compile_s=compile_s,
                tokens_per_s=batch * length / seconds, tflops=flops / seconds / 1e12,
                mfu=mfu(flops, seconds),
            )  # fmt: skip

        run_case(ctx, sec, clock, case, measure, ours=True)
        oom = case["status"] == "oom"

    tokenizer = codonnt_eqx.KmerTokenizer(3)
    objective = MaskedLM.for_tokenizer(tokenizer)
    optimizer = codon_nt_optimizer()
    step = make_train_step(optimizer, objective)
    model = codonnt_eqx.with_options(model, dtype="bfloat16")  # the step runs in bfloat16
    oom = False
    for batch in s.model_batches:
        case = dict(kind="train step", batch=batch, length=length)
        if oom:
            case.update(status="skipped", reason="out of memory at a smaller batch")
            sec.setdefault("cases", []).append(case)
            continue

        def measure(batch=batch):
            # A copy: the step donates (invalidates) the model it is given.
            state = [
                jax.tree.map(lambda x: jnp.array(x, copy=True) if eqx.is_array(x) else x, model)
            ]
            state.append(optimizer.init(eqx.filter(state[0], eqx.is_array)))
            tokens = jnp.asarray(_tokens(rng, batch, length, config.vocab_size))[None]
            key = jax.random.key(1)
            count = [0]

            def run():
                count[0] += 1
                new_model, opt_state, metrics = step(
                    state[0], state[1], tokens, jax.random.fold_in(key, count[0])
                )
                jax.block_until_ready((eqx.filter(new_model, eqx.is_array), opt_state, metrics))
                state[:] = [new_model, opt_state, metrics]

            start = time.perf_counter()
            run()
            first = time.perf_counter() - start
            seconds = median_seconds(run, max(s.min_repeats, min(5, s.repeats)), warmup=0)
            loss = state[2].loss
            flops = _model_flops(config, batch, length, nonembed, train=True)
            return dict(
                seconds=seconds, ms=seconds * 1e3, compile_s=first - seconds,
                steps_per_s=1 / seconds, tokens_per_s=batch * length / seconds,
                tflops=flops / seconds / 1e12, mfu=mfu(flops, seconds),
                loss=float(loss.loss_sum / max(int(loss.num_selected), 1)),
            )  # fmt: skip

        run_case(ctx, sec, clock, case, measure, ours=True)
        oom = case["status"] == "oom"


# 6. memory ------------------------------------------------------------------------------------


def memory_child(impl: str, lengths: list[int], heads: int, head_dim: int, path: str) -> None:
    """In a fresh process (so that peak_bytes_in_use is this one's): forward+backward of one
    implementation at increasing L, one JSON line per case appended to `path` as it goes."""
    fns = {
        OURS: lambda q, k, v: attention(q, k, v, implementation="pallas"),
        "reference": lambda q, k, v: attention(q, k, v, implementation="reference"),
    }
    dev = jax.devices()[0]
    rng = np.random.default_rng(0)
    previous_peak = None
    oom_at = None
    for length in lengths:
        row = dict(impl=impl, length=length, batch=1, heads=heads, head_dim=head_dim)
        if oom_at is not None:
            row.update(status="skipped", reason=f"out of memory at L={oom_at}")
        else:
            try:
                stats = dev.memory_stats()
                row["bytes_in_use_before"] = stats.get("bytes_in_use") if stats else None
                q, k, v = _qkv(rng, 1, length, heads, head_dim, jnp.bfloat16)
                compiled = jax.jit(_gradient(fns[impl])).lower(q, k, v).compile()
                row["compiled_bytes"] = _compiled_memory(compiled)
                jax.block_until_ready(compiled(q, k, v))
                stats = dev.memory_stats()
                if stats is None:
                    row["peak_bytes_in_use"] = None
                    row["memory_stats"] = "None on this platform"
                else:
                    peak = stats.get("peak_bytes_in_use")
                    row.update(peak_bytes_in_use=peak, bytes_limit=stats.get("bytes_limit"))
                    if peak is not None:
                        # The peak is the process's: it is this case's only if it rose.
                        row["peak_is_this_case"] = previous_peak is None or peak > previous_peak
                        previous_peak = peak
                row["status"] = "ok"
                del q, k, v, compiled
            except Exception as e:  # noqa: BLE001 - recorded; larger L is skipped on OOM
                row.update(status="oom" if _is_oom(e) else "error", error=_error_text(e))
                if _is_oom(e):
                    oom_at = length
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")


def section_memory(ctx: Context, sec: dict, clock: Clock) -> None:
    s = ctx.sizes
    sec["note"] = (
        "forward+backward (gradient of sum(out) wrt q, k, v), bfloat16, batch 1, "
        f"{s.memory_heads} heads of {s.memory_head_dim}, no padding. Each implementation runs "
        "in a fresh process (XLA_PYTHON_CLIENT_PREALLOCATE=false) over increasing L: "
        "peak_bytes_in_use is that process's peak after the case (inputs and gradients "
        "included); its bytes_limit is what this process's preallocation left it. "
        "compiled_bytes: XLA's buffer assignment of the executable (arguments + outputs + "
        "temporaries - aliased), known without running."
    )
    stats = jax.devices()[0].memory_stats()
    sec["parent_memory_stats"] = stats if stats is not None else "None on this platform"
    env = dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE="false", PYTHONUNBUFFERED="1")
    for impl in (OURS, "reference"):
        left = clock.left()
        if left < 5:
            sec.setdefault("cases", []).append(
                dict(impl=impl, status="skipped", reason="out of time")
            )
            continue
        with tempfile.TemporaryDirectory() as tmp:
            path = pathlib.Path(tmp) / "rows.jsonl"
            cmd = [
                sys.executable, str(ctx.script), "--memory-child", impl, "--child-out", str(path),
                "--child-lengths", *map(str, s.memory_lengths),
                "--child-heads", str(s.memory_heads), "--child-head-dim", str(s.memory_head_dim),
            ]  # fmt: skip
            error = None
            try:
                proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=left)
                if proc.returncode != 0:
                    error = f"child exited {proc.returncode}: {proc.stderr[-1500:]}"
            except subprocess.TimeoutExpired:
                error = f"child ran out of time ({left:.0f} s)"
            rows = (
                [json.loads(line) for line in path.read_text().splitlines()]
                if path.exists()
                else []
            )
        done = {r["length"] for r in rows}
        rows += [
            dict(impl=impl, length=n, status="error" if error else "skipped", error=error)
            for n in s.memory_lengths
            if n not in done
        ]
        for row in rows:
            sec.setdefault("cases", []).append(row)
            if impl == OURS and row["status"] == "error":
                sec.setdefault("failures", []).append(f"{impl} L={row['length']}")
            say(f"  {_label(row)}: {row['status']} peak={row.get('peak_bytes_in_use')} "
                f"compiled={(row.get('compiled_bytes') or {}).get('total')}")  # fmt: skip
        ctx.results.save()


# the markdown ---------------------------------------------------------------------------------


def _fmt(x, spec: str = ".3g") -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return format(x, spec)
    return str(x)


def _gib(n) -> str:
    return "–" if n is None else f"{n / 2**30:.3f}"


def _status(c: dict) -> str:
    if c["status"] == "ok":
        return "ok"
    why = c.get("reason") or c.get("error") or ""
    return f"{c['status']}: {why[:120]}".replace("|", "/").replace("\n", " ")


def _table(header: list[str], rows: list[list]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(_fmt(x) for x in row) + " |" for row in rows),
    ]


def _md_environment(sec: dict) -> list[str]:
    info = sec.get("info", {})
    keys = ("jax", "jaxlib", "backend", "device_kind", "device_count", "platform_version",
            "device_compute_capability", "device_core_count", "peak_bf16_tflops", "python",
            "equinox", "codonnt-eqx", "jax-cuda12-plugin", "jax-cuda13-plugin")  # fmt: skip
    lines = _table(["", ""], [[k, info[k]] for k in keys if k in info])
    stats = info.get("memory_stats")
    if isinstance(stats, dict) and "bytes_limit" in stats:
        lines.append(f"\nbytes_limit (this process): {_gib(stats['bytes_limit'])} GiB")
    return lines


def _md_correctness(sec: dict) -> list[str]:
    cases = sec.get("cases", [])
    kernel = [c for c in cases if "kind" not in c]
    model = [c for c in cases if c.get("kind") == "model"]
    lines = [sec.get("note", ""), "", f"Our kernels ran {sec.get('kernels_ran')}.", ""]
    lines += _table(
        ["kernel", "dtype", "D", "L", "out", "dq", "dk", "dv", "tol", "result"],
        [
            [c.get("kernel", "gpu"), c["dtype"], c["head_dim"], c["length"],
             *(c.get(f"{n}_rel_error") for n in ("out", "dq", "dk", "dv")),
             c.get("tolerance"), ("PASS" if c.get("passed") else "FAIL") if c["status"] == "ok"
             else _status(c)]
            for c in kernel
        ],
    )  # fmt: skip
    lines += ["", sec.get("model_note", ""), ""]
    lines += _table(
        ["dtype", "max abs diff", "max abs ref", "relative", "tol", "result"],
        [
            [c["dtype"], c.get("max_abs_diff"), c.get("max_abs_ref"), c.get("rel_error"),
             c.get("tolerance"), ("PASS" if c.get("passed") else "FAIL") if c["status"] == "ok"
             else _status(c)]
            for c in model
        ],
    )  # fmt: skip
    return lines


def _md_attention(sec: dict) -> list[str]:
    lines = [sec.get("note", ""), ""]
    lines += _table(
        ["D", "L", "B x H", "mode", "impl", "ms", "TFLOP/s", "vs cuDNN", "compile s", "runs",
         "status"],
        [
            [c["head_dim"], c["length"], f"{c['batch']} x {c['heads']}", c["mode"], c["impl"],
             c.get("ms"), c.get("tflops"), c.get("speed_vs_cudnn"), c.get("compile_s"),
             c.get("runs"), _status(c)]
            for c in sorted(
                sec.get("cases", []), key=lambda c: (c["head_dim"], c["length"], c["mode"])
            )
        ],
    )  # fmt: skip
    lines.append("\nvs cuDNN: cuDNN's time / this time (> 1: faster than cuDNN).")
    for name, why in sec.get("skipped_impls", {}).items():
        lines.append(f"- not run: {name}: {why}")
    return lines


def _md_block_sizes(sec: dict) -> list[str]:
    lines = [sec.get("note", ""), f"Candidates: {sec.get('candidates_from', '')}", ""]
    lines += _table(
        ["kernel", "D", "mode", "block sizes", "ms", "TFLOP/s", "compile s", "status"],
        [
            [c.get("kernel", "gpu"), c["head_dim"], c["mode"], c["blocks"], c.get("ms"),
             c.get("tflops"),
             c.get("compile_s"), _status(c)]
            for c in sec.get("cases", [])
        ],
    )  # fmt: skip
    if sec.get("best"):
        lines += ["", "Best:", ""]
        lines += _table(
            ["case", "block sizes", "ms", "TFLOP/s", "speed-up vs default"],
            [[k, b["blocks"], b["ms"], b["tflops"], b["speedup_vs_default"]]
             for k, b in sec["best"].items()],
        )  # fmt: skip
    return lines


def _md_model(sec: dict) -> list[str]:
    lines = [sec.get("note", ""), ""]
    if "parameters" in sec:
        lines += [
            f"Parameters: {sec['parameters']:,} ({sec['non_embedding_parameters']:,} "
            f"non-embedding); peak {_fmt(sec.get('peak_bf16_tflops'))} TFLOP/s bf16.",
            "",
        ]
    lines += _table(
        ["kind", "batch", "L", "ms", "steps/s", "tokens/s", "model TFLOP/s", "MFU", "compile s",
         "status"],
        [
            [c["kind"], c["batch"], c["length"], c.get("ms"), c.get("steps_per_s"),
             None if c.get("tokens_per_s") is None else f"{c['tokens_per_s']:,.0f}",
             c.get("tflops"), None if c.get("mfu") is None else f"{100 * c['mfu']:.1f}%",
             c.get("compile_s"), _status(c)]
            for c in sec.get("cases", [])
        ],
    )  # fmt: skip
    return lines


def _md_memory(sec: dict) -> list[str]:
    lines = [sec.get("note", ""), ""]
    lines += _table(
        ["impl", "L", "peak GiB (run)", "this case's?", "compiled GiB", "temp GiB", "limit GiB",
         "status"],
        [
            [c["impl"], c.get("length"), _gib(c.get("peak_bytes_in_use")),
             c.get("peak_is_this_case"), _gib((c.get("compiled_bytes") or {}).get("total")),
             _gib((c.get("compiled_bytes") or {}).get("temp")), _gib(c.get("bytes_limit")),
             _status(c)]
            for c in sec.get("cases", [])
        ],
    )  # fmt: skip
    return lines


SECTIONS = {
    "environment": ("1. Environment", section_environment, _md_environment),
    "correctness": ("2. Correctness of the compiled kernels", section_correctness, _md_correctness),
    "attention": ("3. Attention microbenchmark", section_attention, _md_attention),
    "block_sizes": ("4. Block-size sweep", section_block_sizes, _md_block_sizes),
    "model": ("5. The model: forward and train step", section_model, _md_model),
    "memory": ("6. Memory of forward+backward attention", section_memory, _md_memory),
}


def markdown(data: dict) -> str:
    meta = data["meta"]
    lines = [
        f"# GPU run: {meta.get('device_kind')} (jax {meta.get('jax')})"
        + (" — DRY RUN (tiny sizes)" if meta.get("dry_run") else ""),
        "",
        f"`{meta.get('command')}`, started {meta.get('started')}, {meta.get('elapsed_s')} s "
        f"of a {meta.get('budget_s')} s budget.",
        "",
    ]
    for name, (title, _, render) in SECTIONS.items():
        sec = data["sections"].get(name)
        if sec is None:
            continue
        lines += [f"## {title}", "", f"Status: **{sec['status']}** ({sec.get('seconds', 0):.0f} s)"]
        if sec.get("reason"):
            lines.append(f"Reason: {sec['reason']}")
        if sec.get("failures"):
            lines.append(f"Failures: {', '.join(sec['failures'])}")
        if sec.get("error"):
            lines += ["", "```", sec["error"][-3000:], "```"]
        lines += ["", *render(sec), ""]
    return "\n".join(lines) + "\n"


# the run --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_out_argument(parser, "gpu")
    parser.add_argument("--budget-s", type=float, default=420.0)
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes; runs on a CPU")
    parser.add_argument("--sections", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    parser.add_argument("--child-lengths", type=int, nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--child-heads", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-head-dim", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        memory_child(
            args.memory_child, args.child_lengths, args.child_heads, args.child_head_dim,
            args.child_out,
        )  # fmt: skip
        return 0

    t0 = time.monotonic()
    deadline = t0 + args.budget_s
    signal.signal(signal.SIGTERM, _interrupt)
    args.out = results_dir(args.out, "gpu")
    say(f"writing results to {args.out.resolve()}/results.{{json,md}}")
    meta = dict(
        command="python " + " ".join([str(pathlib.Path(sys.argv[0])), *sys.argv[1:]]),
        started=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        dry_run=args.dry_run,
        budget_s=args.budget_s,
        jax=jax.__version__,
        device_kind=jax.devices()[0].device_kind,
    )
    results = Results(args.out, meta, t0)
    ctx = Context(
        sizes=DRY if args.dry_run else FULL,
        dry=args.dry_run,
        platform=jax.default_backend(),
        results=results,
        script=pathlib.Path(__file__).resolve(),
    )
    names = [n for n in SECTIONS if n in args.sections]
    code = 0
    for i, name in enumerate(names):
        title, run, _ = SECTIONS[name]
        sec: dict = {"status": "running"}
        results.data["sections"][name] = sec
        left = deadline - time.monotonic()
        if left < 5:
            sec.update(status="skipped", reason="out of time")
            say(f"== {title}: skipped, out of time")
            results.save()
            continue
        share = left * WEIGHTS[name] / sum(WEIGHTS[n] for n in names[i:])
        say(f"== {title} (up to {share:.0f} s of {left:.0f} s left)")
        results.save()
        start = time.monotonic()
        try:
            run(ctx, sec, Clock(deadline, start + max(share, 5.0)))
            sec["status"] = "failed" if sec.get("failures") else "ok"
        except Interrupted as e:
            sec.update(status="interrupted", error=str(e))
            code = 143
        except Exception as e:  # noqa: BLE001 - recorded, and the next section runs
            sec.update(status="failed", error=traceback.format_exc()[-4000:])
            say(f"  FAILED: {_error_text(e, 500)}")
        sec["seconds"] = time.monotonic() - start
        skipped = sum(c.get("reason") == "out of time" for c in sec.get("cases", []))
        if skipped:
            sec["cases_out_of_time"] = skipped
        results.save()
        say(f"== {title}: {sec['status']} in {sec['seconds']:.0f} s")
        if code:
            break
    failed = [n for n, s in results.data["sections"].items() if s["status"] == "failed"]
    say(f"done in {time.monotonic() - t0:.0f} s; failed sections: {failed or 'none'}")
    say(f"results: {args.out.resolve()}/results.json and results.md")
    return code or (1 if failed else 0)


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)
    sys.exit(main())

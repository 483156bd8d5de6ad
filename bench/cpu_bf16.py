"""bfloat16 on the CPU, ours (JAX) beside PyTorch in one run: the GEMM of the model's
feed-forward shape and the embedding forward at Codon-NT size, float32 and bfloat16.

    python bench/cpu_bf16.py                       # GEMM + forward 4 x 1000, all columns
    python bench/cpu_bf16.py --tiny --repeats 2    # smoke test: a 2-layer toy

GEMM [2000, 512] x [512, 2048]: XLA float32; XLA bfloat16 returning bfloat16 (`x @ w`, the
model's product before, XLA:CPU's generic path); XLA bfloat16 with float32 accumulation
returning float32 (`preferred_element_type`, what `linear_product` runs); MKL's
`cblas_gemm_bf16bf16f32` through our FFI call (`codonnt_eqx.cpu.mkl_gemm`, where the
`cpu-bf16` extra builds, whether or not the model would choose it on this CPU: `mkl used`
says which); PyTorch float32 and bfloat16 (oneDNN).

Forward: embeddings of a [batch, length] batch, 12 x 512, 16 heads of 32, rotary, GELU 3072
(transformers' `EsmForMaskedLM` at the same architecture: `hidden_states[-1]` of the
encoder, sdpa attention) and, ours only, the codon_nt preset (GLU 2 x 2048, same FLOPs).
Ours: `with_options(model, attention=--attention, dtype=...)` (`auto` by default, the model's
own choice: on an Intel CPU with the `cpu-bf16` extra MKL's attention, else `blocked`) under
`jax.jit(jax.vmap(...))`; PyTorch bfloat16: the model cast with `.to(torch.bfloat16)` under
`inference_mode`. Medians of `--repeats` timed calls after a warm-up one; compile time apart.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time

from _common import add_out_argument, environment, median_seconds, results_dir, write_result
from train_step import VOCAB, cpu_model, esm_config, random_tokens, sizes


def gemm_rows(repeats: int, shape=(2000, 512, 2048)) -> list[dict]:
    import jax
    import jax.numpy as jnp
    import numpy as np

    m, k, n = shape
    rng = np.random.default_rng(0)
    a32, b32 = (
        rng.normal(size=(m, k)).astype(np.float32),
        rng.normal(size=(k, n)).astype(np.float32),
    )
    ours = {
        ("xla", "float32"): (jax.jit(lambda a, b: a @ b), jnp.float32),
        ("xla", "bfloat16 -> bfloat16"): (jax.jit(lambda a, b: a @ b), jnp.bfloat16),
        ("xla", "bfloat16 -> float32"): (
            jax.jit(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32)),
            jnp.bfloat16,
        ),
    }
    rows = []
    for (who, label), (fn, dtype) in ours.items():
        a, b = jnp.asarray(a32, dtype), jnp.asarray(b32, dtype)
        seconds = median_seconds(lambda fn=fn, a=a, b=b: fn(a, b).block_until_ready(), repeats)
        rows.append(dict(column=who, dtype=label, seconds=seconds))
    mkl = _mkl_gemm()
    if mkl is not None:
        a, b = jnp.asarray(a32, jnp.bfloat16), jnp.asarray(b32, jnp.bfloat16)
        fn = jax.jit(mkl)
        seconds = median_seconds(lambda: fn(a, b).block_until_ready(), repeats)
        rows.append(dict(column="mkl", dtype="bfloat16 -> float32", seconds=seconds))
    if _has_torch():
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        for dtype in (torch.float32, torch.bfloat16):
            a, b = torch.from_numpy(a32).to(dtype), torch.from_numpy(b32).to(dtype)
            seconds = median_seconds(lambda a=a, b=b: a @ b, repeats)
            rows.append(dict(column="torch", dtype=str(dtype).split(".")[1], seconds=seconds))
    for r in rows:
        r["gflops_per_s"] = 2 * m * k * n / r["seconds"] / 1e9
    return rows


def forward_rows(s: dict, batch: int, length: int, repeats: int, attention: str) -> list[dict]:
    import jax
    import jax.numpy as jnp

    from codonnt_eqx import ModelConfig, NucleotideTransformer, with_options

    tokens = random_tokens(batch, length)
    rows = []
    common = dict(vocab_size=VOCAB, embed_dim=s["embed"], num_layers=s["layers"])
    common.update(num_heads=s["heads"])
    configs = {
        "ours-gelu": ModelConfig(
            **common, ffn_dim=s["ffn"], use_glu=False, ffn_activation="gelu", add_bias_ffn=True
        ),
        "ours-glu": ModelConfig(**common, ffn_dim=s["glu_ffn"]),
    }
    ids = jnp.asarray(tokens)
    for name, config in configs.items():
        model = NucleotideTransformer(config, key=jax.random.key(0))
        for dtype in ("float32", "bfloat16"):
            fast = with_options(model, attention=attention, dtype=dtype)
            fn = jax.jit(lambda m, t: jax.vmap(lambda x: m(x).embeddings)(t))
            start = time.perf_counter()
            compiled = fn.lower(fast, ids).compile()
            compile_s = time.perf_counter() - start
            call = lambda c=compiled, m=fast: c(m, ids).block_until_ready()  # noqa: E731
            seconds = median_seconds(call, repeats)
            rows.append(dict(column=name, dtype=dtype, seconds=seconds, compile_seconds=compile_s))
    if _has_torch():
        import torch
        from transformers import EsmModel

        torch.set_num_threads(os.cpu_count() or 1)
        torch.manual_seed(0)
        config = esm_config(s, length)
        inputs = torch.from_numpy(tokens).long()
        for dtype in (torch.float32, torch.bfloat16):
            model = EsmModel(config, add_pooling_layer=False).eval().to(dtype)

            def run(model=model):
                with torch.inference_mode():
                    return model(input_ids=inputs).last_hidden_state

            seconds = median_seconds(run, repeats)
            label = str(dtype).split(".")[1]
            rows.append(dict(column="torch", dtype=label, seconds=seconds, compile_seconds=None))
    for r in rows:
        r["tokens_per_s"] = batch * length / r["seconds"]
    return rows


def _mkl_gemm():
    """`codonnt_eqx.cpu.mkl_gemm` where its library builds here, else None."""
    from codonnt_eqx.cpu import MklGemmUnavailable, mkl_gemm, mkl_gemm_library

    try:
        mkl_gemm_library()
    except MklGemmUnavailable as e:
        print(f"no MKL row: {e}", file=sys.stderr)
        return None
    return mkl_gemm


def _has_torch() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("torch", "transformers"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--attention", default="auto", choices=["auto", "blocked", "xla"])
    parser.add_argument("--length", type=int, default=None, help="default 1000 (64 if --tiny)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tiny", action="store_true", help="2 layers x 64: a smoke test")
    add_out_argument(parser, "cpu_bf16")
    args = parser.parse_args()
    length = args.length or (64 if args.tiny else 1000)
    load_start = os.getloadavg()
    gemm = gemm_rows(args.repeats, (256, 64, 128) if args.tiny else (2000, 512, 2048))
    forward = forward_rows(sizes(args.tiny), args.batch, length, args.repeats, args.attention)
    load_end = os.getloadavg()
    env = environment()
    if _has_torch():
        from importlib import metadata

        env.update(torch=metadata.version("torch"), transformers=metadata.version("transformers"))
    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    units = [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
    from codonnt_eqx.cpu import cpu_vendor, mkl_attention_available, mkl_gemm_available

    env.update(cpu_model=cpu_model(), bf16_units=units, load_start=load_start, load_end=load_end)
    env.update(cpu_vendor=cpu_vendor(), mkl_used_by_model=mkl_gemm_available())
    attention_mkl = args.attention == "auto" and mkl_attention_available()
    env.update(mkl_attention_used_by_model=attention_mkl)
    result = {
        "command": "python bench/cpu_bf16.py " + " ".join(sys.argv[1:]),
        "gemm": gemm,
        "forward": forward,
        "batch": args.batch,
        "length": length,
        "attention": args.attention,
        "environment": env,
    }
    torch_fwd = {r["dtype"]: r["seconds"] for r in forward if r["column"] == "torch"}
    lines = [
        f"# bfloat16 on the CPU: {env['cpu_model']} ({env['cpu_count']} cores, bf16 units: "
        f"{', '.join(units) or 'none'}); jax {env['jax']}, torch {env.get('torch')}",
        "",
        f"{env['cpu_vendor'] or 'unknown vendor'}; mkl used by the model's bfloat16 products: "
        f"{'yes' if env['mkl_used_by_model'] else 'no'}",
        "",
        f"Our attention: `{args.attention}`; MKL attention used by the model: "
        f"{'yes' if env['mkl_attention_used_by_model'] else 'no'}",
        "",
        f"`{result['command']}`; load average {load_start[0]:.2f} -> {load_end[0]:.2f}",
        "",
        "| GEMM | dtype | ms | GFLOP/s |",
        "|---|---|---|---|",
        *(
            f"| {r['column']} | {r['dtype']} | {r['seconds'] * 1e3:.1f} "
            f"| {r['gflops_per_s']:,.0f} |"
            for r in gemm
        ),
        "",
        f"| forward {args.batch} x {length} | dtype | s | tokens/s | vs torch (same dtype) "
        "| compile s |",
        "|---|---|---|---|---|---|",
    ]
    for r in forward:
        ratio = torch_fwd.get(r["dtype"])
        ratio = f"{ratio / r['seconds']:.2f}x" if ratio and r["column"] != "torch" else "-"
        compile_s = "-" if r["compile_seconds"] is None else f"{r['compile_seconds']:.1f}"
        lines.append(
            f"| {r['column']} | {r['dtype']} | {r['seconds']:.3f} | {r['tokens_per_s']:,.0f} "
            f"| {ratio} | {compile_s} |"
        )
    lines += ["", f"Environment: `{env}`", ""]
    name = "cpu_bf16" + ("_tiny" if args.tiny else "")
    folder = results_dir(args.out, "cpu_bf16")
    print("\n".join(lines))
    print(f"wrote {write_result(name, result, chr(10).join(lines), folder)}")


if __name__ == "__main__":
    main()

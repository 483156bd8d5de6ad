"""Where the float32 training step's time goes on the CPU: attention alone and the whole model,
forward and forward + backward, at Codon-NT size (12 x 512, 16 heads of 32, GLU 2 x 2048),
batch x 1000 tokens; the part of the backward that is not attention, against its share of
the matmul FLOPs; and the GFLOP/s of a linear layer's forward, dX and dW products.

    python bench/train_step_profile.py --out bench/results
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import equinox as eqx
import jax
import jax.numpy as jnp
from codonnt_eqx.kernels import attention

from _common import add_out_argument, environment, results_dir, write_result
from codonnt_eqx import ModelConfig, NucleotideTransformer, with_options
from train_step import cpu_model


def seconds(fn, *args, repeats: int) -> float:
    fn = jax.jit(fn)
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def gemm_layouts(rows: int, d_in: int, d_out: int, repeats: int) -> dict[str, float]:
    """GFLOP/s of a linear layer's three products at this size, in the layouts autodiff
    gives them: forward x W^T, dX = g W, and dW = g^T x (both operands contracted over their
    rows, the one a backward adds)."""
    kx, kw, kg = jax.random.split(jax.random.key(2), 3)
    x = jax.random.normal(kx, (rows, d_in))
    w = jax.random.normal(kw, (d_out, d_in))
    g = jax.random.normal(kg, (rows, d_out))
    gflop = 2 * rows * d_in * d_out / 1e9
    products = {
        "forward x W^T": (lambda x, w: x @ w.T, x, w),
        "dX = g W": (lambda g, w: g @ w, g, w),
        "dW = g^T x": (lambda g, x: g.T @ x, g, x),
    }
    return {
        f"GEMM {rows}x{d_in}x{d_out} {name}: GFLOP/s": gflop / seconds(fn, *a, repeats=repeats)
        for name, (fn, *a) in products.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    add_out_argument(parser, "train_step_profile")
    args = parser.parse_args()
    b, length, heads, head_dim, layers = args.batch, 1000, 16, 32, 12
    config = ModelConfig(
        vocab_size=75, embed_dim=512, num_layers=layers, num_heads=heads, ffn_dim=2048
    )
    rows = {}
    q = jax.random.normal(jax.random.key(0), (b, length, heads, head_dim))
    lengths = jnp.full((b,), length)
    for impl in ("blocked", "xla"):

        def att(q, k, v, impl=impl):
            return jnp.sum(attention(q, k, v, lengths, implementation=impl) ** 2)

        def forward(q, att=att):
            return sum(att(q, q * 0.5, q + i) for i in range(layers))

        def both(q, att=att):
            grad = jax.grad(att, argnums=(0, 1, 2))
            return sum(jnp.sum(grad(q, q * 0.5, q + i)[0]) for i in range(layers))

        rows[f"attention {impl} x {layers}: forward"] = seconds(forward, q, repeats=args.repeats)
        rows[f"attention {impl} x {layers}: forward + backward"] = seconds(
            both, q, repeats=args.repeats
        )
    rows.update(gemm_layouts(b * length, config.embed_dim, 2 * config.ffn_dim, args.repeats))
    ids = jax.random.randint(jax.random.key(1), (b, length), 6, 75)
    model = NucleotideTransformer(config, key=jax.random.key(0))
    params, static = eqx.partition(with_options(model, attention="blocked"), eqx.is_array)

    def loss(p):
        m = eqx.combine(p, static)
        return jnp.sum(jax.vmap(lambda x: m(x).logits)(ids) ** 2)

    rows["model (blocked): forward"] = seconds(loss, params, repeats=args.repeats)
    rows["model (blocked): forward + backward"] = seconds(
        jax.grad(loss), params, repeats=args.repeats
    )
    att_f = rows[f"attention blocked x {layers}: forward"]
    att_b = rows[f"attention blocked x {layers}: forward + backward"] - att_f
    rest_f = rows["model (blocked): forward"] - att_f
    rest_b = rows["model (blocked): forward + backward"] - rows["model (blocked): forward"] - att_b
    env = environment()
    env["cpu_model"] = cpu_model()
    lines = [
        f"# float32 step breakdown on {env['cpu_model']} ({env['cpu_count']} cores), jax "
        f"{env['jax']}",
        "",
        f"`python bench/train_step_profile.py {' '.join(sys.argv[1:])}`; {b} x {length} tokens, "
        f"load {os.getloadavg()[0]:.2f}",
        "",
        "| part | seconds (GFLOP/s where named) |",
        "|---|---|",
        *(
            f"| {k} | {v:.1f} |" if "GFLOP/s" in k else f"| {k} | {v:.3f} |"
            for k, v in rows.items()
        ),
        f"| backward of attention | {att_b:.3f} ({att_b / att_f:.1f}x its forward) |",
        f"| forward without attention | {rest_f:.3f} |",
        f"| backward without attention | {rest_b:.3f} ({rest_b / rest_f:.1f}x its forward; "
        "matmul FLOPs alone: 2x) |",
        "",
        f"Environment: `{env}`",
        "",
    ]
    print("\n".join(lines))
    result = {"rows": rows, "batch": b, "length": length, "environment": env}
    folder = results_dir(args.out, "train_step_profile")
    name = f"train_step_profile_cpu_jax{env['jax']}"
    print(f"wrote {write_result(name, result, chr(10).join(lines), folder)}")


if __name__ == "__main__":
    main()

"""Training-step throughput at Codon-NT size on CPU: ours (JAX) beside transformers'
`EsmForMaskedLM` (PyTorch) at the same architecture and FLOP count, in one run.

    python bench/train_step.py                     # batch 2 x 1000 tokens, every column
    python bench/train_step.py --batches 2 4 --columns torch ours-gelu-blocked
    python bench/train_step.py --tiny              # smoke test: a 2-layer toy, seconds
    python bench/train_step.py --dtypes float32 bfloat16   # both compute dtypes, one run
    python bench/train_step.py --hugepages         # every column with malloc's huge pages

A step is forward, backward and an Adam update of a masked-language-model loss (15% of the
tokens selected, 80/10/10 mask/random/keep, cross-entropy on the selected ones), in each of
`--dtypes` (float32 by default; bfloat16: ours with `with_options(dtype="bfloat16")`,
PyTorch under `torch.autocast("cpu", torch.bfloat16)`; parameters and Adam stay float32).

Columns:

- `torch`: `EsmForMaskedLM` (sdpa attention, dropout 0, untied decoder), 12 x 512, 16 heads of
  32, rotary, pre-LayerNorm, GELU feed-forward of width 3072, `torch.optim.Adam`, with
  `torch.set_num_threads(os.cpu_count())`.
- `ours-gelu-<attention>`: our model at that same architecture (`use_glu=False`, exact GELU,
  `ffn_dim=3072`, FFN biases), `make_train_step(optax.adam(...))` on
  `with_options(model, attention=<attention>, dtype="float32")`.
- `ours-glu-<attention>`: the real `codon_nt` preset (swish GLU 2 x 2048, no FFN biases): the
  same matmul FLOPs as GELU 3072.
- `<attention>`: `blocked` (XLA's), `xla`, `reference`, or `auto`, the model's default (on an
  Intel CPU with the `cpu-bf16` extra: MKL's attention, `codonnt_eqx.cpu.mkl_attention`).

Each (column, batch) runs in a fresh process, so that its peak resident memory is its own
(`peak_rss`: the process's ru_maxrss, compile included; `step_rss`: the peak of the resident
set sampled every 10 ms during the timed steps). Step times are medians over `--repeats` steps
after `--warmup` untimed ones; JAX compile time is measured apart (lower + compile), and the
first PyTorch step is reported apart too. Columns run one after the other, so the load average
is recorded before and after each: other processes on the machine slow every column.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time

from _common import add_out_argument, environment, results_dir, write_result

COLUMNS = (
    "torch",
    "ours-gelu-blocked",
    "ours-gelu-xla",
    "ours-gelu-reference",
    "ours-glu-blocked",
    "ours-gelu-auto",
    "ours-glu-auto",
)
VOCAB, PAD, MASK, CLS = 75, 1, 2, 3
FIRST_KMER = 6  # ids below are special tokens of KmerTokenizer(3)


def sizes(tiny: bool) -> dict:
    if tiny:
        return dict(embed=64, layers=2, heads=4, ffn=192, glu_ffn=128)
    return dict(embed=512, layers=12, heads=16, ffn=3072, glu_ffn=2048)


def step_flops(s: dict, batch: int, length: int) -> float:
    """Matmul FLOPs of one training step (backward = 2 x forward), the same for every column:
    projections, FFN (GELU d x f x 2 = GLU d x 2f' + f' x d when f = 1.5 x 2f'), scores and
    weighted values, LM head."""
    d, f = s["embed"], s["ffn"]
    per_token_layer = 2 * (4 * d * d + 2 * d * f) + 2 * 2 * length * d
    head = 2 * (d * d + d * VOCAB)
    return 3 * batch * length * (s["layers"] * per_token_layer + head)


def random_tokens(batch: int, length: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    tokens = rng.integers(FIRST_KMER, VOCAB, size=(batch, length)).astype(np.int32)
    tokens[:, 0] = CLS
    return tokens


class RssSampler:
    """Peak resident set size (bytes) of this process, sampled in a thread while active."""

    # 50 ms: a step takes seconds, and a thread waking more often took measurable time from
    # the step on 2 cores.
    def __init__(self, interval: float = 0.05):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self._page

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(self.interval)

    def __enter__(self):
        self.peak = self._rss()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())


def timed_steps(step, warmup: int, repeats: int) -> dict:
    """Runs `step()` (which blocks until done and returns the loss) `warmup` + `repeats`
    times; medians of the wall and process CPU seconds of the timed ones."""
    losses = [step() for _ in range(warmup)]
    walls, cpus = [], []
    with RssSampler() as rss:
        for _ in range(repeats):
            wall, cpu = time.perf_counter(), time.process_time()
            losses.append(step())
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
    return dict(
        seconds=statistics.median(walls),
        step_seconds=walls,
        cpu_seconds=statistics.median(cpus),
        step_rss=rss.peak,
        losses=losses,
    )


def esm_config(s: dict, length: int):
    """transformers' ESM at our architecture of sizes `s`: rotary, pre-LayerNorm, GELU, no
    dropout, untied decoder, sdpa attention."""
    from transformers import EsmConfig

    return EsmConfig(
        vocab_size=VOCAB,
        hidden_size=s["embed"],
        num_hidden_layers=s["layers"],
        num_attention_heads=s["heads"],
        intermediate_size=s["ffn"],
        hidden_act="gelu",
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        position_embedding_type="rotary",
        max_position_embeddings=length + 2,
        layer_norm_eps=1e-5,
        pad_token_id=PAD,
        mask_token_id=MASK,
        emb_layer_norm_before=False,
        token_dropout=False,
        tie_word_embeddings=False,
        attn_implementation="sdpa",
    )


def run_torch(s: dict, batch: int, length: int, warmup: int, repeats: int, dtype: str) -> dict:
    import torch
    from transformers import EsmForMaskedLM

    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(0)
    config = esm_config(s, length)
    model = EsmForMaskedLM(config)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    tokens = torch.from_numpy(random_tokens(batch, length)).long()
    maskable = tokens >= FIRST_KMER
    generator = torch.Generator().manual_seed(1)

    def masked():
        # BERT masking as MaskedLM does it: round(15%) of the maskable positions of each
        # sequence, of which 80% become <mask>, 10% a random token and 10% stay.
        scores = torch.rand(tokens.shape, generator=generator).masked_fill(~maskable, 2.0)
        counts = torch.round(0.15 * maskable.sum(1, keepdim=True)).clamp(min=1)
        ranks = scores.argsort(1).argsort(1)
        selected = (ranks < counts) & maskable
        action = torch.rand(tokens.shape, generator=generator)
        randoms = torch.randint(FIRST_KMER, VOCAB, tokens.shape, generator=generator)
        inputs = torch.where(selected & (action < 0.8), MASK, tokens)
        inputs = torch.where(selected & (action >= 0.8) & (action < 0.9), randoms, inputs)
        return inputs, torch.where(selected, tokens, -100)

    def step():
        inputs, labels = masked()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bfloat16"):
            loss = model(input_ids=inputs, labels=labels).loss
        loss.backward()
        optimizer.step()
        return loss.item()

    start = time.perf_counter()
    first_loss = step()
    first = time.perf_counter() - start
    row = timed_steps(step, max(warmup - 1, 0), repeats)
    row["losses"].insert(0, first_loss)
    return dict(
        row,
        first_step_seconds=first,
        compile_seconds=None,
        parameters=sum(p.numel() for p in model.parameters()),
        threads=torch.get_num_threads(),
        attention_backend=model.config._attn_implementation,
    )


def run_ours(
    s: dict,
    ffn: str,
    attention: str,
    batch: int,
    length: int,
    warmup: int,
    repeats: int,
    dtype: str,
) -> dict:
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import optax

    from codonnt_eqx import KmerTokenizer, ModelConfig, NucleotideTransformer, with_options
    from codonnt_eqx.training import MaskedLM, make_train_step

    common = dict(vocab_size=VOCAB, embed_dim=s["embed"], num_layers=s["layers"])
    common.update(num_heads=s["heads"])
    if ffn == "gelu":
        config = ModelConfig(
            **common, ffn_dim=s["ffn"], use_glu=False, ffn_activation="gelu", add_bias_ffn=True
        )
    else:  # the codon_nt preset's feed-forward (at tiny sizes too)
        config = ModelConfig(**common, ffn_dim=s["glu_ffn"], use_glu=True, ffn_activation="swish")
    model = NucleotideTransformer(config, key=jax.random.key(0))
    # Options first: the optimiser state mirrors the model's structure, static fields included.
    model = with_options(model, attention=attention, dtype=dtype)
    optimizer = optax.adam(1e-4)
    opt_state = optimizer.init(eqx.filter(model, eqx.is_array))
    objective = MaskedLM.for_tokenizer(KmerTokenizer(3))
    step_fn = make_train_step(optimizer, objective)
    tokens = jnp.asarray(random_tokens(batch, length))[None]  # [accumulation 1, batch, length]
    key = jax.random.key(1)

    start = time.perf_counter()
    compiled = step_fn.compile(model, opt_state, tokens, key)
    compile_s = time.perf_counter() - start
    state = {"model": model, "opt_state": opt_state, "i": 0}

    def step():
        state["model"], state["opt_state"], metrics = compiled(
            state["model"], state["opt_state"], tokens, jax.random.fold_in(key, state["i"])
        )
        state["i"] += 1
        return float(metrics.loss.loss_sum) / max(int(metrics.loss.num_selected), 1)

    row = timed_steps(step, warmup, repeats)
    return dict(
        row,
        first_step_seconds=None,
        compile_seconds=compile_s,
        parameters=model.num_parameters(),
        threads=None,
        attention_backend=attention,
    )


def run_one(
    column: str, batch: int, length: int, tiny: bool, warmup: int, repeats: int, dtype: str
) -> dict:
    s = sizes(tiny)
    load_start = os.getloadavg()[0]
    if column == "torch":
        row = run_torch(s, batch, length, warmup, repeats, dtype)
    else:
        _, ffn, attention = column.split("-")
        row = run_ours(s, ffn, attention, batch, length, warmup, repeats, dtype)
    seconds = row["seconds"]
    return dict(
        row,
        column=column,
        dtype=dtype,
        batch=batch,
        length=length,
        tokens_per_s=batch * length / seconds,
        gflops_per_s=step_flops(s, batch, length) / seconds / 1e9,
        peak_rss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        load_start=load_start,
        load_end=os.getloadavg()[0],
    )


def cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[2])
    parser.add_argument("--length", type=int, default=None, help="default 1000 (64 if --tiny)")
    parser.add_argument("--columns", nargs="+", default=list(COLUMNS), choices=COLUMNS)
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps (default 3)")
    parser.add_argument("--tiny", action="store_true", help="2 layers x 64: a smoke test")
    parser.add_argument("--dtypes", nargs="+", default=["float32"], choices=["float32", "bfloat16"])
    parser.add_argument(
        "--hugepages",
        action="store_true",
        help="start every column, PyTorch's too, with malloc's huge pages "
        "(GLIBC_TUNABLES=glibc.malloc.hugetlb=1, as the codonnt-eqx command line does)",
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)
    add_out_argument(parser, "train_step")
    args = parser.parse_args()
    length = args.length or (64 if args.tiny else 1000)
    if args.one:
        column, batch, dtype = args.one.split(":")
        row = run_one(column, int(batch), length, args.tiny, args.warmup, args.repeats, dtype)
        print(json.dumps(row))
        return

    skipped = {}
    columns = list(args.columns)
    if "torch" in columns and not all(map(importlib.util.find_spec, ("torch", "transformers"))):
        columns.remove("torch")
        skipped["torch"] = "torch or transformers is not installed"
    child_env = None
    if args.hugepages:
        from codonnt_eqx.cpu import hugepage_environment

        child_env = hugepage_environment()
    load_start = os.getloadavg()
    rows = []
    runs = [(b, c, d) for b in args.batches for d in args.dtypes for c in columns]
    for batch, column, dtype in runs:
        one = f"{column}:{batch}:{dtype}"
        cmd = [sys.executable, __file__, "--one", one, "--length", str(length)]
        cmd += ["--warmup", str(args.warmup), "--repeats", str(args.repeats)]
        cmd += ["--tiny"] if args.tiny else []
        proc = subprocess.run(cmd, capture_output=True, text=True, env=child_env)
        if proc.returncode:
            sys.stderr.write(proc.stderr)
            raise SystemExit(f"{one} failed (exit {proc.returncode})")
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(
            f"{column:>20} {dtype:>8} {batch} x {length}: {row['seconds']:7.2f} s/step "
            f"{row['tokens_per_s']:8,.0f} tokens/s, peak {row['peak_rss'] / 2**20:,.0f} MiB, "
            f"load {row['load_start']:.1f} -> {row['load_end']:.1f}",
            flush=True,
        )
    load_end = os.getloadavg()

    env = environment()
    try:
        from importlib import metadata

        env.update(torch=metadata.version("torch"), transformers=metadata.version("transformers"))
        env["optax"] = metadata.version("optax")
    except Exception:  # noqa: BLE001 - a missing peer still leaves our numbers
        pass
    env.update(
        cpu_model=cpu_model(),
        xla_flags=os.environ.get("XLA_FLAGS"),
        glibc_tunables=(child_env or os.environ).get("GLIBC_TUNABLES"),
        load_average_start=load_start,
        load_average_end=load_end,
    )
    s = sizes(args.tiny)
    result = {
        "command": "python bench/train_step.py " + " ".join(sys.argv[1:]),
        "model": s,
        "step_gflop": {b: step_flops(s, b, length) / 1e9 for b in args.batches},
        "rows": rows,
        "skipped": skipped,
        "environment": env,
    }
    torch_seconds = {(r["batch"], r["dtype"]): r["seconds"] for r in rows if r["column"] == "torch"}
    mib = 2**20
    lines = [
        f"# Training step (fwd + bwd + Adam), {', '.join(args.dtypes)}, on {env['cpu_model']} "
        f"({env['cpu_count']} cores); jax {env['jax']}, torch {env.get('torch')}",
        "",
        f"`{result['command']}`",
        "",
        f"{s['layers']} layers x {s['embed']}, {s['heads']} heads, rotary, pre-LN; GELU "
        f"{s['ffn']} (torch, ours-gelu) or GLU 2 x {s['glu_ffn']} (ours-glu, the codon_nt "
        f"preset); matmul GFLOP per step: "
        + ", ".join(f"{g:,.0f} at batch {b}" for b, g in result["step_gflop"].items())
        + f". Load average (1 min) {load_start[0]:.2f} at the start, {load_end[0]:.2f} at the "
        f"end (a column busy on every core adds about {env['cpu_count']} by itself). "
        f"GLIBC_TUNABLES of every column: {env['glibc_tunables'] or 'none'} (transparent huge "
        f"pages: {env['transparent_hugepages']}).",
        "",
        "| column | dtype | batch x length | s / step | tokens/s | vs torch | GFLOP/s "
        "| CPU s / step | compile s | step RSS MiB | peak RSS MiB | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = torch_seconds.get((r["batch"], r["dtype"]))
        ratio = f"{ratio / r['seconds']:.2f}x" if ratio else "-"
        compile_s = r["compile_seconds"] if r["compile_seconds"] is not None else None
        lines.append(
            f"| {r['column']} | {r['dtype']} | {r['batch']} x {r['length']} | {r['seconds']:.2f} | "
            f"{r['tokens_per_s']:,.0f} | {ratio} | {r['gflops_per_s']:.0f} | "
            f"{r['cpu_seconds']:.2f} | {'-' if compile_s is None else f'{compile_s:.1f}'} | "
            f"{r['step_rss'] / mib:,.0f} | {r['peak_rss'] / mib:,.0f} | "
            f"{r['load_start']:.1f} -> {r['load_end']:.1f} |"
        )
    lines += [f"| {column} | skipped: {why} |" for column, why in skipped.items()]
    lines += [
        "",
        "vs torch: PyTorch's step time in the same dtype / ours (above 1: ours is faster). "
        "Step RSS: peak "
        "resident set during the timed steps; peak RSS: the process's, compile included.",
        "",
        f"Environment: `{env}`",
        "",
    ]
    dtypes = "" if args.dtypes == ["float32"] else "_" + "_".join(args.dtypes)
    name = f"train_step_cpu_jax{env['jax']}{dtypes}" + ("_tiny" if args.tiny else "")
    folder = results_dir(args.out, "train_step")
    print(f"wrote {write_result(name, result, chr(10).join(lines), folder)}")


if __name__ == "__main__":
    main()

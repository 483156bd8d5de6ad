"""Will it fit? Per-device memory of inference, pretraining and fine-tuning steps, from a
deviceless compile of the real step on abstract shapes, and the largest batch that fits."""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ..finetune import Finetuned, Head, SequenceHead, make_step, sequence_forward
from ..model import ModelConfig, NucleotideTransformer, with_options
from ..parallel import is_dynamic
from ..training import (
    MaskedLM,
    batch_sharding,
    codon_nt_optimizer,
    make_mesh,
    make_train_step,
    state_shardings,
)
from ._compile import abstract, compile_traced
from ._targets import Target, devices, target

Workload = Literal["inference", "pretrain", "finetune"]
WORKLOADS: tuple[str, ...] = ("inference", "pretrain", "finetune")


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
    """Per-device memory of one compiled step (bytes), from XLA's own accounting.

    `parameter_bytes` and `optimizer_bytes` are the shards this device holds (float32);
    `temp_bytes` is everything the step allocates while it runs (activations, gradients,
    workspace); `peak_bytes` = arguments + outputs - donated (aliased) + temporaries + code.
    `fits`: `peak_bytes <= usable_bytes` (and the compiler did not refuse the program).
    """

    target: str
    workload: str
    batch_per_device: int
    length: int
    dtype: str
    remat: bool
    fsdp: int
    num_devices: int
    parameter_bytes: int
    optimizer_bytes: int
    argument_bytes: int
    output_bytes: int
    alias_bytes: int
    temp_bytes: int
    code_bytes: int
    peak_bytes: int
    usable_bytes: int
    fits: bool
    compile_seconds: float
    error: str | None = None


def _shard_bytes(tree) -> int:
    """Bytes of the shards of `tree`'s abstract arrays that one device holds."""
    total = 0
    for x in jax.tree.leaves(tree):
        if isinstance(x, jax.ShapeDtypeStruct):
            shape = x.sharding.shard_shape(x.shape) if x.sharding is not None else x.shape
            total += int(np.prod(shape, dtype=np.int64)) * x.dtype.itemsize
    return total


def _objective(config: ModelConfig) -> MaskedLM:
    # Memory does not depend on which tokens are maskable; any valid objective will do.
    maskable = np.ones(config.vocab_size, bool)
    maskable[[config.pad_token_id, config.mask_token_id]] = False
    return MaskedLM(maskable, np.full(config.vocab_size, config.k_for_kmers), config.mask_token_id)


def _abstract_model(config: ModelConfig):
    return eqx.filter_eval_shape(lambda: NucleotideTransformer(config, key=jr.key(0)))


@dataclasses.dataclass(frozen=True)
class CompiledWorkload:
    """One step compiled for a target: the executable and the per-device bytes of the state
    it takes (float32 parameters and optimizer state, as sharded)."""

    compiled: jax.stages.Compiled
    parameter_bytes: int
    optimizer_bytes: int
    compile_seconds: float


def compile_workload(
    config: ModelConfig,
    target_name: str | Target,
    *,
    workload: Workload = "pretrain",
    batch: int = 1,
    length: int = 1000,
    dtype: str = "bfloat16",
    remat: bool = False,
    fsdp: int = 1,
    compiler_options: dict | None = None,
) -> CompiledWorkload:
    """Compile the package's own step of `workload` (see `plan_memory`) for `target_name`
    from abstract shapes, through the project's sharding (`make_mesh(fsdp)` over the target's
    devices, batches split over all of them), with the real Pallas kernels and
    `compile_traced`'s compiler options."""
    t = target(target_name)
    if workload not in WORKLOADS:
        raise ValueError(f"workload must be one of {WORKLOADS}, got {workload!r}")
    if batch < 1 or length < 1:
        raise ValueError(f"batch and length must be >= 1, got {batch}, {length}")
    if remat and workload != "pretrain":
        raise ValueError("remat is a pretraining option (fine-tuning steps do not take it)")
    start = time.perf_counter()
    found = devices(t)
    mesh = make_mesh(fsdp, devices=found)
    # The kernels shard_map over the mesh in context (kernels/_partitioning.py).
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
        traced, params, opt = _traced_on(
            mesh, workload, config, batch, length, jnp.dtype(dtype), remat
        )
    compiled = compile_traced(traced, found[0], compiler_options)
    return CompiledWorkload(compiled, params, opt, time.perf_counter() - start)


def _traced_on(mesh, workload, config, batch, length, dtype, remat):
    rows = batch * mesh.size
    model = with_options(_abstract_model(config), dtype=dtype, remat=remat)
    if workload == "finetune":
        model = Finetuned(
            model,
            SequenceHead(
                eqx.filter_eval_shape(lambda: Head(config.embed_dim, 1, None, key=jr.key(0)))
            ),
            -1,
            (config.pad_token_id, config.mask_token_id),
        )
    model = abstract(model, shardings=state_shardings(model, mesh))
    every = tuple(mesh.axis_names)  # batches split over every device
    tokens_sharding = NamedSharding(mesh, P(every, None))
    if workload == "inference":

        def forward(model, tokens):
            return jax.vmap(model)(tokens).embeddings

        tokens = jax.ShapeDtypeStruct((rows, length), jnp.int32, sharding=tokens_sharding)
        traced = jax.jit(forward).trace(model, tokens)
        return traced, _shard_bytes(model), 0
    if workload == "pretrain":
        optimizer = codon_nt_optimizer()
        step = make_train_step(optimizer, _objective(config))
        opt_state = eqx.filter_eval_shape(optimizer.init, eqx.filter(model, is_dynamic))
        opt_state = abstract(opt_state, shardings=state_shardings(opt_state, mesh))
        tokens = jax.ShapeDtypeStruct((1, rows, length), jnp.int32, sharding=batch_sharding(mesh))
        key_dtype = jax.eval_shape(jr.key, 0).dtype
        key = jax.ShapeDtypeStruct((), key_dtype, sharding=NamedSharding(mesh, P()))
        traced = step.trace(model, opt_state, tokens, key)
        return traced, _shard_bytes(model), _shard_bytes(opt_state)
    # Full fine-tuning (the most memory of the modes): everything trains, Adam moments for all.
    optimizer = optax.adamw(1e-4)
    step = make_step(sequence_forward(), "regression", optimizer)
    trainable, frozen = eqx.partition(model, is_dynamic)
    opt_state = eqx.filter_eval_shape(optimizer.init, trainable)
    opt_state = abstract(opt_state, shardings=state_shardings(opt_state, mesh))
    inputs = jax.ShapeDtypeStruct((rows, length), jnp.int32, sharding=tokens_sharding)
    rows_sharding = NamedSharding(mesh, P(every))
    targets = jax.ShapeDtypeStruct((rows,), jnp.float32, sharding=rows_sharding)
    weights = jax.ShapeDtypeStruct((rows,), jnp.float32, sharding=rows_sharding)
    traced = step.trace(frozen, trainable, opt_state, inputs, targets, weights)
    return traced, _shard_bytes(trainable), _shard_bytes(opt_state)


def plan_memory(
    config: ModelConfig,
    target_name: str | Target,
    *,
    workload: Workload = "pretrain",
    batch: int = 1,
    length: int = 1000,
    dtype: str = "bfloat16",
    remat: bool = False,
    fsdp: int = 1,
    memory_fraction: float | None = None,
    compiler_options: dict | None = None,
) -> MemoryPlan:
    """Compile one step of `workload` for `target_name` without its hardware and report its
    memory per device.

    **Arguments:**

    - `config`: the model (`preset(...)`, `SIZES[...]`, a checkpoint's config).
    - `target_name`: a `TARGETS` name (`"h100"`, `"h100x8"`, `"v5e"`, `"v5e-4"`, ...).
    - `workload`: `"inference"` (forward to the embeddings), `"pretrain"` (the masked-LM
      train step with Adam, `make_train_step`), `"finetune"` (full fine-tuning with a
      sequence head and AdamW: the most memory of the fine-tuning modes).
    - `batch`: sequences per device; `length`: tokens per sequence.
    - `dtype`: compute dtype; parameters and optimizer state are float32.
    - `remat`: rematerialise each block in the backward pass (pretraining).
    - `fsdp`: devices that shard parameters and optimizer state (`make_mesh`); 1 replicates
      them (data parallel).
    - `memory_fraction`: the share of device memory the step may use; default the target's
      (`Target.usable_fraction`: 0.75 on GPUs, JAX's preallocation).
    - `compiler_options`: XLA flags over `DEVICELESS_COMPILER_OPTIONS` (on GPUs, cuBLAS
      rather than XLA's Triton GEMMs, which need autotuning on a device).

    **Returns:** a `MemoryPlan`. A program the compiler refuses for its size (TPU: out of HBM)
    is a plan with `fits=False` and the compiler's words in `error`.
    """
    t = target(target_name)
    if memory_fraction is not None:
        if not 0.0 < memory_fraction <= 1.0:
            raise ValueError(f"memory_fraction must be in (0, 1], got {memory_fraction}")
        t = dataclasses.replace(t, usable_fraction=memory_fraction)
    start = time.perf_counter()
    common: dict[str, Any] = dict(
        target=t.name,
        workload=workload,
        batch_per_device=batch,
        length=length,
        dtype=jnp.dtype(dtype).name,
        remat=remat,
        fsdp=fsdp,
        num_devices=t.num_devices,
        usable_bytes=t.usable_bytes,
    )
    options: dict[str, Any] = dict(
        workload=workload,
        length=length,
        dtype=dtype,
        remat=remat,
        fsdp=fsdp,
        compiler_options=compiler_options,
    )
    try:
        step = compile_workload(config, t, batch=batch, **options)
    except Exception as e:  # the compiler's own out-of-memory verdict (TPU) is an answer
        if "RESOURCE_EXHAUSTED" not in str(e) and "Ran out of memory" not in str(e):
            raise
        sizes = ("parameter", "optimizer", "argument", "output", "alias", "temp", "code", "peak")
        zeros: dict[str, Any] = {f"{name}_bytes": 0 for name in sizes}
        return MemoryPlan(
            **common,
            **zeros,
            fits=False,
            compile_seconds=time.perf_counter() - start,
            error=str(e).splitlines()[0][:300],
        )
    m = step.compiled.memory_analysis()
    if m is None:
        raise RuntimeError(f"the {t.name} compiler gave no memory analysis")
    peak = (
        m.argument_size_in_bytes
        + m.output_size_in_bytes
        - m.alias_size_in_bytes
        + m.temp_size_in_bytes
        + m.generated_code_size_in_bytes
    )
    return MemoryPlan(
        **common,
        parameter_bytes=step.parameter_bytes,
        optimizer_bytes=step.optimizer_bytes,
        argument_bytes=m.argument_size_in_bytes,
        output_bytes=m.output_size_in_bytes,
        alias_bytes=m.alias_size_in_bytes,
        temp_bytes=m.temp_size_in_bytes,
        code_bytes=m.generated_code_size_in_bytes,
        peak_bytes=peak,
        fits=peak <= t.usable_bytes,
        compile_seconds=step.compile_seconds,
    )


def largest_batch(
    config: ModelConfig,
    target_name: str | Target,
    *,
    limit: int = 4096,
    **options,
) -> tuple[int, MemoryPlan | None, list[MemoryPlan]]:
    """The largest batch per device (at most `limit`) whose step fits, searched over real
    deviceless compiles (`plan_memory` with `options`).

    Memory is close to affine in the batch, so batches 1 and 2 give a first guess; from it
    the search gallops (steps 1, 2, 4, ...) up while batches fit or down while they do not,
    then bisects the bracket. Every verdict is a compile: the answer never rests on the
    extrapolation, which only saves compiles when it is right (then four in all).

    **Returns:** `(batch, its plan, every plan compiled)`; batch 0 and plan None if even one
    sequence does not fit.
    """
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    plan = functools.partial(plan_memory, config, target_name, **options)
    tried: dict[int, MemoryPlan] = {}

    def fits(b: int) -> bool:
        if b not in tried:
            tried[b] = plan(batch=b)
        return tried[b].fits

    def result(b: int):
        return b, tried.get(b), [tried[k] for k in sorted(tried)]

    if not fits(1):
        return result(0)
    if limit == 1 or not fits(2):
        return result(1)
    one, two = tried[1], tried[2]
    per_row = max(two.peak_bytes - one.peak_bytes, 1)
    guess = int(min(limit, max(2, 1 + (one.usable_bytes - one.peak_bytes) // per_row)))
    step = 1
    if fits(guess):
        low, high = guess, None
        while high is None and low < limit:
            nxt = min(limit, low + step)
            low, high = (nxt, None) if fits(nxt) else (low, nxt)
            step *= 2
        if high is None:
            return result(low)
    else:
        low, high = None, guess
        while low is None:  # batch 2 fits, so this ends
            nxt = max(2, high - step)
            low, high = (nxt, high) if fits(nxt) else (None, nxt)
            step *= 2
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if fits(mid) else (low, mid)
    return result(low)

"""Every kernel path and the model's steps compile for an H100 and for TPU v5e, on this CPU.

Deviceless compiles (`codonnt_eqx.accelerators`) prove the lowering (Triton, Mosaic, the
collectives of sharded steps, memory per device), not the numbers: those come from the
interpret-mode tests in test_kernels.py. Each compile asserts that the program holds our Pallas
kernels (the Triton or Mosaic custom call), never a silent fallback. Without the compilers
(`pip install '.[accelerators]'`) every test here skips, saying so.

GPU compiles here run with `acc.DEVICELESS_COMPILER_OPTIONS["cuda"]`,
`xla_gpu_enable_triton_gemm=false`: without a device XLA cannot autotune its Triton GEMMs and
its unmeasured default config failed on JAX's transpose of bf16 GLU dots ("Couldn't find output
tile sizes"); the model's own backward (`linear_product`) no longer makes them
(`test_the_glu_weight_gradient_compiles_even_with_xla_triton_gemm`), and the flag stays for
the dots of other code.
"""

from __future__ import annotations

import re

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from codonnt_eqx.kernels import candidate_block_sizes, default_block_sizes, flash_attention
from jax.sharding import NamedSharding, SingleDeviceSharding
from jax.sharding import PartitionSpec as P

from codonnt_eqx import NucleotideTransformer, preset
from codonnt_eqx import accelerators as acc

pytestmark = pytest.mark.accelerator_compile

BACKEND = {"h100": "gpu", "v5e": "tpu"}
# (target, backend, kernel): every Pallas kernel, by its `backend` name and `KERNEL_TARGETS` key
KERNELS = (
    ("h100", "gpu", "triton"),
    ("h100", "mosaic_gpu", "mosaic_gpu"),
    ("v5e", "tpu", "mosaic_tpu"),
)
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
HEAD_DIMS = (32, 64, 128)
SHORT, LONG = 200, 4096


def target_devices(name: str) -> list:
    try:
        return acc.devices(name)
    except acc.AcceleratorUnavailableError as e:
        pytest.skip(str(e))


def _kernel_cases():
    """(target, backend, kernel, blocks, head_dim, dtype, length, padded): every block size a
    sweep may pick (the bf16 candidates of each head dim; bench/gpu/run.py tunes in bf16) and
    the defaults in every dtype the kernel takes, short and long lengths (one not a multiple
    of any block), with and without key padding, alternating so that each property meets the
    others without a full cross product of slow compiles."""
    cases = []
    for name, backend, kernel in KERNELS:
        for hd in HEAD_DIMS:
            case = (name, backend, kernel)
            for i, blocks in enumerate(candidate_block_sizes(backend, hd, 2)):
                length = (SHORT, LONG)[i % 2]
                cases.append((*case, blocks, hd, "bfloat16", length, i % 3 != 1))
            default = default_block_sizes(backend, hd)
            cases += [(*case, default, hd, "float16", n, True) for n in (SHORT, LONG)]
            if backend == "mosaic_gpu":  # 16-bit inputs only
                continue
            # float32 (exact dots, no TF32) compiles slowly on Triton: one long case in all
            cases.append((*case, default, hd, "float32", SHORT, False))
            if hd == 32:
                cases.append((*case, default, hd, "float32", LONG, True))
    return cases


def _case_id(case) -> str:
    name, backend, _, b, hd, dtype, length, padded = case
    tiles = f"{b.block_q}x{b.block_k}s{b.num_stages}"
    return f"{name}-{backend}-{tiles}-hd{hd}-{dtype}-L{length}-{'padded' if padded else 'full'}"


@pytest.mark.parametrize("case", _kernel_cases(), ids=_case_id)
def test_flash_attention_forward_and_backward_compile_with_the_pallas_kernels(case):
    name, backend, kernel, blocks, head_dim, dtype, length, padded = case
    device = target_devices(name)[0]
    sharding = SingleDeviceSharding(device)
    x = jax.ShapeDtypeStruct((2, length, 2, head_dim), DTYPES[dtype], sharding=sharding)
    lengths = jax.ShapeDtypeStruct((2,), jnp.int32, sharding=sharding) if padded else None

    def loss(q, k, v, n):
        out = flash_attention(q, k, v, n, block_sizes={backend: blocks}, backend=backend)
        return jnp.sum(out.astype(jnp.float32))

    step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))
    compiled = acc.compile_traced(step.trace(x, x, x, lengths), device)
    # forward, dQ and dK/dV: each one of our kernels, none of them replaced by anything else
    assert acc.kernel_calls(compiled, acc.target(name).platform, kernel) == 3
    assert acc.kernel_calls(compiled, acc.target(name).platform) == 3


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32"])
@pytest.mark.parametrize("head_dim", [32, 64, 128, 256])
def test_backend_none_on_an_h100_picks_mosaic_gpu_for_16_bit_inputs_and_triton_otherwise(
    dtype, head_dim
):
    if dtype == "float32" and head_dim == 256:
        pytest.skip("Triton's default float32 tiles at head_dim 256 exceed shared memory")
    device = target_devices("h100")[0]
    s = SingleDeviceSharding(device)
    x = jax.ShapeDtypeStruct((2, 300, 2, head_dim), DTYPES[dtype], sharding=s)

    def loss(q, k, v):
        return jnp.sum(flash_attention(q, k, v).astype(jnp.float32))

    compiled = acc.compile_traced(jax.jit(jax.grad(loss, (0, 1, 2))).trace(x, x, x), device)
    mosaic = dtype != "float32" and head_dim <= 128
    assert acc.kernel_calls(compiled, "cuda", "mosaic_gpu") == (3 if mosaic else 0)
    assert acc.kernel_calls(compiled, "cuda", "triton") == (0 if mosaic else 3)


@pytest.mark.parametrize("name", list(BACKEND))
def test_attention_under_vmap_as_the_model_calls_it_compiles(name):
    """One sequence per call under `jax.vmap`: the vmapped axis folds into the kernels' batch
    (Pallas' own rule made the TPU lengths block [batch, 1], which Mosaic rejects)."""
    device = target_devices(name)[0]
    s = SingleDeviceSharding(device)
    x = jax.ShapeDtypeStruct((4, 1, 256, 2, 32), jnp.bfloat16, sharding=s)
    n = jax.ShapeDtypeStruct((4, 1), jnp.int32, sharding=s)

    def loss(q, k, v, n):
        return jnp.sum(jax.vmap(flash_attention)(q, k, v, n).astype(jnp.float32))

    step = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
    compiled = acc.compile_traced(step.trace(x, x, x, n), device)
    assert acc.kernel_calls(compiled, acc.target(name).platform) == 3


TINY = preset("codon_nt").replace(embed_dim=64, num_layers=2, num_heads=2, ffn_dim=128)
# wide enough that FSDP over 8 has whole rows of every weight to split
step_config = TINY.replace(embed_dim=128, num_heads=4, ffn_dim=256)


def _abstract_model(config):
    return eqx.filter_eval_shape(lambda: NucleotideTransformer(config, key=jax.random.key(0)))


def _no_host_callback(compiled) -> None:
    assert not acc.host_callbacks(compiled)
    assert not re.search(r"\s(send|recv)(-done)?\(", compiled.as_text())  # no host transfers


def test_a_host_callback_would_be_seen():
    # on the CPU: a deviceless GPU compile of one fails outright ("Unknown backend: 'gpu'")
    checked = jax.jit(lambda x: eqx.error_if(x, jnp.any(x < 0), "negative"))
    assert acc.host_callbacks(checked.lower(jnp.ones(4)).compile())


@pytest.mark.parametrize("workload", ["inference", "pretrain", "finetune"])
@pytest.mark.parametrize("name", ["h100", "v5e"])
def test_model_steps_compile_on_one_device_with_the_kernels_and_no_host_callbacks(name, workload):
    target_devices(name)
    step = acc.compile_workload(TINY, name, workload=workload, batch=2, length=256)
    # Every layer's attention is one kernel per pass (scan: one body for all layers).
    calls = acc.kernel_calls(step.compiled, acc.target(name).platform)
    assert calls == (1 if workload == "inference" else 3)
    if name == "h100":  # a bfloat16 step on sm90: the Mosaic GPU kernel, chosen by "auto"
        assert acc.kernel_calls(step.compiled, "cuda", "mosaic_gpu") == calls
    _no_host_callback(step.compiled)
    assert step.compiled.memory_analysis().temp_size_in_bytes > 0
    # bfloat16 steps: the CPU's MKL products (codonnt_eqx.cpu) never reach an accelerator.
    assert "codonnt_mkl" not in step.compiled.as_text()


@pytest.mark.parametrize(
    "name,fsdp,expected",
    [
        ("h100x8", 1, {"all-reduce"}),  # data parallel: gradients summed over 8 GPUs
        ("h100x8", 8, {"all-gather", "reduce-scatter"}),  # FSDP: weights gathered, grads split
        # TPU's compiler reduces FSDP gradients with all-reduces (then slices): no
        # reduce-scatter op in its program
        ("v5e-4", 4, {"all-gather", "all-reduce"}),
    ],
)
def test_sharded_pretraining_step_compiles_with_its_collectives(name, fsdp, expected):
    target_devices(name)
    step = acc.compile_workload(
        step_config,
        name,
        workload="pretrain",
        batch=1,
        length=256,
        fsdp=fsdp,
    )
    found = acc.collectives(step.compiled)
    assert expected <= set(found), found
    # the kernels run per device on its own rows: no gather of the whole batch for them
    assert acc.kernel_calls(step.compiled, acc.target(name).platform) == 3
    _no_host_callback(step.compiled)
    if fsdp > 1:  # each device holds about 1/fsdp of the weights
        total = sum(x.size * 4 for x in jax.tree.leaves(_abstract_model(step_config)))
        assert step.parameter_bytes < 1.1 * total / fsdp


def test_sharded_inference_on_a_tpu_slice_compiles():
    target_devices("v5e-4")
    step = acc.compile_workload(TINY, "v5e-4", workload="inference", batch=2, length=256)
    assert acc.kernel_calls(step.compiled, "tpu") == 1


def test_the_glu_weight_gradient_compiles_even_with_xla_triton_gemm():
    """The GLU feed-forward's bf16 weight gradient over 2 x 1000 tokens once failed with XLA's
    Triton GEMM left at its default config (nothing to autotune on: "Couldn't find output
    tile sizes"), JAX's own transpose of a bf16 dot. `linear_product`'s backward (bf16
    operands, float32 products) compiles with it at every shape tried, and with the
    deviceless default (cuBLAS for XLA's dots)."""
    target_devices("h100")
    config = preset("codon_nt").replace(num_layers=1)
    triton = {"xla_gpu_enable_triton_gemm": True}
    for batch, length in ((2, 1000), (4, 1024)):
        step = acc.compile_workload(
            config, "h100", workload="pretrain", batch=batch, length=length,
            compiler_options=triton,
        )  # fmt: skip
        assert acc.kernel_calls(step.compiled, "cuda") == 3
    step = acc.compile_workload(config, "h100", workload="pretrain", batch=2, length=1000)
    assert acc.kernel_calls(step.compiled, "cuda") == 3
    assert any("cublas" in name for name in acc.custom_call_targets(step.compiled))


def test_a_users_jit_over_sharded_inputs_runs_the_kernels_per_device_on_gpu():
    """No mesh in context: custom partitioning keeps the batch sharded through the kernels
    instead of gathering it (no all-gather of q, k or v)."""
    devices = target_devices("h100x8")
    mesh = jax.sharding.Mesh(np.array(devices), ("data",))
    s = NamedSharding(mesh, P("data"))
    x = jax.ShapeDtypeStruct((8, 256, 2, 32), jnp.bfloat16, sharding=s)
    n = jax.ShapeDtypeStruct((8,), jnp.int32, sharding=s)
    compiled = acc.compile_traced(jax.jit(flash_attention).trace(x, x, x, n), devices[0])
    assert acc.kernel_calls(compiled, "cuda") == 1
    assert "all-gather" not in acc.collectives(compiled)


def test_unavailable_compiler_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(acc._targets, "compiler_available", lambda platform: False)
    with pytest.raises(acc.AcceleratorUnavailableError, match=r"pip install"):
        acc.devices("v5e")


def test_abstract_places_every_array_leaf_without_allocating():
    model = _abstract_model(TINY)
    leaves = jax.tree.leaves(acc.abstract(model, SingleDeviceSharding(jax.devices("cpu")[0])))
    assert leaves and all(isinstance(x, jax.ShapeDtypeStruct) for x in leaves)
    assert all(x.sharding is not None for x in leaves)


@pytest.mark.parametrize("name,backend,kernel", KERNELS)
def test_an_explicit_backend_compiles_for_real_not_in_interpret_mode(name, backend, kernel):
    """`backend=` given, `interpret` left to its default, on a CPU host: the compile for the
    accelerator still gets the real kernels (interpret mode is for CPU compiles only)."""
    device = target_devices(name)[0]
    x = jax.ShapeDtypeStruct((2, 256, 2, 64), jnp.bfloat16, sharding=SingleDeviceSharding(device))
    attend = jax.jit(lambda q, k, v: flash_attention(q, k, v, backend=backend))
    compiled = acc.compile_traced(attend.trace(x, x, x), device)
    assert acc.kernel_calls(compiled, acc.target(name).platform, kernel) == 1


@pytest.mark.parametrize("name", ["h100", "v5e"])
def test_pretraining_step_with_remat_compiles_with_the_kernels(name):
    target_devices(name)
    step = acc.compile_workload(TINY, name, workload="pretrain", batch=2, length=256, remat=True)
    # the forward kernel runs again inside the rematerialised backward
    assert acc.kernel_calls(step.compiled, acc.target(name).platform) >= 3
    _no_host_callback(step.compiled)

"""The Mosaic GPU (Hopper) flash-attention kernels in Mosaic GPU's interpret mode on the CPU,
against the float64 NumPy oracle of `test_kernels` (same tolerances: float16 5e-3, bfloat16
3e-2 of the largest expected magnitude).

The interpreter simulates shared memory, TMA copies, barriers and the pipeline's slots; its
wgmma takes neither register nor transposed operands (jax 0.10.2), so the tile products run
as plain dots there, and the deviceless H100 compiles (`test_accelerator_compile`) check the
wgmma lowering. Sizes are small: each case is seconds of interpretation.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from codonnt_eqx.kernels import (
    MOSAIC_GPU_BLOCK_SIZES,
    BlockSizes,
    _flash,
    _mosaic_gpu,
    flash_attention,
)
from hypothesis import example, given, settings
from hypothesis import strategies as st

from test_kernels import check_against_oracle, random_inputs

# 64 x 64 tiles everywhere and two stages: several tiles, slot reuse and a masked tail even at
# these lengths; the per-head-dim defaults are tried once each below.
SMALL = BlockSizes(block_q=64, block_k=64, block_q_bwd=64, block_k_bwd=64, num_stages=2)


def mosaic(lengths, blocks=SMALL):
    def fn(q, k, v):
        return flash_attention(
            q, k, v, lengths, backend="mosaic_gpu", block_sizes=blocks, interpret=True
        )

    return fn


@settings(max_examples=6, deadline=None)
@given(
    shape=st.tuples(
        st.integers(1, 2), st.integers(1, 200), st.integers(1, 2), st.sampled_from([16, 32, 48, 64])
    ),
    dtype=st.sampled_from([jnp.bfloat16, jnp.float16]),
    seed=st.integers(0, 2**16),
    data=st.data(),
)
@example(shape=(2, 150, 1, 32), dtype=jnp.bfloat16, seed=0, data=None)
def test_forward_and_gradients_match_the_float64_oracle(shape, dtype, seed, data):
    batch, length = shape[:2]
    if data is None:
        lengths = [length, 0]  # a full row and one with no valid key
    else:
        one = st.one_of(st.just(0), st.just(length), st.integers(0, length))
        lengths = data.draw(st.lists(one, min_size=batch, max_size=batch))
    lengths = jnp.asarray(lengths, jnp.int32)
    q, k, v, do = random_inputs(seed, shape, dtype)
    # under jit, as the model runs it (the eager path is taken by the tests below)
    check_against_oracle(jax.jit(mosaic(lengths)), q, k, v, do, lengths, dtype)


@pytest.mark.parametrize("head_dim", sorted(MOSAIC_GPU_BLOCK_SIZES))
def test_default_blocks_of_each_head_dim(head_dim):
    q, k, v, do = random_inputs(head_dim, (1, 130, 1, head_dim), jnp.bfloat16)
    lengths = jnp.array([97])
    check_against_oracle(jax.jit(mosaic(lengths, None)), q, k, v, do, lengths, jnp.bfloat16)


def test_garbage_in_padded_keys_never_reaches_outputs_or_gradients():
    q, k, v, do = random_inputs(7, (2, 100, 2, 32), jnp.float16)
    lengths = jnp.array([37, 100])
    k = k.at[0, 37:].set(jnp.nan)
    v = v.at[0, 37:].set(jnp.inf)
    out, vjp = jax.vjp(mosaic(lengths), q, k, v)
    dq, dk, dv = vjp(do)
    for x in (out, dq, dk, dv):
        assert np.all(np.isfinite(np.asarray(x, np.float32)))
    assert not np.any(np.asarray(dk[0, 37:])) and not np.any(np.asarray(dv[0, 37:]))
    # and the valid part equals the same inputs with the padding zeroed
    clean = mosaic(lengths)(q, k.at[0, 37:].set(0), v.at[0, 37:].set(0))
    np.testing.assert_array_equal(np.asarray(out, np.float32), np.asarray(clean, np.float32))


def test_vmapped_as_the_model_calls_it():
    q, k, v, do = random_inputs(3, (2, 1, 70, 1, 32), jnp.bfloat16)
    lengths = jnp.array([[70], [12]])
    out = jax.vmap(lambda q, k, v, n: mosaic(n)(q, k, v))(q, k, v, lengths)
    for i in range(2):
        expected = mosaic(lengths[i])(q[i], k[i], v[i])
        np.testing.assert_array_equal(
            np.asarray(out[i], np.float32), np.asarray(expected, np.float32)
        )


def test_interpret_true_means_the_gpu_interpreter():
    params = _mosaic_gpu.interpret_params()
    assert type(params).__name__ == "InterpretGPUParams"
    q, k, v, _ = random_inputs(5, (1, 64, 1, 32), jnp.bfloat16)
    a = mosaic(None)(q, k, v)
    b = flash_attention(q, k, v, backend="mosaic_gpu", block_sizes=SMALL, interpret=params)
    np.testing.assert_array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32))


def _runs_the_gpu_interpreter(fn, x) -> bool:
    # Mosaic GPU's interpreter is the one that leaves ordered io_callback effects in the jaxpr.
    return bool(jax.make_jaxpr(fn)(x).effects)


def test_an_explicit_interpret_picks_its_interpreter_and_none_keeps_cpu_effect_free():
    x = jnp.zeros((1, 64, 1, 32), jnp.bfloat16)
    params = _mosaic_gpu.interpret_params()
    assert _runs_the_gpu_interpreter(lambda x: flash_attention(x, x, x, interpret=params), x)
    assert not _runs_the_gpu_interpreter(lambda x: flash_attention(x, x, x, interpret=True), x)
    # interpret=None builds one branch per platform, all traced: an effect in the CPU branch
    # would break the lowering for CUDA, so there backend='mosaic_gpu' interprets Triton's.
    implicit = lambda x: flash_attention(x, x, x, backend="mosaic_gpu")  # noqa: E731
    assert not _runs_the_gpu_interpreter(implicit, x)


def test_blocks_given_with_interpreter_params_go_to_the_kernel_they_pick():
    x = jnp.zeros((1, 64, 1, 32), jnp.bfloat16)
    not_for_mosaic = BlockSizes(block_q=32, block_k=64, block_q_bwd=64, block_k_bwd=64)
    with pytest.raises(ValueError, match="multiples of 64"):
        flash_attention(
            x, x, x, block_sizes=not_for_mosaic, interpret=_mosaic_gpu.interpret_params()
        )


def test_mosaic_gpu_without_interpret_on_cpu_still_matches_the_oracle():
    shape, dtype = (2, 100, 2, 32), jnp.bfloat16
    lengths = jnp.asarray([100, 37], jnp.int32)
    q, k, v, do = random_inputs(11, shape, dtype)
    fn = lambda q, k, v: flash_attention(q, k, v, lengths, backend="mosaic_gpu")  # noqa: E731
    check_against_oracle(jax.jit(fn), q, k, v, do, lengths, dtype)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(dtype=jnp.float32), TypeError, "bfloat16 or float16"),
        (dict(head_dim=160), ValueError, "head_dim up to 128"),
        (dict(blocks=BlockSizes(block_q=32, block_k=64, block_q_bwd=64, block_k_bwd=64)),
         ValueError, "multiples of 64"),
        (dict(blocks=BlockSizes(64, 64, 64, 64, num_stages=0)), ValueError, "num_stages >= 1"),
    ],
)  # fmt: skip
def test_what_the_kernel_cannot_take_is_a_clear_error(kwargs, error, match):
    x = jnp.zeros((1, 64, 1, kwargs.get("head_dim", 32)), kwargs.get("dtype", jnp.bfloat16))
    with pytest.raises(error, match=match):
        flash_attention(
            x, x, x, backend="mosaic_gpu", block_sizes=kwargs.get("blocks"), interpret=True
        )


@pytest.mark.parametrize(
    "capability,dtype,head_dim,expected",
    [
        ((9, 0), jnp.bfloat16, 32, "mosaic_gpu"),
        ((9, 0), jnp.float16, 128, "mosaic_gpu"),
        ((10, 0), jnp.bfloat16, 64, "gpu"),  # Blackwell: no wgmma
        ((8, 0), jnp.bfloat16, 32, "gpu"),  # A100: Triton
        ((9, 0), jnp.float32, 64, "gpu"),  # exact float32: Triton
        ((9, 0), jnp.bfloat16, 256, "gpu"),  # wider than the kernel's heads
    ],
)
def test_the_gpu_kernel_is_chosen_by_compute_capability_dtype_and_head_dim(
    monkeypatch, capability, dtype, head_dim, expected
):
    monkeypatch.setattr(_flash, "cuda_compute_capability", lambda: capability)
    assert _flash.gpu_backend(dtype, head_dim) == expected


def test_compute_capability_defaults_to_hopper_without_a_cuda_device():
    # this CPU process has no CUDA backend: deviceless compiles target an H100
    assert _flash.cuda_compute_capability() == (9, 0)


@pytest.mark.parametrize(
    "kind,expected",
    [
        ("NVIDIA H100 80GB HBM3", (9, 0)),
        ("NVIDIA H200", (9, 0)),
        ("NVIDIA GH200 480GB", (9, 0)),
        ("NVIDIA A100-SXM4-80GB", (8, 0)),
        ("NVIDIA A10G", (8, 6)),
        ("NVIDIA L4", (8, 9)),
        ("NVIDIA B200", (10, 0)),
        ("some future GPU", (9, 0)),  # unknown: what Mosaic GPU itself assumes
    ],
)
def test_a_deviceless_compile_takes_the_capability_from_the_abstract_devices_kind(kind, expected):
    mesh = jax.sharding.AbstractMesh(
        (1,), ("x",), abstract_device=jax.sharding.AbstractDevice(kind, 1, "gpu")
    )
    with jax.sharding.use_abstract_mesh(mesh):
        assert _flash.cuda_compute_capability() == expected

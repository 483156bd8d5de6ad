"""Flash-attention kernels (interpret mode on CPU) against a float64 NumPy oracle.

Tolerances, relative to the largest magnitude of the expected array: float32 2e-5, float16
5e-3, bfloat16 3e-2 (inputs are rounded to the dtype first, so only the kernel's own rounding
– P and dS cast to the input dtype for the matmuls – is measured).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from codonnt_eqx.kernels import BlockSizes, attention, flash_attention, reference_attention
from hypothesis import example, given, settings
from hypothesis import strategies as st

TOLERANCE = {jnp.float32: 2e-5, jnp.float16: 5e-3, jnp.bfloat16: 3e-2}
SMALL_BLOCKS = BlockSizes(block_q=16, block_k=32, block_q_bwd=32, block_k_bwd=16)
SHAPES = [(1, 1, 1, 16), (2, 37, 2, 32), (3, 130, 2, 64), (1, 300, 1, 32)]


def oracle(q, k, v, lengths, do, scale):
    """Float64 forward and hand-derived gradients; padded keys are simply excluded."""
    q, k, v, do = (np.asarray(x, np.float64) for x in (q, k, v, do))
    out, dq, dk, dv = (np.zeros_like(x) for x in (q, q, k, v))
    for b, n in enumerate(np.asarray(lengths)):
        if n == 0:
            continue
        qb, kb, vb, dob = q[b], k[b, :n], v[b, :n], do[b]  # [L, H, D], [n, H, D]
        s = np.einsum("qhd,khd->hqk", qb, kb) * scale
        p = np.exp(s - s.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        out[b] = np.einsum("hqk,khd->qhd", p, vb)
        dp = np.einsum("qhd,khd->hqk", dob, vb)
        ds = p * (dp - (dp * p).sum(-1, keepdims=True))
        dq[b] = np.einsum("hqk,khd->qhd", ds, kb) * scale
        dk[b, :n] = np.einsum("hqk,qhd->khd", ds, qb) * scale
        dv[b, :n] = np.einsum("hqk,qhd->khd", p, dob)
    return out, dq, dk, dv


def random_inputs(seed, shape, dtype):
    rng = np.random.default_rng(seed)
    return [jnp.asarray(rng.normal(size=shape), dtype) for _ in range(4)]


def assert_close(actual, expected, dtype, what):
    actual = np.asarray(actual, np.float64)
    assert np.all(np.isfinite(actual)), f"{what}: non-finite values"
    err = np.max(np.abs(actual - expected)) if actual.size else 0.0
    bound = TOLERANCE[dtype] * max(1.0, np.max(np.abs(expected)))
    assert err <= bound, f"{what}: max error {err:.3g} > {bound:.3g}"


def value_and_grads(fn, q, k, v, do):
    out, vjp = jax.vjp(fn, q, k, v)
    return (out, *vjp(do))


def check_against_oracle(fn, q, k, v, do, lengths, dtype):
    scale = q.shape[-1] ** -0.5
    expected = oracle(q, k, v, lengths, do, scale)
    actual = value_and_grads(fn, q, k, v, do)
    for name, a, e in zip(("out", "dq", "dk", "dv"), actual, expected, strict=True):
        assert a.dtype == dtype
        assert_close(a, e, dtype, name)


lengths_strategy = st.data()


@settings(max_examples=24)
@given(
    shape=st.sampled_from(SHAPES),
    dtype=st.sampled_from([jnp.float32, jnp.bfloat16, jnp.float16]),
    seed=st.integers(0, 2**16),
    data=st.data(),
)
@example(shape=(2, 37, 2, 32), dtype=jnp.float32, seed=0, data=None)
def test_flash_matches_float64_oracle(shape, dtype, seed, data):
    batch, length = shape[:2]
    if data is None:
        lengths = [length, 1]
    else:
        one_length = st.one_of(st.just(0), st.just(1), st.just(length), st.integers(0, length))
        lengths = data.draw(st.lists(one_length, min_size=batch, max_size=batch))
    lengths = jnp.asarray(lengths, jnp.int32)
    q, k, v, do = random_inputs(seed, shape, dtype)
    fn = jax.jit(lambda q, k, v: flash_attention(q, k, v, lengths, block_sizes=SMALL_BLOCKS))
    check_against_oracle(fn, q, k, v, do, lengths, dtype)


@pytest.mark.parametrize("head_dim", [16, 48, 128])
def test_head_dims_including_non_powers_of_two(head_dim):
    q, k, v, do = random_inputs(1, (2, 40, 2, head_dim), jnp.float32)
    lengths = jnp.array([40, 23])
    check_against_oracle(
        lambda q, k, v: flash_attention(q, k, v, lengths), q, k, v, do, lengths, jnp.float32
    )


def test_tpu_kernels_in_interpret_mode():
    q, k, v, do = random_inputs(2, (2, 200, 2, 32), jnp.float32)
    lengths = jnp.array([200, 130])
    fn = jax.jit(lambda q, k, v: flash_attention(q, k, v, lengths, backend="tpu", interpret=True))
    check_against_oracle(fn, q, k, v, do, lengths, jnp.float32)


def test_no_out_of_bounds_reads_under_the_tpu_interpreter():
    # pltpu.InterpretParams raises on out-of-bounds reads that interpret=True silently clamps.
    from jax.experimental.pallas import tpu as pltpu

    q, k, v, do = random_inputs(3, (2, 50, 1, 16), jnp.float32)
    lengths = jnp.array([50, 17])
    for backend, blocks in (("gpu", SMALL_BLOCKS), ("tpu", None)):
        fn = lambda q, k, v, b=backend, bs=blocks: flash_attention(  # noqa: E731
            q, k, v, lengths, backend=b, block_sizes=bs, interpret=pltpu.InterpretParams()
        )
        check_against_oracle(fn, q, k, v, do, lengths, jnp.float32)


def test_garbage_in_padded_keys_never_leaks():
    q, k, v, do = random_inputs(4, (2, 70, 2, 32), jnp.float32)
    lengths = jnp.array([33, 0])
    k_bad = k.at[0, 33:].set(jnp.nan).at[1].set(jnp.inf)
    v_bad = v.at[0, 33:].set(jnp.nan).at[1].set(jnp.nan)
    for impl in ("pallas", "blocked", "reference", "xla"):
        fn = lambda q, k, v, impl=impl: attention(q, k, v, lengths, implementation=impl)  # noqa: E731
        clean = value_and_grads(fn, q, k, v, do)
        dirty = value_and_grads(fn, q, k_bad, v_bad, do)
        for c, d in zip(clean, dirty, strict=True):
            np.testing.assert_array_equal(np.isfinite(d), True)
            np.testing.assert_allclose(d, c, rtol=1e-6, atol=1e-6)
        _, _, dk, dv = dirty
        assert (dk[0, 33:] == 0).all() and (dv[0, 33:] == 0).all(), impl


def test_query_without_valid_keys_gets_zeros_and_zero_gradients():
    q, k, v, do = random_inputs(5, (1, 20, 1, 16), jnp.float32)
    lengths = jnp.array([0])
    for impl in ("pallas", "blocked", "reference", "xla"):
        fn = lambda q, k, v, impl=impl: attention(q, k, v, lengths, implementation=impl)  # noqa: E731
        for x in value_and_grads(fn, q, k, v, do):
            np.testing.assert_array_equal(x, 0.0)


def test_single_token_and_single_valid_key():
    q, k, v, do = random_inputs(6, (1, 1, 2, 32), jnp.float32)
    out = flash_attention(q, k, v)
    np.testing.assert_allclose(out, v, rtol=1e-6)  # one key: softmax weight 1
    q, k, v, do = random_inputs(7, (1, 40, 2, 32), jnp.float32)
    out = flash_attention(q, k, v, jnp.array([1]))
    np.testing.assert_allclose(out, jnp.broadcast_to(v[:, :1], out.shape), rtol=1e-6)


def test_works_under_vmap_checkpoint_and_vmap_of_grad():
    q, k, v, do = random_inputs(8, (3, 2, 24, 2, 16), jnp.float32)  # an extra leading axis
    lengths = jnp.array([[24, 5], [1, 0], [12, 24]])

    def loss(q, k, v, lengths, fn):
        return jnp.sum(fn(q, k, v, lengths) * jnp.arange(16))

    expected = jax.vmap(jax.grad(lambda *a: loss(*a, reference_attention)))(q, k, v, lengths)
    flash = jax.checkpoint(lambda q, k, v, n: flash_attention(q, k, v, n))
    actual = jax.jit(jax.vmap(jax.grad(lambda *a: loss(*a, flash))))(q, k, v, lengths)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("impl", ["auto", "pallas", "blocked", "reference", "xla"])
def test_every_implementation_agrees(impl):
    q, k, v, do = random_inputs(9, (2, 45, 4, 32), jnp.float32)
    lengths = jnp.array([45, 20])
    fn = lambda q, k, v: attention(q, k, v, lengths, implementation=impl)  # noqa: E731
    check_against_oracle(fn, q, k, v, do, lengths, jnp.float32)


def test_bad_arguments_are_rejected():
    x = jnp.zeros((1, 8, 2, 16))
    with pytest.raises(ValueError, match="share one shape"):
        flash_attention(x, x[:, :4], x)
    with pytest.raises(ValueError, match="dtype"):
        flash_attention(x.astype(jnp.int32), x.astype(jnp.int32), x.astype(jnp.int32))
    with pytest.raises(ValueError, match="kv_lengths"):
        flash_attention(x, x, x, jnp.array([1, 2]))
    with pytest.raises(ValueError, match="powers of two"):
        flash_attention(x, x, x, block_sizes=BlockSizes(block_q=48))
    with pytest.raises(ValueError, match="multiples of 128"):
        flash_attention(x, x, x, backend="tpu", block_sizes=BlockSizes())
    with pytest.raises((ValueError, TypeError), match="implementation"):  # TypeError: beartype
        attention(x, x, x, implementation="fast")


def _lower_for(platform: str, device):
    mesh = jax.sharding.AbstractMesh((1,), ("x",), abstract_device=device)
    spec = jax.ShapeDtypeStruct((2, 300, 4, 32), jnp.bfloat16)
    lengths = jax.ShapeDtypeStruct((2,), jnp.int32)

    def grads(q, k, v, n):
        loss = lambda q, k, v: flash_attention(q, k, v, n).astype(jnp.float32).sum()  # noqa: E731
        return jax.grad(loss, argnums=(0, 1, 2))(q, k, v)

    with jax.sharding.use_abstract_mesh(mesh):
        lowered = jax.jit(grads).trace(spec, spec, spec, lengths)
        return lowered.lower(lowering_platforms=(platform,)).as_text()


def test_gpu_kernels_lower_to_triton_on_cpu():
    device = jax.sharding.AbstractDevice("NVIDIA H100 80GB HBM3", 132, "gpu")
    text = _lower_for("cuda", device)
    assert text.count("__gpu$xla.gpu.triton") == 3  # forward, dq, dk/dv


def test_tpu_kernels_lower_to_mosaic_on_cpu():
    text = _lower_for("tpu", jax.sharding.AbstractDevice("TPU v5 lite", 1, "tpu"))
    assert text.count("tpu_custom_call") == 3


def test_blocked_attention_over_several_query_blocks():
    from codonnt_eqx.kernels import blocked_attention

    q, k, v, do = random_inputs(10, (2, 300, 2, 32), jnp.float32)
    lengths = jnp.array([300, 129])
    fn = lambda q, k, v: blocked_attention(q, k, v, lengths, block=64)  # noqa: E731
    check_against_oracle(fn, q, k, v, do, lengths, jnp.float32)

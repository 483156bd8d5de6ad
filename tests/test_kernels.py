"""Flash-attention kernels (interpret mode on CPU) against a float64 NumPy oracle.

Tolerances, relative to the largest magnitude of the expected array: float32 2e-5, float16
5e-3, bfloat16 3e-2 (inputs are rounded to the dtype first, so only the kernel's own rounding
– P and dS cast to the input dtype for the matmuls – is measured).
"""

import inspect
import typing

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from codonnt_eqx.kernels import (
    IMPLEMENTATIONS,
    BlockSizes,
    Implementation,
    attention,
    attention_weights,
    blocked_attention,
    flash_attention,
    reference_attention,
)
from hypothesis import example, given, settings
from hypothesis import strategies as st

TOLERANCE = {jnp.float32: 2e-5, jnp.float16: 5e-3, jnp.bfloat16: 3e-2}
SMALL_BLOCKS = BlockSizes(block_q=16, block_k=32, block_q_bwd=32, block_k_bwd=16)
SHAPES = [(1, 1, 1, 16), (2, 37, 2, 32), (3, 130, 2, 64), (1, 300, 1, 32)]
# Everything behind `attention` that runs on CPU ("pallas" in interpret mode, "auto" = blocked).
CPU_IMPLEMENTATIONS = ["auto", "pallas", "blocked", "reference", "xla"]


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
    err = np.max(np.abs(actual - expected), initial=0.0)
    bound = TOLERANCE[dtype] * np.max(np.abs(expected), initial=1.0)
    assert err <= bound, f"{what}: max error {err:.3g} > {bound:.3g}"


def value_and_grads(fn, q, k, v, do):
    out, vjp = jax.vjp(fn, q, k, v)
    return (out, *vjp(do))


def check_against_oracle(fn, q, k, v, do, lengths, dtype):
    scale = q.shape[-1] ** -0.5
    expected = oracle(q, k, v, lengths, do, scale)
    actual = value_and_grads(fn, q, k, v, do)
    for name, a, e in zip(("out", "dq", "dk", "dv"), actual, expected, strict=True):
        assert a.dtype == dtype and a.shape == e.shape, (name, a.dtype, a.shape)
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


def test_flash_specific_arguments_are_rejected():
    x = jnp.zeros((1, 8, 2, 16))
    with pytest.raises(ValueError, match="powers of two"):
        flash_attention(x, x, x, block_sizes=BlockSizes(block_q=48))
    with pytest.raises(ValueError, match="multiples of 128"):
        flash_attention(x, x, x, backend="tpu", block_sizes=BlockSizes())
    wide = jnp.zeros((1, 8, 2, 257))
    auto = lambda *a: attention(*a, implementation="auto")  # noqa: E731
    for fn in (flash_attention, auto, jax.jit(flash_attention), jax.jit(auto)):
        with pytest.raises(ValueError, match="head_dim up to 256"):
            fn(wide, wide, wide)  # "auto" too, on CPU, eagerly and under jit alike
    np.testing.assert_array_equal(attention(wide, wide, wide, implementation="blocked"), 0.0)


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


@pytest.mark.parametrize(
    ("name", "cores", "kernel", "other"),
    [
        # Hopper: Mosaic GPU for 16-bit inputs; below it (A100) the Triton kernel.
        ("NVIDIA H100 80GB HBM3", 132, "stablehlo.custom_call @mosaic_gpu", "triton"),
        ("NVIDIA A100-SXM4-80GB", 108, "__gpu$xla.gpu.triton", "@mosaic_gpu"),
    ],
)
def test_gpu_kernels_lower_on_cpu_to_the_kernel_of_the_device(name, cores, kernel, other):
    text = _lower_for("cuda", jax.sharding.AbstractDevice(name, cores, "gpu"))
    assert text.count(kernel) == 3  # forward, dq, dk/dv
    assert other not in text


def test_tpu_kernels_lower_to_mosaic_on_cpu():
    text = _lower_for("tpu", jax.sharding.AbstractDevice("TPU v5 lite", 1, "tpu"))
    assert text.count("tpu_custom_call") == 3


def test_blocked_attention_over_several_query_blocks():
    from codonnt_eqx.kernels import blocked_attention

    q, k, v, do = random_inputs(10, (2, 300, 2, 32), jnp.float32)
    lengths = jnp.array([300, 129])
    fn = lambda q, k, v: blocked_attention(q, k, v, lengths, block=64)  # noqa: E731
    check_against_oracle(fn, q, k, v, do, lengths, jnp.float32)


@settings(max_examples=20, deadline=None)
@given(
    shape=st.sampled_from([(1, 1, 1, 16), (2, 37, 2, 32), (2, 130, 3, 20)]),
    dtype=st.sampled_from([jnp.float32, jnp.bfloat16, jnp.float16]),
    block=st.sampled_from([1, 16, 64, 256]),
    seed=st.integers(0, 2**16),
    data=st.data(),
)
def test_blocked_attention_matches_float64_oracle_in_every_dtype(shape, dtype, block, seed, data):
    """bfloat16 runs its products in bfloat16 (float32 accumulation): the same tolerance as
    the flash kernels' must hold, forward and backward, over blocks and key lengths."""
    from codonnt_eqx.kernels import blocked_attention

    batch, length = shape[:2]
    one_length = st.one_of(st.just(0), st.just(length), st.integers(0, length))
    lengths = jnp.asarray(data.draw(st.lists(one_length, min_size=batch, max_size=batch)))
    q, k, v, do = random_inputs(seed, shape, dtype)
    fn = jax.jit(lambda q, k, v: blocked_attention(q, k, v, lengths, block=block))
    check_against_oracle(fn, q, k, v, do, lengths, dtype)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("impl", ["blocked", "reference", "pallas"])
def test_very_negative_scores_beside_padded_keys(impl, dtype):
    """Every real score near -200: a padded key scoring 0 must not set the softmax's maximum
    (exp(-200) underflows), so the output stays the mean of the real values."""
    rng = np.random.default_rng(13)
    batch, length, heads, dim = 2, 50, 2, 16
    k = jnp.full((batch, length, heads, dim), 2.0, dtype).at[:, 30:].set(0.0)
    q = jnp.full((batch, length, heads, dim), -25.0, dtype)  # q.k * 16**-0.5 = -200
    v = jnp.asarray(rng.normal(size=(batch, length, heads, dim)), dtype)
    lengths = jnp.array([30, 7])
    out = attention(q, k, v, lengths, implementation=impl)
    for b, n in enumerate((30, 7)):
        expected = np.asarray(v[b, :n], np.float64).mean(0)
        assert_close(out[b], np.broadcast_to(expected, out[b].shape), dtype, f"{impl} row {b}")


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_blocked_garbage_in_padded_keys_never_leaks_in_every_dtype(dtype):
    from codonnt_eqx.kernels import blocked_attention

    q, k, v, do = random_inputs(14, (3, 70, 2, 32), dtype)
    lengths = jnp.array([33, 0, 70])
    k_bad = k.at[0, 33:].set(jnp.nan).at[1].set(jnp.inf)
    v_bad = v.at[0, 33:].set(jnp.nan).at[1].set(-jnp.inf)
    fn = lambda q, k, v: blocked_attention(q, k, v, lengths, block=16)  # noqa: E731
    clean = value_and_grads(fn, q, k, v, do)
    dirty = value_and_grads(fn, q, k_bad, v_bad, do)
    for c, d in zip(clean, dirty, strict=True):
        np.testing.assert_array_equal(np.asarray(d, np.float32), np.asarray(c, np.float32))
    _, _, dk, dv = dirty
    assert (dk[0, 33:] == 0).all() and (dv[0, 33:] == 0).all() and (dk[1] == 0).all()


# --- One contract for every implementation -------------------------------------------------


def clipped(lengths, length):
    return np.clip(np.asarray(lengths), 0, length)


def check_any_shape(impl, batch, length, heads, head_dim, lengths, seed):
    q, k, v, do = random_inputs(seed, (batch, length, heads, head_dim), jnp.float32)
    n = jnp.asarray(lengths, jnp.int32)
    fn = lambda q, k, v: attention(q, k, v, n, implementation=impl)  # noqa: E731
    expected = oracle(q, k, v, clipped(lengths, length), do, head_dim**-0.5)
    actual = value_and_grads(fn, q, k, v, do)
    for name, a, e in zip(("out", "dq", "dk", "dv"), actual, expected, strict=True):
        assert a.shape == e.shape and a.dtype == jnp.float32, (name, a.shape, a.dtype)
        assert_close(a, e, jnp.float32, name)


@st.composite
def shapes_and_lengths(draw, max_length=70):
    """Any batch (0 included), length, heads and head_dim (not only powers of two), and key
    lengths that may fall outside [0, length] (they are clipped)."""
    batch = draw(st.integers(0, 2))
    length = draw(st.integers(0, max_length))
    heads = draw(st.integers(0, 3))
    head_dim = draw(st.sampled_from([1, 3, 8, 16, 20, 33]))
    lengths = draw(st.lists(st.integers(-2, length + 2), min_size=batch, max_size=batch))
    return batch, length, heads, head_dim, lengths


EMPTY_CASES = [
    (0, 5, 2, 8, []),  # no batch
    (2, 0, 2, 8, [0, 0]),  # no tokens
    (2, 5, 0, 8, [5, 2]),  # no heads
    (0, 0, 0, 3, []),
]


@pytest.mark.parametrize("impl", ["auto", "blocked", "reference", "xla"])
@settings(max_examples=25)
@given(case=shapes_and_lengths(), seed=st.integers(0, 2**16))
@example(case=EMPTY_CASES[0], seed=0)
@example(case=EMPTY_CASES[1], seed=0)
@example(case=EMPTY_CASES[2], seed=0)
@example(case=(2, 70, 3, 33, [-1, 71]), seed=0)
def test_plain_jax_implementations_take_any_shape_including_empty(impl, case, seed):
    check_any_shape(impl, *case, seed)


@settings(max_examples=10)
@given(case=shapes_and_lengths(), seed=st.integers(0, 2**16))
@example(case=EMPTY_CASES[0], seed=0)
@example(case=EMPTY_CASES[1], seed=0)
@example(case=EMPTY_CASES[2], seed=0)
@example(case=(2, 70, 1, 20, [70, -3]), seed=0)
def test_pallas_takes_any_shape_including_empty(case, seed):
    check_any_shape("pallas", *case, seed)


@pytest.mark.parametrize("case", EMPTY_CASES)
@pytest.mark.parametrize(
    "fn", [flash_attention, blocked_attention, reference_attention], ids=lambda f: f.__name__
)
def test_public_functions_give_empty_outputs_and_gradients(fn, case):
    batch, length, heads, head_dim, lengths = case
    q, k, v, do = random_inputs(0, (batch, length, heads, head_dim), jnp.bfloat16)
    n = jnp.asarray(lengths, jnp.int32)
    for x in value_and_grads(jax.jit(lambda q, k, v: fn(q, k, v, n)), q, k, v, do):
        assert x.shape == q.shape and x.dtype == jnp.bfloat16


def numpy_weights(q, k, lengths, scale):
    """Float64 softmax over each batch's first lengths[b] keys; no code shared with kernels/."""
    q, k = np.asarray(q, np.float64), np.asarray(k, np.float64)
    batch, q_len, heads, _ = q.shape
    out = np.zeros((batch, heads, q_len, k.shape[1]))
    for b, n in enumerate(lengths):
        if n == 0:
            continue
        s = np.einsum("qhd,khd->hqk", q[b], k[b, :n]) * scale
        e = np.exp(s - s.max(axis=-1, keepdims=True))
        out[b, :, :, :n] = e / e.sum(axis=-1, keepdims=True)
    return out


@settings(max_examples=30)
@given(
    batch=st.integers(0, 2),
    q_len=st.integers(0, 12),
    k_len=st.integers(0, 12),
    heads=st.integers(1, 2),
    head_dim=st.sampled_from([1, 5, 16]),
    dtype=st.sampled_from([jnp.float32, jnp.bfloat16, jnp.float16]),
    scale=st.one_of(st.none(), st.floats(-2.0, 2.0)),
    seed=st.integers(0, 2**16),
    data=st.data(),
)
def test_attention_weights_match_float64_softmax_and_ignore_padded_keys(
    batch, q_len, k_len, heads, head_dim, dtype, scale, seed, data
):
    lengths = data.draw(st.lists(st.integers(-1, k_len + 1), min_size=batch, max_size=batch))
    rng = np.random.default_rng(seed)
    q = jnp.asarray(rng.normal(size=(batch, q_len, heads, head_dim)), dtype)
    k = jnp.asarray(rng.normal(size=(batch, k_len, heads, head_dim)), dtype)
    n = clipped(lengths, k_len)
    for b, nb in enumerate(n):  # garbage where the keys are padding
        k = k.at[b, nb:].set(jnp.nan if b % 2 else jnp.inf)
    w = attention_weights(q, k, jnp.asarray(lengths, jnp.int32), scale=scale)

    assert w.shape == (batch, heads, q_len, k_len) and w.dtype == jnp.float32
    expected = numpy_weights(q, k, n, head_dim**-0.5 if scale is None else scale)
    np.testing.assert_allclose(np.asarray(w), expected, rtol=0, atol=2e-6)
    for b, nb in enumerate(n):
        assert (w[b, :, :, nb:] == 0).all()  # exactly, not approximately
        np.testing.assert_allclose(w[b].sum(-1), 1.0 if nb > 0 else 0.0, atol=1e-6)


def test_attention_weights_gradients_never_see_padded_keys():
    q, k, _, _ = random_inputs(11, (2, 9, 2, 8), jnp.float32)
    lengths = jnp.array([4, 0])
    k = k.at[0, 4:].set(jnp.nan).at[1].set(-jnp.inf)
    cotangent = jax.random.normal(jax.random.key(0), (2, 2, 9, 9))
    dq, dk = jax.grad(
        lambda q, k: jnp.sum(attention_weights(q, k, lengths) * cotangent), argnums=(0, 1)
    )(q, k)
    assert np.isfinite(dq).all() and np.isfinite(dk).all()
    assert (dk[0, 4:] == 0).all() and (dk[1] == 0).all() and (dq[1] == 0).all()


def test_reference_attention_is_attention_weights_applied_to_values():
    q, k, v, _ = random_inputs(12, (2, 30, 3, 8), jnp.bfloat16)
    lengths = jnp.array([30, 7])
    w = attention_weights(q, k, lengths)
    v = v.at[1, 7:].set(jnp.nan)
    expected = np.einsum("bhqk,bkhd->bqhd", w, np.nan_to_num(np.asarray(v, np.float32)))
    actual = reference_attention(q, k, v, lengths)
    np.testing.assert_allclose(np.asarray(actual, np.float32), expected, rtol=1e-2, atol=1e-2)


# Every way in, by name: the implementations behind `attention` (cudnn too: inputs are checked
# before any implementation runs) and the public functions called directly.
ENTRY_POINTS = {
    **{
        name: lambda *a, name=name, **kw: attention(*a, implementation=name, **kw)
        for name in IMPLEMENTATIONS
    },
    "flash_attention": flash_attention,
    "blocked_attention": blocked_attention,
    "reference_attention": reference_attention,
}
X = jnp.zeros((2, 8, 2, 16))
BAD_INPUTS = {
    "q and k lengths differ": ((X, X[:, :5], X[:, :5]), {}, ValueError, "share one shape"),
    "k and v lengths differ": ((X, X, X[:, :5]), {}, ValueError, "share one shape"),
    "3-D inputs": ((X[0], X[0], X[0]), {}, ValueError, "share one shape"),
    "head_dim 0": ((X[..., :0],) * 3, {}, ValueError, "head_dim"),
    "int inputs": ((X.astype(jnp.int32),) * 3, {}, TypeError, "dtype"),
    "mixed dtypes": ((X, X.astype(jnp.bfloat16), X), {}, TypeError, "dtype"),
    "float kv_lengths": ((X, X, X, jnp.array([3.0, 8.0])), {}, TypeError, "kv_lengths"),
    "bool kv_lengths": ((X, X, X, jnp.array([True, False])), {}, TypeError, "kv_lengths"),
    "kv_lengths [batch + 1]": ((X, X, X, jnp.array([1, 2, 3])), {}, ValueError, "kv_lengths"),
    "kv_lengths [batch, 1]": ((X, X, X, jnp.array([[1], [2]])), {}, ValueError, "kv_lengths"),
    "NaN scale": ((X, X, X), {"scale": float("nan")}, ValueError, "scale"),
    "infinite scale": ((X, X, X), {"scale": float("inf")}, ValueError, "scale"),
}


@pytest.mark.parametrize("bad", BAD_INPUTS, ids=str)
@pytest.mark.parametrize("entry", ENTRY_POINTS, ids=str)
def test_every_implementation_rejects_the_same_inputs_with_the_same_error(entry, bad):
    args, kwargs, error, match = BAD_INPUTS[bad]
    with pytest.raises(error, match=match):
        ENTRY_POINTS[entry](*args, **kwargs)


@pytest.mark.parametrize("entry", ["auto", "pallas", "xla", "reference_attention"])
def test_inputs_are_checked_under_jit_with_traced_lengths(entry):
    fn = jax.jit(lambda n: ENTRY_POINTS[entry](X, X, X, n))
    with pytest.raises(TypeError, match="kv_lengths"):
        fn(jnp.array([3.0, 8.0]))
    with pytest.raises(ValueError, match="kv_lengths"):
        fn(jnp.array([3, 8, 1]))
    np.testing.assert_array_equal(fn(jnp.array([3, 8])), 0.0)  # valid ones still run


def test_attention_weights_rejects_what_attention_rejects():
    with pytest.raises(ValueError, match="head_dim"):
        attention_weights(X, X[..., :8])
    with pytest.raises(TypeError, match="dtype"):
        attention_weights(X.astype(jnp.int32), X.astype(jnp.int32))
    with pytest.raises(TypeError, match="kv_lengths"):
        attention_weights(X, X, jnp.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="kv_lengths"):
        attention_weights(X, X, jnp.array([1]))


def test_unknown_implementation_is_a_value_error_listing_the_names():
    # Unwrapped: the test run's beartype hook would reject the Literal first, with a TypeError;
    # this is the check users get.
    with pytest.raises(ValueError, match="implementation must be one of") as info:
        inspect.unwrap(attention)(X, X, X, implementation="fast")
    assert all(repr(name) in str(info.value) for name in IMPLEMENTATIONS)


def test_implementation_names_are_public_and_spelled_once():
    assert IMPLEMENTATIONS == typing.get_args(Implementation)
    assert set(IMPLEMENTATIONS) == {"auto", "pallas", "blocked", "reference", "xla", "cudnn"}
    empty = jnp.zeros((0, 4, 2, 8))
    for name in IMPLEMENTATIONS:  # each is accepted (empty inputs run nowhere, cudnn included)
        assert attention(empty, empty, empty, implementation=name).shape == empty.shape

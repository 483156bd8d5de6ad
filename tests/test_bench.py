"""The benchmark scripts run (tiny sizes), so they never rot on a CPU-only CI."""

import importlib.util
import json
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

BENCH = pathlib.Path(__file__).parent.parent / "bench"
TINY_ATTENTION = ["--lengths", "64", "--head-dims", "16", "--tokens", "64", "--model-dim", "32"]


@pytest.mark.parametrize(
    "script,args",
    [
        (
            "tokenizer_speed.py",
            ["--num", "50", "--length", "300", "--repeats", "1", "--python-subset", "10"],
        ),
        ("attention.py", [*TINY_ATTENTION, "--repeats", "1"]),
        ("train_step.py", ["--tiny", "--columns", "ours-gelu-blocked", "ours-glu-blocked"]),
        ("genome_sampler.py", ["--synthetic-mbp", "1", "--repeats", "1"]),
        ("gemm_ceiling.py", ["--tokens", "64", "--repeats", "1", "--square", "256"]),
    ],
)
def test_benchmark_script_runs(tmp_path, script, args):
    env = {"CODONNT_BENCH_RESULTS": str(tmp_path), "PATH": "/usr/bin:/bin", "JAX_PLATFORMS": "cpu"}
    subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        check=True,
        env=env,
        capture_output=True,
        timeout=300,
    )
    (result,) = tmp_path.glob("*.json")
    result = json.loads(result.read_text())
    assert result["environment"]["python"]
    if script == "attention.py":  # what did not run is said, with the reason
        assert "platform is cpu" in result["skipped"]["cudnn"]
        ran = {r["impl"] for r in result["rows"]}
        assert {"reference", "xla", "blocked"} <= ran
        for peer in ("mkl (ours, cpu)", "torch sdpa"):  # CPU peers: run, or said why not
            assert (peer in ran) != (peer in result["skipped"])
        assert ran <= {"reference", "xla", "blocked", "mkl (ours, cpu)", "torch sdpa"}
        for peer in ("ours mosaic gpu", "jax mosaic gpu", "tokamax"):
            assert "platform is cpu" in result["skipped"][peer]
        # both GPU kernels are still checked here, in their interpreters
        errors = result["interpret_mode_max_abs_error"]
        assert 0 < errors["bfloat16, mosaic_gpu"] < 0.1 and 0 < errors["bfloat16"] < 0.1


@pytest.fixture
def attention_bench(monkeypatch, tmp_path):
    """bench/attention.py as a module, writing its results under tmp_path."""
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location("bench_attention", BENCH / "attention.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(sys.modules["_common"], "RESULTS", tmp_path)
    return module


class Broken(Exception):
    pass


def test_attention_benchmark_fails_when_an_implementation_fails(attention_bench, monkeypatch):
    def broken(q, k, v, lengths):
        raise Broken("an implementation that fails must fail the benchmark")

    monkeypatch.setattr(attention_bench, "implementations", lambda platform: ({"b": broken}, {}))
    with pytest.raises(Broken):
        attention_bench.main([*TINY_ATTENTION, "--repeats", "1"])


def test_attention_benchmark_compiles_without_running(attention_bench):
    runs = []

    def counted(q, k, v, lengths):
        def record(x):
            runs.append(1)
            return x

        return jax.pure_callback(record, jax.ShapeDtypeStruct(q.shape, q.dtype), q)

    x = jnp.zeros((1, 4, 1, 8))
    args = (x, x, x, jnp.array([4]))
    compiled, _ = attention_bench.compile_step(counted, *args, "fwd")
    assert not runs  # the compile time contains no run
    jax.block_until_ready(compiled(*args))
    assert len(runs) == 1  # and the executable is the function


def test_attention_benchmark_times_torch_sdpa_on_padded_keys(attention_bench):
    """The PyTorch peer runs forward and backward on padded keys, and its masked values match
    ours (so that its times are for the same computation)."""
    pytest.importorskip("torch")
    rng = jax.random.split(jax.random.key(0), 3)
    q, k, v = (jax.random.normal(r, (2, 40, 2, 8)) for r in rng)
    lengths = jnp.array([40, 13])
    sdpa = attention_bench.TorchSdpa()
    for mode in ("fwd", "fwd+bwd"):
        sdpa(q, k, v, lengths, mode)()
    _, seconds = attention_bench.time_one(sdpa, q, k, v, lengths, "fwd+bwd", repeats=1)
    assert seconds > 0
    import numpy as np

    out = sdpa(q, k, v, lengths, "fwd")()  # the bench's own layout and mask
    ref = attention_bench.attention(q, k, v, lengths, implementation="reference")
    np.testing.assert_allclose(out.transpose(1, 2).numpy(), np.asarray(ref), atol=2e-5)

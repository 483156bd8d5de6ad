"""The benchmark scripts run (tiny sizes), so they never rot on a CPU-only CI."""

import json
import pathlib
import subprocess
import sys

import pytest

BENCH = pathlib.Path(__file__).parent.parent / "bench"


@pytest.mark.parametrize(
    "script,args",
    [
        (
            "tokenizer_speed.py",
            ["--num", "50", "--length", "300", "--repeats", "1", "--python-subset", "10"],
        ),
        (
            "attention.py",
            [
                "--lengths",
                "64",
                "--head-dims",
                "16",
                "--tokens",
                "64",
                "--model-dim",
                "32",
                "--repeats",
                "1",
            ],
        ),
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
    assert json.loads(result.read_text())["environment"]["python"]

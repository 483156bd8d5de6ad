"""The embedding and scoring benchmarks run (tiny model, few genes), so they never rot."""

import json
import pathlib
import subprocess
import sys

import pytest

from codonnt_eqx.examples import example_path

BENCH = pathlib.Path(__file__).parent.parent / "bench"


@pytest.mark.slow
@pytest.mark.parametrize(
    "script,args",
    [
        ("embed_throughput.py", ["--columns", "bucket128-batch1", "bucketed"]),
        ("score_throughput.py", ["--variants", "20"]),
    ],
)
def test_embedding_benchmarks_run(tmp_path, script, args):
    # the committed runs use E. coli genes found by pyrodigal; tests need no data package
    args = [*args, "--fasta", str(example_path("cds.fasta"))]
    env = {"CODONNT_BENCH_RESULTS": str(tmp_path), "PATH": "/usr/bin:/bin", "JAX_PLATFORMS": "cpu"}
    subprocess.run(
        [sys.executable, str(BENCH / script), "--tiny", "--genes", "4", "--repeats", "1", *args],
        check=True,
        env=env,
        capture_output=True,
        timeout=600,
    )
    (result,) = tmp_path.glob("*.json")
    result = json.loads(result.read_text())
    assert result["environment"]["python"]
    rows = result["rows"] if "rows" in result else [result["row"]]
    assert all(r["seconds"] > 0 for r in rows)

"""Lint, format and types, in the suite so that CI runs them: `ruff check` and `ruff format
--check` over the code, `pyright` over src/ and kernels/ (both pinned in the test extra, so
that every machine checks alike)."""

import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PATHS = ("src", "kernels", "tests", "bench")


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["check", "format"])
def test_ruff_is_clean(command):
    pytest.importorskip("ruff", reason="ruff is in the test extra")
    proc = subprocess.run(
        [sys.executable, "-m", "ruff", *command, *PATHS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


@pytest.mark.slow
def test_pyright_finds_no_type_errors_in_src_and_kernels():
    pytest.importorskip("pyright", reason="pyright is in the test extra")
    proc = subprocess.run(
        [sys.executable, "-m", "pyright", "--outputjson"],  # src/ and kernels/: pyproject.toml
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    summary = json.loads(proc.stdout)["summary"]
    assert summary["filesAnalyzed"] > 50 and summary["errorCount"] == 0

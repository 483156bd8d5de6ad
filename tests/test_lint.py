"""Lint and format, in the suite so that CI runs them: `ruff check` and `ruff format --check`
over the code (ruff pinned in the test extra, so that every machine formats alike)."""

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

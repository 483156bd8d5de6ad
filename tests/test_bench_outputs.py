"""The benchmark scripts write into a scratch folder unless `--out` says otherwise: running one as
documented must not overwrite the committed results in bench/results/."""

from __future__ import annotations

import argparse
import ast
import importlib.util
import pathlib
import re
import subprocess
import sys
import tempfile

import pytest

BENCH = pathlib.Path(__file__).resolve().parent.parent / "bench"
COMMITTED = BENCH / "results"
SCRIPTS = sorted(
    p for p in BENCH.rglob("*.py") if COMMITTED not in p.parents and p.name != "_common.py"
)
# Scripts that write no benchmark results: the task tables (the other protein scripts' inputs)
# into the git-ignored runs/ by default; the package's example files into src/.
NOT_RESULTS = {"protein_tasks/build.py", "build_examples.py"}
WRITES = re.compile(r"write_result\(|\.write_text\(|savefig\(|open\([^)]*['\"][wa]")


@pytest.fixture
def common(monkeypatch):
    """bench/_common.py, loaded afresh under its own name, with no scratch override set."""
    monkeypatch.delenv("CODONNT_BENCH_RESULTS", raising=False)
    spec = importlib.util.spec_from_file_location("bench_common_under_test", BENCH / "_common.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _inside(path: pathlib.Path, folder: pathlib.Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def test_the_default_folder_is_scratch_never_bench_results(common, monkeypatch, tmp_path):
    path = common.scratch_dir("tokenizer_speed")
    assert path == pathlib.Path(tempfile.gettempdir()) / "codonnt-eqx-bench" / "tokenizer_speed"
    assert common.COMMITTED.resolve() == COMMITTED
    assert not _inside(path, COMMITTED)
    monkeypatch.setenv("CODONNT_BENCH_RESULTS", str(tmp_path / "env"))
    assert common.scratch_dir("tokenizer_speed") == tmp_path / "env"
    monkeypatch.setattr(common, "RESULTS", tmp_path / "override")  # what tests/test_bench.py does
    assert common.scratch_dir("tokenizer_speed") == tmp_path / "override"


def test_results_dir_is_out_if_given_else_scratch_and_says_so(
    common, monkeypatch, tmp_path, capsys
):
    monkeypatch.setattr(common, "SCRATCH_ROOT", tmp_path / "scratch")
    parser = argparse.ArgumentParser()
    common.add_out_argument(parser, "gpu")
    assert parser.parse_args([]).out is None
    assert parser.parse_args(["--out", "bench/results/x"]).out == pathlib.Path("bench/results/x")

    path = common.results_dir(parser.parse_args([]).out, "gpu")
    assert path == tmp_path / "scratch" / "gpu" and path.is_dir()
    assert str(path) in capsys.readouterr().out
    mine = common.results_dir(tmp_path / "mine", "gpu")
    assert mine == tmp_path / "mine" and mine.is_dir()
    assert "scratch" not in capsys.readouterr().out

    a, b = (common.results_dir(None, "memory_plan", fresh=True) for _ in range(2))
    assert a != b and a.parent == b.parent == tmp_path / "scratch" / "memory_plan"
    assert not any(a.iterdir())
    json_path = common.write_result("name", {"x": 1}, "# md\n", a)
    assert json_path == a / "name.json" and (a / "name.md").read_text() == "# md\n"


def _module_values(tree: ast.Module, text: str) -> dict[str, str]:
    values = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            for t in node.targets:
                if isinstance(t, ast.Name):
                    values[t.id] = ast.get_source_segment(text, node.value) or ""
    return values


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(BENCH)))
def test_no_argument_defaults_to_bench_results(script):
    text = script.read_text()
    tree = ast.parse(text)
    names = _module_values(tree, text)
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument"):
            continue
        for kw in node.keywords:
            if kw.arg != "default":
                continue
            source = ast.get_source_segment(text, kw.value) or ""
            if isinstance(kw.value, ast.Name):
                source += " = " + names.get(kw.value.id, "")
            assert "results" not in source, f"{script.name}:{node.lineno}: default {source}"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(BENCH)))
def test_every_script_that_writes_takes_out_with_the_scratch_default(script):
    text = script.read_text()
    if not WRITES.search(text) or str(script.relative_to(BENCH)) in NOT_RESULTS:
        return
    uses_helper = "add_out_argument(" in text and "results_dir(" in text
    assert uses_helper or re.search(r"\"--out\",\s*required=True", text), script


def _snapshot(folder: pathlib.Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size)
        for p in folder.rglob("*")
    }


def _run(tmp_path: pathlib.Path, script: str, *args: str) -> tuple[str, pathlib.Path]:
    """Run a bench script from an empty cwd, without CODONNT_BENCH_RESULTS and with the temp dir
    in tmp_path; return its stdout and that temp dir."""
    temp, cwd = tmp_path / "tmp", tmp_path / "cwd"
    temp.mkdir(exist_ok=True)
    cwd.mkdir(exist_ok=True)
    env = {"PATH": "/usr/bin:/bin", "JAX_PLATFORMS": "cpu", "TMPDIR": str(temp)}
    before = _snapshot(COMMITTED)
    contents = {k: (COMMITTED / k).read_bytes() for k in before if (COMMITTED / k).is_file()}
    try:
        proc = subprocess.run(
            [sys.executable, str(BENCH / script), *args],
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        after = _snapshot(COMMITTED)
        # a script that fails this test leaves the committed results as they were
        for name in sorted(set(after) - set(before), reverse=True):
            path = COMMITTED / name
            path.rmdir() if path.is_dir() else path.unlink()
        for name, data in contents.items():
            if after.get(name) != before[name]:
                (COMMITTED / name).write_bytes(data)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert after == before, "bench/results/ changed: " + str(
        sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    )
    assert not (cwd / "bench").exists(), "wrote bench/... relative to the working directory"
    return proc.stdout, temp


def _scratch_from(stdout: str) -> pathlib.Path:
    found = re.search(r"scratch folder (\S+)", stdout)
    assert found, stdout[-2000:]
    return pathlib.Path(found.group(1))


# --n-rate 0.5: a name not committed, so that a script writing to bench/results/ adds a file
# (found, and removed) instead of overwriting a committed one.
TINY_TOKENIZER = [
    *("--num", "50", "--length", "300", "--repeats", "1", "--python-subset", "10"),
    *("--n-rate", "0.5"),
]


def test_tokenizer_speed_writes_to_scratch_without_out(tmp_path):
    stdout, temp = _run(tmp_path, "tokenizer_speed.py", *TINY_TOKENIZER)
    scratch = _scratch_from(stdout)
    assert scratch == temp / "codonnt-eqx-bench" / "tokenizer_speed"
    assert (scratch / "tokenizer_speed_k3_n0.5.json").exists()
    assert (scratch / "tokenizer_speed_k3_n0.5.md").exists()
    assert f"wrote {scratch / 'tokenizer_speed_k3_n0.5.json'}" in stdout


def test_tokenizer_speed_writes_to_out_when_given(tmp_path):
    out = tmp_path / "explicit"
    stdout, temp = _run(tmp_path, "tokenizer_speed.py", *TINY_TOKENIZER, "--out", str(out))
    assert (out / "tokenizer_speed_k3_n0.5.json").exists()
    assert "scratch folder" not in stdout and not (temp / "codonnt-eqx-bench").exists()


def test_protein_tasks_run_records_to_scratch_without_out(tmp_path):
    args = ["runs/protein_tasks", "--dry-run", "--methods", "probe-linear", "--only-tasks", "gravy"]
    stdout, temp = _run(tmp_path, "protein_tasks/run.py", *args)
    scratch = _scratch_from(stdout)
    assert scratch == temp / "codonnt-eqx-bench" / "protein_tasks"
    assert f"records: {scratch / 'lm'}" in stdout and (scratch / "lm").is_dir()


def test_the_tests_see_the_committed_results():
    assert COMMITTED.is_dir() and any(COMMITTED.glob("*.json"))  # so the snapshots mean something
    assert not any(COMMITTED.glob("tokenizer_speed_k3_n0.5.*"))  # the tiny runs' name is not

"""The README as a user pastes it: every shell and Python block runs, on the shipped examples
(blocks that download or run for hours say so in a `<!-- not run by the tests: ... -->`
comment above them and are skipped with that reason)."""

import os
import pathlib
import re
import subprocess
import sys
import tomllib

import pytest

from codonnt_eqx.examples import copy_examples

ROOT = pathlib.Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()
_BLOCK = re.compile(
    r"(?:<!-- (?:not run by the tests: (?P<skip>[^>]*?)|(?P<after>run by the tests after the "
    r"block above)) -->\n)?```(?P<lang>bash|python)\n(?P<code>.*?)\n```",
    re.S,
)


def _blocks() -> list:
    """(id, [(lang, code), ...], skip reason or None): a block marked as running after the one
    above is run in the same folder, after it, by the same test."""
    blocks = []
    for m in _BLOCK.finditer(README):
        if m["after"]:
            blocks[-1][1].append((m["lang"], m["code"]))
            continue
        line = README[: m.start()].count("\n") + 1
        blocks.append((f"line{line}-{m['lang']}", [(m["lang"], m["code"])], m["skip"]))
    return [pytest.param(parts, skip, id=name) for name, parts, skip in blocks]


BLOCKS = _blocks()
EXTRAS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def test_ci_runs_the_readme_test_command():
    commands = re.findall(r"```bash\n(.*?)\n```", README, flags=re.S)
    test_command = next(c for c in commands if "pytest" in c)
    assert test_command in (ROOT / ".ci" / "run").read_text()


def test_quick_example_runs_and_prints_what_it_says(monkeypatch, capsys, tmp_path):
    example = re.findall(r"```python\n(.*?)\n```", README, flags=re.S)[0]
    monkeypatch.chdir(tmp_path)  # it needs nothing from the source tree
    exec(compile(example, "README.md", "exec"), {})
    promised = re.findall(r"print\(.*\)  # ([^:\n]*)", example)
    assert capsys.readouterr().out.strip().splitlines() == promised


def shell_commands(code: str) -> tuple[str, list[str]]:
    """The block without its `pip install` steps (the suite's environment has the extras),
    and the extras those steps name."""
    code = code.replace("\\\n", " ")
    kept, extras = [], []
    for line in code.splitlines():
        steps = [s.strip() for s in line.split("&&")]
        for step in steps:
            if step.startswith("pip install"):
                extras += [
                    e for group in re.findall(r"\.\[([^\]]*)\]", step) for e in group.split(",")
                ]
        steps = [s for s in steps if not s.startswith("pip install")]
        if steps:
            kept.append(" && ".join(steps))
    return "\n".join(kept), extras


@pytest.mark.slow
@pytest.mark.parametrize("parts, skip", BLOCKS)
def test_readme_block_runs_as_pasted(parts, skip, tmp_path, monkeypatch):
    if skip:
        pytest.skip(skip)
    # Where the README's first command left them: `codonnt-eqx examples examples`.
    copy_examples(tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    for lang, code in parts:
        if lang == "python":
            exec(compile(code, "README.md", "exec"), {})
        else:
            run_shell(code, tmp_path)


def run_shell(code: str, folder: pathlib.Path) -> None:
    script, extras = shell_commands(code)
    unknown = [e for e in extras if e not in EXTRAS]
    assert not unknown, f"the README installs extras pyproject.toml does not define: {unknown}"
    path = f"{pathlib.Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "PATH": path, "CODONNT_BENCH_RESULTS": str(folder / "bench")}
    run = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, (
        f"{script}\n--- stdout\n{run.stdout[-3000:]}\n--- stderr\n{run.stderr[-3000:]}"
    )


def test_the_shell_blocks_drop_only_pip_steps():
    script, extras = shell_commands('pip install ".[a,b]" && x \\\n  --y\npip install .\nz && w')
    assert script == "x    --y\nz && w" and extras == ["a", "b"]

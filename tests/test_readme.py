import pathlib
import re

ROOT = pathlib.Path(__file__).parent.parent


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```bash\n(.*?)\n```", readme, flags=re.S)
    test_command = next(c for c in commands if "pytest" in c)
    assert test_command in (ROOT / ".ci" / "run").read_text()


def test_quick_example_runs_and_prints_what_it_says(monkeypatch, capsys):
    readme = (ROOT / "README.md").read_text()
    example = re.findall(r"```python\n(.*?)\n```", readme, flags=re.S)[0]
    monkeypatch.chdir(ROOT)
    exec(compile(example, "README.md", "exec"), {})
    promised = re.findall(r"print\(.*\)  # ([^:\n]*)", example)
    assert capsys.readouterr().out.strip().splitlines() == promised

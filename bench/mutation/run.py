"""A mutation pass: does a test fail when the code is wrong?

Each mutant changes one operator or constant in a target file (arithmetic, comparisons,
boolean operators, True/False, integers off by one, a returned value replaced by None), is
written into a scratch copy of `src/`, and the target's tests run on it in a fresh process. A mutant
is *killed* when the tests fail, *survives* when they pass, and *times out* past 3 x the
clean run. Survivors are listed with their line, to be read: some are equivalent mutants.

Why not mutmut: mutmut 3 forks its workers from a process that has run the tests, and JAX is
not fork-safe once initialised (every mutant timed out); its fork-server mode re-runs the
whole selected suite per mutant. Fresh processes on a few fast tests per target fit here.

    python bench/mutation/run.py --out bench/results/mutation            # every target
    python bench/mutation/run.py --targets windows --sample 20          # a quick look

Writes `<out>/results.json` (every mutant and its outcome) and `<out>/table.md`; without --out,
into a scratch folder (never bench/results/).
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import dataclasses
import json
import os
import pathlib
import random
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from _common import add_out_argument, environment, results_dir  # noqa: E402

# What is mutated, and the tests that must catch it (fast ones: each mutant runs them).
TARGETS = {
    "windows": ("inference/_windows.py", ["tests/test_windowed.py", "-k", "brute or plan"]),
    "windowed": (
        "inference/_windowed.py",
        ["tests/test_windowed.py", "-k", "(False or embeddings or variant) and not brute"],
    ),
    "masking": ("training/_masking.py", ["tests/test_training_masking.py"]),
    "loss": ("training/_loss.py", ["tests/test_training_loss.py"]),
}

_SWAPS: dict[type, type] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.FloorDiv,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Mult,
    ast.Mod: ast.FloorDiv,
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.And: ast.Or,
    ast.Or: ast.And,
    ast.BitAnd: ast.BitOr,
    ast.BitOr: ast.BitAnd,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}


@dataclasses.dataclass(frozen=True)
class Mutant:
    target: str
    index: int  # the index-th mutation site of the file, in walk order
    line: int
    description: str


def _docstring_nodes(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            if isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                found.add(id(body[0].value))
    return found


def _sites(tree: ast.AST):
    """(node, description, apply) for every mutation; `apply` mutates the node in place."""
    skip = _docstring_nodes(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp | ast.AugAssign) and type(node.op) in _SWAPS:
            new = _SWAPS[type(node.op)]

            def apply(n=node, new=new):
                n.op = new()

            yield node, f"{type(node.op).__name__} -> {new.__name__}", apply
        elif isinstance(node, ast.Compare):
            for i, op in enumerate(node.ops):
                if type(op) in _SWAPS:
                    new = _SWAPS[type(op)]

                    def apply(n=node, i=i, new=new):
                        n.ops[i] = new()

                    yield node, f"{type(op).__name__} -> {new.__name__}", apply
        elif isinstance(node, ast.BoolOp):
            new = _SWAPS[type(node.op)]

            def apply(n=node, new=new):
                n.op = new()

            yield node, f"{type(node.op).__name__} -> {new.__name__}", apply
        elif isinstance(node, ast.Constant) and type(node.value) is bool:

            def apply(n=node):
                n.value = not n.value

            yield node, f"{node.value} -> {not node.value}", apply
        elif (
            isinstance(node, ast.Constant)
            and type(node.value) is int
            and id(node) not in skip
            and node.value < 1 << 20
        ):

            def apply(n=node):
                n.value = n.value + 1

            yield node, f"{node.value} -> {node.value + 1}", apply
        elif isinstance(node, ast.Return) and node.value is not None:

            def apply(n=node):
                n.value = ast.Constant(None)

            yield node, "return None", apply


def mutants(target: str) -> list[Mutant]:
    path = ROOT / "src" / "codonnt_eqx" / TARGETS[target][0]
    tree = ast.parse(path.read_text())
    return [
        Mutant(target, i, node.lineno, description)
        for i, (node, description, _) in enumerate(_sites(tree))
    ]


def mutated_source(mutant: Mutant) -> str:
    path = ROOT / "src" / "codonnt_eqx" / TARGETS[mutant.target][0]
    tree = ast.parse(path.read_text())
    for i, (_, _, apply) in enumerate(_sites(tree)):
        if i == mutant.index:
            apply()
            break
    return ast.unparse(ast.fix_missing_locations(tree))


def _run_tests(src: pathlib.Path, tests: list[str], timeout: float) -> tuple[str, float]:
    env = dict(os.environ, PYTHONPATH=f"{src}{os.pathsep}{ROOT / 'tests'}", JAX_PLATFORMS="cpu")
    # The suite's jaxtyping hook stays on; -x: the first failure kills the mutant.
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:randomly", *tests]
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return "timeout", time.perf_counter() - start
    seconds = time.perf_counter() - start
    if proc.returncode == 0:
        return "survived", seconds
    if proc.returncode == 1:  # tests ran and failed
        return "killed", seconds
    return f"error {proc.returncode}", seconds  # collection failed: still caught, noted apart


def _scratch() -> pathlib.Path:
    """A copy of src/ to write mutants into (the installed package is shadowed by it)."""
    where = pathlib.Path(tempfile.mkdtemp(prefix="mutation-"))
    shutil.copytree(ROOT / "src", where / "src", ignore=shutil.ignore_patterns("__pycache__"))
    return where / "src"


def run_target(target: str, sample: int | None, seed: int, workers: int) -> dict:
    relative, tests = TARGETS[target]
    every = mutants(target)
    chosen = (
        every
        if sample is None
        else sorted(
            random.Random(seed).sample(every, min(sample, len(every))), key=lambda m: m.index
        )
    )
    clean_src = _scratch()
    status, baseline = _run_tests(clean_src, tests, timeout=1800)
    if status != "survived":
        raise SystemExit(f"{target}: the tests fail on the unmutated code ({status})")
    timeout = 3 * baseline + 10
    scratches = [_scratch() for _ in range(workers)]
    free = list(range(workers))

    def one(mutant: Mutant) -> dict:
        slot = free.pop()
        try:
            file = scratches[slot] / "codonnt_eqx" / relative
            original = (clean_src / "codonnt_eqx" / relative).read_text()
            file.write_text(mutated_source(mutant))
            outcome, seconds = _run_tests(scratches[slot], tests, timeout)
            file.write_text(original)
        finally:
            free.append(slot)
        print(f"{target}:{mutant.line} {mutant.description}: {outcome}", flush=True)
        return {**dataclasses.asdict(mutant), "outcome": outcome, "seconds": round(seconds, 1)}

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(one, chosen))
    return {
        "target": target,
        "file": f"src/codonnt_eqx/{relative}",
        "tests": tests,
        "mutants_in_file": len(every),
        "mutants_run": len(chosen),
        "clean_seconds": round(baseline, 1),
        "results": results,
    }


def _table(runs: list[dict], command: str, env: dict) -> str:
    lines = [
        "# Mutation pass: windowing core, masking, loss",
        "",
        f"`{command}`; {env.get('cpu', '')}; jax {env.get('jax', '')}.",
        "",
        "| target | file | mutants (run / in file) | killed | survived | timed out | killed % |",
        "|---|---|---|---|---|---|---|",
    ]
    survivors = []
    for run in runs:
        outcomes = [r["outcome"] for r in run["results"]]
        killed = sum(o == "killed" or o.startswith("error") for o in outcomes)
        survived = outcomes.count("survived")
        timed_out = outcomes.count("timeout")
        share = 100 * (killed + timed_out) / max(1, len(outcomes))
        lines.append(
            f"| {run['target']} | `{run['file']}` | {run['mutants_run']} / "
            f"{run['mutants_in_file']} | {killed} | {survived} | {timed_out} | {share:.0f} |"
        )
        survivors += [
            f"- `{run['file']}:{r['line']}` {r['description']}"
            for r in run["results"]
            if r["outcome"] == "survived"
        ]
    lines += ["", "Timed-out mutants count as killed (an infinite loop is caught).", ""]
    lines += ["## Survivors", ""] + (survivors or ["none"])
    return "\n".join(lines) + "\n"


def _cpu_name() -> str:
    """The CPU model, as lscpu names it."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown CPU"
    names = [line.split(":", 1)[1].strip() for line in text.splitlines() if "Model name" in line]
    return names[0] if names else "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", nargs="+", choices=list(TARGETS), default=list(TARGETS))
    parser.add_argument("--sample", type=int, help="at most this many mutants per target")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    add_out_argument(parser, "mutation")
    parser.add_argument("--list", action="store_true", help="print the mutants and stop")
    args = parser.parse_args()
    if args.list:
        for target in args.targets:
            for m in mutants(target):
                print(f"{target}:{m.line} {m.description}")
        return
    runs = [run_target(t, args.sample, args.seed, args.workers) for t in args.targets]
    args.out = results_dir(args.out, "mutation")
    env = environment()
    env["cpu"] = _cpu_name()
    command = "python bench/mutation/run.py " + " ".join(sys.argv[1:])
    (args.out / "results.json").write_text(
        json.dumps({"command": command, "environment": env, "runs": runs}, indent=1) + "\n"
    )
    (args.out / "table.md").write_text(_table(runs, command, env))
    print((args.out / "table.md").read_text())
    print(f"wrote {args.out / 'results.json'} and {args.out / 'table.md'}")


if __name__ == "__main__":
    main()

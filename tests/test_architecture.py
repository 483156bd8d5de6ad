"""The package's import structure: no circles, packages talk through their public faces, and
function-local imports only for optional heavy dependencies (with a comment saying why).

The graph is read from the source with `ast`, so the test sees what a newcomer reads, and
needs nothing imported.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "codonnt_eqx"
SOURCES = {PACKAGE: ROOT / "src" / PACKAGE, f"{PACKAGE}.kernels": ROOT / "kernels"}

# Optional or heavy dependencies a function may import on first use (an extra may be absent,
# or importing costs seconds at package import); anything else is imported at module level.
LAZY_ALLOWED = {
    "grain",
    "huggingface_hub",
    "jax.experimental.topologies",
    "matplotlib",
    "orbax",
    "pyarrow",
    "pysam",
    "rich",
    "safetensors",
    "tokenizers",
    "torch",
    "tqdm",
    "transformers",
}


@dataclass(frozen=True)
class Import:
    importer: str  # dotted module name
    target: str  # dotted module the names come from
    names: tuple[str, ...]  # names taken from it ("*" never appears: not allowed)
    line: int
    local: bool  # inside a function body
    commented: bool  # a comment on its line or the line above


def _modules() -> dict[str, Path]:
    found = {}
    for prefix, folder in SOURCES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            if "__pycache__" in parts:
                continue
            found[".".join([prefix, *parts])] = path
    return found


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _resolve(module: str, path: Path, level: int, name: str | None) -> str:
    if level == 0:
        return name or ""
    base = module.split(".")
    if not _is_package(path):
        base = base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def _imports(module: str, path: Path) -> list[Import]:
    source = path.read_text()
    lines = source.splitlines()
    tree = ast.parse(source)
    found: list[Import] = []

    def commented(node: ast.stmt) -> bool:
        here = lines[node.lineno - 1]
        above = lines[node.lineno - 2].strip() if node.lineno > 1 else ""
        return "#" in here or above.startswith("#")

    def visit(node: ast.AST, local: bool, type_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner_local = local or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            inner_type_only = type_only
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                inner_type_only = True
            if isinstance(child, ast.ImportFrom) and not type_only:
                target = _resolve(module, path, child.level, child.module)
                names = tuple(a.name for a in child.names)
                found.append(Import(module, target, names, child.lineno, local, commented(child)))
            elif isinstance(child, ast.Import) and not type_only:
                for alias in child.names:
                    found.append(
                        Import(module, alias.name, (), child.lineno, local, commented(child))
                    )
            visit(child, inner_local, inner_type_only)

    visit(tree, False, False)
    return found


MODULES = _modules()
IMPORTS = [imp for name, path in MODULES.items() for imp in _imports(name, path)]


def _internal_target(imp: Import) -> list[str]:
    """The package modules an import makes Python load: `from pkg import sub` loads the
    submodule `pkg.sub` (pkg itself is already loading when pkg's own modules do this)."""
    if imp.target not in MODULES:
        return []
    submodules = [f"{imp.target}.{n}" for n in imp.names if f"{imp.target}.{n}" in MODULES]
    if submodules and len(submodules) == len(imp.names):
        return submodules
    return [imp.target, *submodules]


def _package_of(module: str) -> str:
    """The package a module belongs to: itself for a package, its parent otherwise."""
    return module if _is_package(MODULES[module]) else module.rpartition(".")[0]


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for imp in IMPORTS:
        if imp.local:
            continue
        for target in _internal_target(imp):
            if target != imp.importer:
                graph[imp.importer].add(target)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle, or None (an iterative depth-first search)."""
    state: dict[str, int] = {}
    for start in sorted(graph):
        if start in state:
            continue
        stack = [(start, iter(sorted(graph[start])))]
        path = [start]
        state[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.pop()
                state[node] = 2
            elif state.get(child) == 1:
                return path[path.index(child) :] + [child]
            elif child not in state:
                state[child] = 1
                path.append(child)
                stack.append((child, iter(sorted(graph[child]))))
    return None


def _package_graph() -> dict[str, set[str]]:
    """Which subpackage imports which (the top-level package, the public face that imports
    everything, is left out)."""
    graph: dict[str, set[str]] = {}
    for imp in IMPORTS:
        if imp.local or imp.importer == PACKAGE:
            continue
        source = _package_of(imp.importer)
        if source == PACKAGE:
            continue
        for target in _internal_target(imp):
            dest = _package_of(target)
            if dest not in (source, PACKAGE) and not dest.startswith(source + "."):
                if not source.startswith(dest + "."):
                    graph.setdefault(source, set()).add(dest)
                    graph.setdefault(dest, set())
    return graph


def test_there_are_no_import_circles_between_modules():
    assert _cycle(_graph()) is None, " -> ".join(_cycle(_graph()) or [])


def test_there_are_no_import_circles_between_packages():
    cycle = _cycle(_package_graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_no_private_name_is_imported_from_another_package():
    offenders = []
    for imp in IMPORTS:
        if imp.target.split(".")[0] != PACKAGE:
            continue
        source = _package_of(imp.importer)
        target = imp.target if imp.target in MODULES else imp.target.rpartition(".")[0]
        if target not in MODULES:
            continue
        dest = _package_of(target)
        if dest == source:
            continue
        # Across packages only a package's public face may be imported, and only public names.
        private_module = target != dest and target.rpartition(".")[2].startswith("_")
        private_names = [n for n in imp.names if n.startswith("_")]
        if private_module or private_names:
            offenders.append(f"{imp.importer}:{imp.line} from {imp.target} import {imp.names}")
    assert offenders == [], "\n".join(offenders)


def test_function_local_imports_are_only_for_optional_heavy_dependencies():
    offenders = []
    for imp in IMPORTS:
        if not imp.local:
            continue
        top = imp.target.split(".")
        allowed = any(imp.target == a or imp.target.startswith(a + ".") for a in LAZY_ALLOWED)
        if top[0] == PACKAGE or not allowed or not imp.commented:
            offenders.append(f"{imp.importer}:{imp.line} {imp.target}")
    assert offenders == [], "\n".join(offenders)


def test_the_layout_has_no_flat_private_modules_at_the_top_level():
    # Implementation lives in subpackages named for what they are; the top level is the
    # public face (and `python -m`).
    top = sorted(p.name for p in SOURCES[PACKAGE].glob("_*.py") if p.name != "__init__.py")
    assert top == ["__main__.py"]


def test_the_checker_finds_a_circle_and_a_private_import():
    # The checks above must be able to fail.
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
    path = ROOT / "src" / PACKAGE / "model" / "_fake.py"
    source = "from ..inference._windows import _window_starts\n"
    imports = [
        Import(
            f"{PACKAGE}.model._fake",
            _resolve(f"{PACKAGE}.model._fake", path, 2, n),
            (),
            1,
            False,
            False,
        )
        for n in ["inference._windows"]
    ]
    assert imports[0].target == f"{PACKAGE}.inference._windows"
    assert "_window_starts" in source


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))

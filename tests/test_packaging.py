import ast
import pathlib
import sys

import codonnt_eqx.kernels

KERNELS = pathlib.Path(codonnt_eqx.kernels.__file__).parent


def test_kernels_import_only_jax_and_the_standard_library():
    allowed = {"jax", "jaxlib", "numpy", *sys.stdlib_module_names}
    for path in KERNELS.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                assert name.split(".")[0] in allowed, f"{path.name} imports {name}"

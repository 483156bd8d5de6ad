"""Building the MKL custom calls (GEMM, attention) on first use: the machine's C++ compiler,
XLA's FFI headers from jaxlib, MKL's headers and library from its wheels (`pip install
'codonnt-eqx[cpu-bf16]'`). The shared library is cached per source, jax and MKL."""

from __future__ import annotations

import ctypes
import functools
import hashlib
import importlib.resources
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable

import jax
import jax.ffi

# Compiled into one library: the bfloat16 GEMM and the attention (float32 and bfloat16).
_SOURCES = ("mkl_gemm.cc", "mkl_attention.cc")


class MklGemmUnavailable(RuntimeError):
    """The MKL GEMM cannot be built or loaded here; the message says why."""


def _mkl_paths() -> tuple[pathlib.Path, pathlib.Path]:
    """(include folder holding mkl.h, the libmkl_rt shared library)."""
    roots = [os.environ.get("MKLROOT"), sys.prefix, sys.base_prefix]
    for root in filter(None, roots):
        include = pathlib.Path(root) / "include"
        libs = sorted((pathlib.Path(root) / "lib").glob("libmkl_rt.so*"))
        if (include / "mkl.h").is_file() and libs:
            return include, libs[0]
    raise MklGemmUnavailable(
        "MKL's headers and libmkl_rt are not installed: pip install 'codonnt-eqx[cpu-bf16]'"
    )


def _cache_folder() -> pathlib.Path:
    root = os.environ.get("CODONNT_EQX_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"), "codonnt-eqx"
    )
    return pathlib.Path(root).expanduser() / "cpu"


@functools.cache
def mkl_gemm_library() -> ctypes.CDLL:
    """The built (or cached) custom-call library, loaded; `MklGemmUnavailable` if it cannot
    be (no MKL, no compiler, a failed build: the compiler's message is in it)."""
    if not sys.platform.startswith("linux"):
        raise MklGemmUnavailable("the MKL GEMM is built for Linux only")
    include, mkl = _mkl_paths()
    folder = importlib.resources.files("codonnt_eqx.cpu")
    sources = {name: folder.joinpath(name).read_bytes() for name in _SOURCES}
    ffi_include = pathlib.Path(jax.ffi.include_dir())
    parts = [*sources.values(), jax.__version__.encode(), str(mkl).encode()]
    key = hashlib.sha256(b"\0".join(parts))
    target = _cache_folder() / key.hexdigest()[:16] / "libcodonnt_mkl_gemm.so"
    if not target.is_file():
        _compile(sources, target, [ffi_include, include], mkl)
    # MKL's OpenMP threads otherwise spin for 200 ms after each product, taking the cores
    # from XLA's own threads between products (measured 1.4-2x slower steps); read when
    # OpenMP starts, so set before the first product.
    os.environ.setdefault("KMP_BLOCKTIME", "0")
    try:
        return ctypes.CDLL(str(target))
    except OSError as e:
        raise MklGemmUnavailable(f"{target}: cannot be loaded ({e})") from None


def registers(register: Callable[[], None]) -> bool:
    """Whether `register()`, which builds and loads the library and registers custom calls
    from it, succeeds here (False where it raises `MklGemmUnavailable`)."""
    try:
        register()
    except MklGemmUnavailable:
        return False
    return True


def _compile(sources: dict[str, bytes], target: pathlib.Path, includes, mkl: pathlib.Path) -> None:
    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        raise MklGemmUnavailable("no C++ compiler (g++ or $CXX) to build the MKL GEMM")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        files = [pathlib.Path(tmp) / name for name in sources]
        for file, source in zip(files, sources.values(), strict=True):
            file.write_bytes(source)
        out = pathlib.Path(tmp) / target.name
        command = [
            compiler, "-O3", "-std=c++17", "-shared", "-fPIC", "-pthread", "-w",
            *(f"-I{i}" for i in includes), *map(str, files), "-o", str(out),
            str(mkl), f"-Wl,-rpath,{mkl.parent}",
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            raise MklGemmUnavailable(
                f"building the MKL GEMM failed ({' '.join(command)}):\n{done.stderr[-2000:]}"
            )
        os.replace(out, target)  # atomic: a concurrent build leaves one whole library

"""Transparent huge pages for XLA:CPU's buffers, through glibc malloc's `hugetlb` tunable.

XLA:CPU allocates a step's intermediates afresh on every call and frees them after, so each
training step at Codon-NT size (2 x 1000 tokens) faults about 2.3 GB of new memory into the
process in 4 KiB pages: 578,000 page faults and 1.9 CPU-seconds in the kernel per step on an
AMD EPYC (Zen 3, 2 cores). With `GLIBC_TUNABLES=glibc.malloc.hugetlb=1` malloc asks for 2 MiB
pages (`madvise`), which the common `madvise` THP setting grants: 1,400 faults and 0.4 s, and
the step's median 9.6 -> 8.8 s over three interleaved pairs of runs (that VM's drift between
runs is as large; bench/results/amd_avx2/). glibc reads the tunable only when a process
starts, so it is an environment for a new process: `hugepage_environment` builds it, and the
command line (`codonnt-eqx pretrain`, ...) restarts itself with it.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping, Sequence
from typing import Any

TUNABLE = "glibc.malloc.hugetlb"
# Set to "0" to keep the command line from restarting itself with huge pages.
OPT_OUT = "CODONNT_EQX_HUGEPAGES"
_THP_SETTING = "/sys/kernel/mm/transparent_hugepage/enabled"
# The first glibc with the hugetlb tunable.
_FIRST_GLIBC = (2, 35)
# The default of `hugepages_pay`'s machine facts: read them (None is an answer: "not Linux").
_THIS_MACHINE: Any = object()


def transparent_hugepages(setting: str = _THP_SETTING) -> str | None:
    """The kernel's transparent-huge-page mode (`"always"`, `"madvise"` or `"never"`, the
    bracketed word of `setting`), or None where it cannot be read (not Linux)."""
    try:
        with open(setting) as f:
            words = f.read().split()
    except OSError:
        return None
    chosen = [w[1:-1] for w in words if w.startswith("[") and w.endswith("]")]
    return chosen[0] if chosen else None


def glibc_version() -> tuple[int, int] | None:
    """(major, minor) of the C library this Python runs on if it is glibc, else None."""
    name, version = platform.libc_ver()
    parts = version.split(".")
    if name != "glibc" or len(parts) < 2 or not all(p.isdigit() for p in parts[:2]):
        return None
    return int(parts[0]), int(parts[1])


def _tunables(environ: Mapping[str, str]) -> list[str]:
    return [t for t in environ.get("GLIBC_TUNABLES", "").split(":") if t]


def _names_hugetlb(tunables: list[str]) -> bool:
    return any(t.split("=", 1)[0] == TUNABLE for t in tunables)


def hugepage_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of `environ` (default `os.environ`) whose `GLIBC_TUNABLES` also asks malloc for
    huge pages; tunables already there are kept, and one naming `hugetlb` stands (the user's
    choice, `=0` included)."""
    env = dict(os.environ if environ is None else environ)
    tunables = _tunables(env)
    if not _names_hugetlb(tunables):
        tunables.append(f"{TUNABLE}=1")
    env["GLIBC_TUNABLES"] = ":".join(tunables)
    return env


def hugepages_pay(
    environ: Mapping[str, str] | None = None,
    *,
    thp: str | None = _THIS_MACHINE,
    glibc: tuple[int, int] | None = _THIS_MACHINE,
) -> bool:
    """Whether a process started with `hugepage_environment(environ)` gets huge pages that one
    started with `environ` does not: glibc 2.35 or later, the kernel's THP mode `madvise`
    (under `always` every large mapping has them already, under `never` none can), and no
    `hugetlb` tunable in `environ` yet. `thp` and `glibc` default to this machine's
    (`transparent_hugepages()`, `glibc_version()`)."""
    env = os.environ if environ is None else environ
    thp = transparent_hugepages() if thp is _THIS_MACHINE else thp
    glibc = glibc_version() if glibc is _THIS_MACHINE else glibc
    named = _names_hugetlb(_tunables(env))
    return thp == "madvise" and glibc is not None and glibc >= _FIRST_GLIBC and not named


def restart_with_hugepages(argv: Sequence[str] | None = None) -> None:
    """Replace this process (`os.execve`) by the same command, `argv` (default
    `sys.orig_argv`: interpreter options included), started with huge pages, where that
    pays (`hugepages_pay`) and `CODONNT_EQX_HUGEPAGES` is not `"0"`; otherwise, or if the
    process cannot be started again, return and do nothing. Call it first thing, before any
    input is read or output written: the new process starts the command from the beginning."""
    if os.environ.get(OPT_OUT) == "0" or not hugepages_pay():
        return
    argv = list(sys.orig_argv if argv is None else argv)
    if not argv or not sys.executable:  # an embedded interpreter: nothing to start again
        return
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    try:
        os.execve(sys.executable, [sys.executable, *argv[1:]], hugepage_environment())
    except OSError:  # not startable again (a sandbox): go on in this process, without
        return

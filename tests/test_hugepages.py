"""Huge pages for XLA:CPU's buffers: the glibc tunable's environment, when it pays, the
command line's restart with it, and (where the machine allows) that it does give huge pages."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from codonnt_eqx.cli import _main as cli_main
from codonnt_eqx.cpu import _hugepages as hp
from codonnt_eqx.cpu import (
    glibc_version,
    hugepage_environment,
    hugepages_pay,
    restart_with_hugepages,
    transparent_hugepages,
)


@pytest.mark.parametrize(
    "text, mode",
    [
        ("always [madvise] never\n", "madvise"),
        ("[always] madvise never\n", "always"),
        ("always madvise [never]\n", "never"),
        ("always madvise never\n", None),
        ("", None),
    ],
)
def test_transparent_hugepages_reads_the_bracketed_mode(tmp_path, text, mode):
    setting = tmp_path / "enabled"
    setting.write_text(text)
    assert transparent_hugepages(str(setting)) == mode


def test_transparent_hugepages_is_none_without_the_setting(tmp_path):
    assert transparent_hugepages(str(tmp_path / "absent")) is None


def test_glibc_version_is_a_pair_or_none():
    version = glibc_version()
    assert version is None or (len(version) == 2 and version >= (2, 0))


_NAME = st.text("abcdefghijklmnopqrstuvwxyz._", min_size=1, max_size=20)
_VALUE = st.text("0123456789abcdef", min_size=1, max_size=8)


@given(st.lists(st.tuples(_NAME, _VALUE), max_size=4))
def test_hugepage_environment_adds_the_tunable_and_keeps_the_others(pairs):
    others = [f"{n}={v}" for n, v in pairs if n != hp.TUNABLE]
    environ = {"PATH": "/bin"}
    if others:
        environ["GLIBC_TUNABLES"] = ":".join(others)
    before = dict(environ)
    env = hugepage_environment(environ)
    assert environ == before  # a copy: the caller's mapping is untouched
    assert env["PATH"] == "/bin"
    assert env["GLIBC_TUNABLES"].split(":") == [*others, f"{hp.TUNABLE}=1"]


@pytest.mark.parametrize("choice", ["0", "1"])
def test_hugepage_environment_keeps_the_users_own_choice(choice):
    environ = {"GLIBC_TUNABLES": f"glibc.malloc.arena_max=2:{hp.TUNABLE}={choice}"}
    assert hugepage_environment(environ) == environ


def test_hugepage_environment_defaults_to_this_process(monkeypatch):
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=2")
    expected = f"glibc.malloc.arena_max=2:{hp.TUNABLE}=1"
    assert hugepage_environment()["GLIBC_TUNABLES"] == expected


@pytest.mark.parametrize(
    "thp, glibc, tunables, pays",
    [
        ("madvise", (2, 36), None, True),
        ("madvise", (2, 35), "glibc.malloc.arena_max=2", True),
        ("madvise", (3, 0), None, True),
        ("madvise", (2, 34), None, False),  # no hugetlb tunable before 2.35
        ("always", (2, 36), None, False),  # every large mapping has them already
        ("never", (2, 36), None, False),
        (None, (2, 36), None, False),  # not Linux
        ("madvise", None, None, False),  # not glibc (musl, macOS)
        ("madvise", (2, 36), f"{hp.TUNABLE}=1", False),  # started with it already
        ("madvise", (2, 36), f"{hp.TUNABLE}=0", False),  # the user said no
    ],
)
def test_hugepages_pay(thp, glibc, tunables, pays):
    environ = {} if tunables is None else {"GLIBC_TUNABLES": tunables}
    assert hugepages_pay(environ, thp=thp, glibc=glibc) is pays


class _Exec(Exception):
    pass


def _capture_exec(monkeypatch, pays: bool):
    calls = []

    def execve(path, argv, env):
        calls.append((path, argv, env))
        raise _Exec  # execve does not return

    monkeypatch.setattr(hp.os, "execve", execve)
    monkeypatch.setattr(hp, "hugepages_pay", lambda: pays)
    return calls


def test_restart_replaces_the_process_with_the_tunable(monkeypatch):
    calls = _capture_exec(monkeypatch, pays=True)
    monkeypatch.delenv(hp.OPT_OUT, raising=False)
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=2")
    with pytest.raises(_Exec):
        restart_with_hugepages(["/venv/bin/python", "-X", "dev", "/venv/bin/codonnt-eqx", "embed"])
    ((path, argv, env),) = calls
    assert path == sys.executable
    assert argv == [sys.executable, "-X", "dev", "/venv/bin/codonnt-eqx", "embed"]
    assert env["GLIBC_TUNABLES"] == f"glibc.malloc.arena_max=2:{hp.TUNABLE}=1"


@pytest.mark.parametrize("pays, opt_out", [(False, None), (True, "0"), (False, "0")])
def test_restart_does_nothing_where_it_does_not_pay_or_is_refused(monkeypatch, pays, opt_out):
    calls = _capture_exec(monkeypatch, pays=pays)
    if opt_out is None:
        monkeypatch.delenv(hp.OPT_OUT, raising=False)
    else:
        monkeypatch.setenv(hp.OPT_OUT, opt_out)
    assert restart_with_hugepages(["python", "x"]) is None
    assert calls == []


@pytest.mark.parametrize(
    "argv, restarts",
    [
        (["codonnt-eqx", "pretrain", "--config", "c.toml"], True),
        (["codonnt-eqx", "--device", "cpu", "embed", "x.fa"], True),
        (["codonnt-eqx", "probe", "x"], True),
        (["codonnt-eqx", "--help"], False),
        (["codonnt-eqx", "plan", "--size", "50m"], False),
        (["codonnt-eqx", "tokenize", "x.fa"], False),
    ],
)
def test_the_command_line_restarts_only_for_commands_that_compute(monkeypatch, argv, restarts):
    restarted = []
    monkeypatch.setattr(cli_main, "restart_with_hugepages", lambda: restarted.append(True))
    monkeypatch.setattr(cli_main, "main", lambda: 0)
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_:
        cli_main.run()
    assert exit_.value.code == 0
    assert restarted == ([True] if restarts else [])


def test_restart_goes_on_in_this_process_when_exec_fails(monkeypatch):
    def execve(path, argv, env):
        raise PermissionError("not here")

    monkeypatch.setattr(hp.os, "execve", execve)
    monkeypatch.setattr(hp, "hugepages_pay", lambda: True)
    monkeypatch.delenv(hp.OPT_OUT, raising=False)
    assert restart_with_hugepages(["python", "x"]) is None


# A child that mallocs and touches 64 MiB and prints how much of its memory is in huge pages.
_CHILD = r"""
import ctypes
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
size = 64 << 20
p = libc.malloc(size)
ctypes.memset(p, 1, size)
with open("/proc/self/smaps_rollup") as f:
    kib = [int(line.split()[1]) for line in f if line.startswith("AnonHugePages:")]
print(kib[0] if kib else -1)
"""


def _huge_kib(env) -> int:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, check=True
    )
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not hugepages_pay(), reason="needs glibc >= 2.35 and THP in madvise mode")
def test_the_environment_gives_mallocs_huge_pages_where_it_pays():
    without = {k: v for k, v in hugepage_environment().items() if k != "GLIBC_TUNABLES"}
    with_ = hugepage_environment(without)
    huge = _huge_kib(with_)
    if huge < 0:
        pytest.skip("this kernel does not report AnonHugePages")
    assert _huge_kib(without) < 8 << 10  # madvise mode: no huge pages unless asked
    assert huge >= 32 << 10  # most of the 64 MiB, in 2 MiB pages

"""A run's command-line settings, saved in its folder so that `--resume` needs none of them."""

from __future__ import annotations

import argparse
import json
import os
import pathlib
from collections.abc import Mapping
from typing import Any

from ..io import OutputError, atomic_output

SETTINGS_FILE = "settings.json"
_FORMAT = "codonnt-eqx run settings v1"


def given_settings(
    args: argparse.Namespace, names: Mapping[str, Any], *, paths: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The settings among `names` that were on the command line: options whose parser
    default is None are absent unless given, as is an empty `nargs="*"` positional. The
    file lists named in `paths` are made absolute, so a run resumes from anywhere."""
    given = {name: getattr(args, name) for name in names if getattr(args, name) not in (None, [])}
    for name in paths:
        if name in given:
            given[name] = [os.path.abspath(f) for f in given[name]]
    return given


def resolve_settings(
    out: str | os.PathLike,
    given: Mapping[str, Any],
    defaults: Mapping[str, Any],
    *,
    resume: bool,
    log=print,
) -> dict[str, Any]:
    """The run's settings: on a fresh run the defaults overlaid with what was given; on
    `resume` the saved ones overlaid with what was given again (each override reported).
    A run folder saved without settings (an older version, the Python API) resumes from
    the defaults and what is given, as it was started."""
    saved = read_settings(out) if resume else None
    if saved is None:
        if resume:
            log(f"{out}: no {SETTINGS_FILE}; resuming with the options given and the defaults")
        return {**defaults, **given}
    unknown = sorted(set(saved) - set(defaults))
    if unknown:
        raise OutputError(
            f"{pathlib.Path(out) / SETTINGS_FILE}: unknown settings {', '.join(unknown)} "
            "(written by another version?)"
        )
    changed = {k: v for k, v in given.items() if _comparable(saved.get(k)) != _comparable(v)}
    for name, value in changed.items():
        log(f"--resume: {_flag(name)} {_show(value)} overrides the run's {_show(saved.get(name))}")
    return {**defaults, **saved, **given}


def read_settings(out: str | os.PathLike) -> dict[str, Any] | None:
    """The settings saved in run folder `out`, or None where it has none."""
    path = pathlib.Path(out) / SETTINGS_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise OutputError(f"{path}: unreadable run settings ({e})") from None
    if not isinstance(data, dict) or data.get("format") != _FORMAT:
        raise OutputError(f"{path}: not a codonnt-eqx settings file")
    settings = data.get("settings")
    if not isinstance(settings, dict):
        raise OutputError(f"{path}: no settings in it")
    return settings


def save_settings(out: str | os.PathLike, settings: Mapping[str, Any]) -> pathlib.Path:
    """Write `settings` (JSON values) to run folder `out`, atomically."""
    path = pathlib.Path(out) / SETTINGS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"format": _FORMAT, "settings": dict(settings)}, indent=1, sort_keys=True)
    with atomic_output(path) as tmp:
        tmp.write_text(text + "\n")
    return path


def _comparable(value):
    return list(value) if isinstance(value, tuple) else value


def _flag(name: str) -> str:
    return "FASTA" if name == "fasta" else "--" + name.replace("_", "-")


def _show(value) -> str:
    if isinstance(value, list | tuple):
        return " ".join(str(v) for v in value)
    return "(unset)" if value is None else str(value)

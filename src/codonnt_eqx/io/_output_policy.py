"""One output policy for every command: an output never replaces one of its inputs, and a run
folder that already holds a run is only reused when the caller says so."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterable

from ..errors import InputError


class OutputError(InputError):
    """An output that would clobber an input or an earlier run."""


def _same(a: pathlib.Path, b: pathlib.Path) -> bool:
    try:
        if os.path.samefile(a, b):  # hard links and symbolic links included
            return True
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def _given(inputs: Iterable[str | os.PathLike | None]) -> list[str | os.PathLike]:
    return [i for i in inputs if i is not None and str(i) != "-"]


def check_output_not_input(
    output: str | os.PathLike, inputs: Iterable[str | os.PathLike | None]
) -> None:
    """`OutputError` if the file `output` is (or links to, or is linked from) any of `inputs`;
    `-` (standard input) and None are skipped."""
    for given in _given(inputs):
        if _same(pathlib.Path(output), pathlib.Path(given)):
            raise OutputError(
                f"{output}: the output would replace the input {given}; write it elsewhere"
            )


def check_folder_not_input(
    folder: str | os.PathLike,
    inputs: Iterable[str | os.PathLike | None],
    writes: Iterable[str],
) -> None:
    """`OutputError` if a run in `folder`, writing the files and folders named in `writes`,
    would replace one of `inputs` (or an input is the folder itself)."""
    folder = pathlib.Path(folder)
    targets = [os.path.realpath(folder / name) for name in writes]
    for given in _given(inputs):
        source = os.path.realpath(given)
        hit = source == os.path.realpath(folder) or any(
            source == t or source.startswith(t + os.sep) for t in targets
        )
        if hit or any(_same(folder / name, pathlib.Path(given)) for name in writes):
            raise OutputError(
                f"{folder}: the run would replace its input {given}; choose another folder"
            )


def claim_run_folder(
    folder: str | os.PathLike,
    markers: Iterable[str],
    *,
    overwrite: bool = False,
    resume: bool = False,
    create: bool = True,
) -> pathlib.Path:
    """Create `folder` for a run, refusing one that already holds a run (any of the file
    names in `markers`) unless `overwrite` (its run's files are then replaced as the new run
    writes them) or `resume` (the caller continues it). Creates it unless `create` is False
    (a check before any work, so that a failure later leaves no empty folder behind)."""
    folder = pathlib.Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder}: exists and is not a folder")
    found = [m for m in markers if (folder / m).exists()] if folder.is_dir() else []
    if found and not (overwrite or resume):
        raise OutputError(
            f"{folder} already holds a run ({', '.join(found)}); pass --overwrite (overwrite=True) "
            "to replace it, or choose another folder"
        )
    if create:
        folder.mkdir(parents=True, exist_ok=True)
    return folder

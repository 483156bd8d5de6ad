"""Writing a checkpoint folder all-or-nothing: a save either completes or leaves the previous
checkpoint in place, loadable, with no temporary files behind."""

from __future__ import annotations

import os
import pathlib
import secrets
import shutil
from collections.abc import Callable


class _Stranded(OSError):
    """Restoring the previous files failed too; they are kept where the message says."""


def _fresh_folder(parent: pathlib.Path, stem: str) -> pathlib.Path:
    while True:
        # mkdir, not tempfile.mkdtemp: its 0700 mode would become the saved folder's.
        folder = parent / f"{stem}-{secrets.token_hex(4)}"
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue


def replace_files(
    target: pathlib.Path,
    write: Callable[[pathlib.Path], None],
    previous: Callable[[pathlib.Path], list[pathlib.Path]],
) -> None:
    """Have `write(folder)` write a checkpoint into an empty staging folder, then put its files
    into `target`, retiring the files `previous(target)` names (those of an older checkpoint)
    and any of the same names. Other files in `target` (a README, a jax_model/ folder) stay.

    A new `target` is staged beside it and renamed into place in one step. An existing one is
    staged inside it (the same filesystem even when it is a mount point); its old files are
    moved aside, the new moved in, and on any failure the old moved back. Only a crash in the
    middle of those renames can leave it incomplete.
    """
    target = pathlib.Path(os.path.abspath(target))
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(f"{target}: exists and is not a folder")
    if not target.exists():
        missing = [p for p in (target.parent, *target.parent.parents) if not p.exists()]
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = _fresh_folder(target.parent, f".{target.name}.saving")
        try:
            write(staging)
            os.rename(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            for folder in missing:  # innermost first; only the ones this call made
                try:
                    folder.rmdir()
                except OSError:
                    break
            raise
        return
    staging = _fresh_folder(target, ".codonnt-saving")
    try:
        new, old = staging / "new", staging / "old"
        new.mkdir()
        old.mkdir()
        write(new)
        names = sorted(os.listdir(new))
        for name in names:
            if (target / name).is_dir() and not (target / name).is_symlink():
                raise IsADirectoryError(f"{target / name}: a folder where a file must go")
        retire = dict.fromkeys([*previous(target), *(target / name for name in names)])
        _swap(target, new, old, names, [f for f in retire if os.path.lexists(f)])
    except _Stranded:
        raise  # the staging folder holds the previous files now: keep it
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(staging, ignore_errors=True)


def _swap(target, new, old, names, retire) -> None:
    moved_out, moved_in = [], []
    try:
        for i, file in enumerate(retire):
            os.replace(file, old / str(i))
            moved_out.append((file, old / str(i)))
        for name in names:
            os.replace(new / name, target / name)
            moved_in.append(target / name)
    except BaseException as error:
        try:
            for file in moved_in:
                os.unlink(file)
            for file, backup in reversed(moved_out):
                os.replace(backup, file)
        except OSError as e:
            raise _Stranded(
                f"saving into {target} failed ({error!r}), and so did putting its previous "
                f"files back ({e}); they are in {old}"
            ) from error
        raise

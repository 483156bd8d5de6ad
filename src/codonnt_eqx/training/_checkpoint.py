"""Training checkpoints with orbax: parameters, optimiser state, step and the run's identity.

The data position and the random keys are functions of (seed, step), so the step is all the
pipeline state there is. Orbax writes each checkpoint into a temporary folder and renames it
when complete, so a crash mid-save leaves the previous checkpoints as they were, and
`latest_step` only ever sees finished ones.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any, cast

import equinox as eqx
import jax

from ..errors import InputError


class TrainingCheckpointError(InputError):
    """A checkpoint folder that cannot be resumed from (another run's, or unreadable)."""


class TrainingCheckpoints:
    """The checkpoints of one run in `directory`, keeping the last `keep`.

    **Arguments:**

    - `directory`: the folder (created if missing).
    - `identity`: JSON-able description of what the checkpoints must match to be resumed
      (model config, tokenizer, training recipe); a folder written with another identity is
      refused with `TrainingCheckpointError` instead of loading mismatched arrays.
    - `keep`: how many recent checkpoints to keep.
    """

    def __init__(self, directory: str | os.PathLike, identity: dict[str, Any], *, keep: int = 3):
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.directory = pathlib.Path(directory).absolute()
        self.identity = json.loads(json.dumps(identity))  # what a JSON round trip gives back
        ocp = _orbax()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, enable_async_checkpointing=False
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def save(self, step: int, state, extra: dict[str, Any] | None = None) -> None:
        """Save the arrays of `state` (any pytree: model, optimiser state, ...) at `step`."""
        ocp = _orbax()
        leaves = jax.tree.leaves(eqx.filter(state, eqx.is_array))
        meta = {"identity": self.identity, "step": step, **(extra or {})}
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(leaves), meta=ocp.args.JsonSave(meta)
            ),
            force=True,
        )
        self._manager.wait_until_finished()

    def restore(self, step: int, like):
        """`like` (same structure, e.g. a freshly initialised and sharded state) with its arrays
        replaced by the ones saved at `step`, placed with `like`'s shardings. Returns
        `(state, meta)`."""
        meta = self.metadata(step)
        ocp = _orbax()
        arrays, static = eqx.partition(like, eqx.is_array)
        leaves, treedef = jax.tree.flatten(arrays)
        abstract = [jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding) for x in leaves]
        try:
            restored = self._manager.restore(
                step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
            )
        except Exception as e:  # orbax and tensorstore raise many kinds for a damaged folder
            raise TrainingCheckpointError(
                f"{self.directory / str(step)}: corrupt checkpoint, cannot restore "
                f"({type(e).__name__}: {_short(e)})"
            ) from e
        state = eqx.combine(jax.tree.unflatten(treedef, list(cast(Any, restored).state)), static)
        return state, meta

    def metadata(self, step: int) -> dict[str, Any]:
        """The JSON saved with `step`, after checking it belongs to this run."""
        ocp = _orbax()
        try:
            restored = self._manager.restore(
                step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())
            )
            meta = cast(Any, restored).meta
        except Exception as e:  # orbax and tensorstore raise many kinds for a damaged folder
            raise TrainingCheckpointError(
                f"{self.directory / str(step)}: corrupt checkpoint, unreadable metadata "
                f"({type(e).__name__}: {_short(e)})"
            ) from e
        if not isinstance(meta, dict):
            raise TrainingCheckpointError(
                f"{self.directory / str(step)}: corrupt checkpoint, metadata is not an object"
            )
        if meta.get("identity") != self.identity:
            diff = _difference(meta.get("identity"), self.identity)
            raise TrainingCheckpointError(
                f"{self.directory}: these checkpoints belong to a different run ({diff}); "
                "resume with the same settings or choose another output folder"
            )
        return meta

    def close(self) -> None:
        self._manager.close()


def _short(error: Exception) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= 300 else text[:297] + "..."


def _orbax():
    try:
        import orbax.checkpoint as ocp  # optional (the train extra), slow to import
    except ImportError:
        raise ImportError(
            'training checkpoints need orbax-checkpoint: pip install "codonnt-eqx[train]"'
        ) from None
    return ocp


def _difference(saved, wanted, prefix: str = "") -> str:
    """The first key where two identities differ, for the error message."""
    if isinstance(saved, dict) and isinstance(wanted, dict):
        for key in sorted(set(saved) | set(wanted)):
            if saved.get(key) != wanted.get(key):
                return _difference(saved.get(key), wanted.get(key), f"{prefix}{key}.")
    return f"{prefix.rstrip('.') or 'identity'}: saved {saved!r}, now {wanted!r}"

"""What every training loop here writes as it runs, shared by pretraining and fine-tuning: the
metrics log (metrics.jsonl) and the progress bar."""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any


class MetricsLog:
    """metrics.jsonl: one JSON object per line, appended and flushed as it comes.

    - `path`: the file, or None to write nothing (e.g. a fine-tuning run without `out`, or a
      process other than the lead one).
    - `resume_step`: None starts the file afresh; a step keeps the lines up to that step and
      drops the rest (a run that died after its last checkpoint redoes them).
    """

    def __init__(self, path: str | os.PathLike | None, resume_step: int | None = None):
        self.path = None if path is None else pathlib.Path(path)
        if self.path is None:
            return
        kept = []
        if resume_step is not None and self.path.exists():
            kept = [
                line
                for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= resume_step
            ]
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        os.replace(tmp, self.path)

    def __call__(self, record: dict[str, Any]) -> None:
        if self.path is not None:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")


def progress_bar(total: int, *, initial: int = 0, enabled: bool = True) -> Any:
    """A tqdm bar of `total` steps on stderr, or None when not `enabled`."""
    if not enabled:
        return None
    from tqdm.auto import tqdm  # optional (train/finetune extras): only for the bar

    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)

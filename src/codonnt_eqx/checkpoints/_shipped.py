"""Models that ship inside the package, loadable by name without any download."""

from __future__ import annotations

import importlib.resources
import os
import pathlib

# The default of `codonnt-eqx embed`; its model card is MODEL_CARD.md in its folder.
DEFAULT_MODEL = "codon-nt-mini"
SHIPPED_MODELS: tuple[str, ...] = (DEFAULT_MODEL,)


def shipped_model_path(name: str) -> pathlib.Path:
    """The folder of a shipped model (Hugging Face layout plus MODEL_CARD.md)."""
    if name not in SHIPPED_MODELS:
        raise ValueError(f"no shipped model {name!r}; the package ships {list(SHIPPED_MODELS)}")
    folder = pathlib.Path(str(importlib.resources.files("codonnt_eqx") / "weights" / name))
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"the shipped model {name!r} is missing from {folder}: the package was installed "
            "without its data files (reinstall with pip install codonnt-eqx)"
        )
    return folder


def names_shipped_model(path: str | os.PathLike) -> bool:
    """Whether `from_pretrained(path)` loads a shipped model: `path` is a shipped model's name
    and no file or folder of that name exists (an existing folder wins)."""
    return isinstance(path, str) and path in SHIPPED_MODELS and not os.path.exists(path)

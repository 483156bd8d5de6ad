"""Hugging Face Hub ids (`InstaDeepAI/nucleotide-transformer-v2-50m-3mer-multi-species`) as
checkpoint names: resolved offline from the local Hugging Face cache that every transformers
user already has, and downloaded through `huggingface_hub` (the `hub` extra) when it is
installed and not offline."""

from __future__ import annotations

import os
import pathlib
import re

from ._errors import CheckpointError

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")
_COMMIT = re.compile(r"[0-9a-f]{40}")
# What loading needs, never more: the config and vocabulary, and one copy of the weights, in
# this order of preference (a repository with safetensors never sends its PyTorch or
# TensorFlow copies; an older one with only pytorch_model.bin, or InstaDeep's JAX layout,
# still loads).
NEEDED_FILES = ("config.json", "vocab.txt", "codonnt_tokenizer.json")
WEIGHT_FILES = (
    ("model.safetensors", "model-*.safetensors", "model.safetensors.index.json"),
    ("pytorch_model.bin", "pytorch_model-*.bin", "pytorch_model.bin.index.json"),
    ("jax_model/*",),
)


def looks_like_hub_id(name: object) -> bool:
    """`org/name`, and not a path that exists here (a folder of that name wins)."""
    return (
        isinstance(name, str)
        and _HUB_ID.fullmatch(name) is not None
        and ".." not in name
        and not os.path.exists(name)
    )


def hub_cache() -> pathlib.Path:
    """The Hugging Face hub cache: `HF_HUB_CACHE`, else `HF_HOME/hub`, else
    `$XDG_CACHE_HOME/huggingface/hub` (default `~/.cache/huggingface/hub`)."""
    if os.environ.get("HF_HUB_CACHE"):
        return pathlib.Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return pathlib.Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return pathlib.Path(xdg).expanduser() / "huggingface" / "hub"


def cached_snapshot(repo_id: str, revision: str | None = None) -> pathlib.Path | None:
    """The snapshot folder of `repo_id` at `revision` (a branch, tag or commit; default
    `main`) in the cache's `models--org--name/snapshots/<commit>` layout, or None."""
    org, name = repo_id.split("/")
    folder = hub_cache() / f"models--{org}--{name}"
    revision = revision or "main"
    ref = folder / "refs" / revision
    if ref.is_file():
        commit = ref.read_text(encoding="utf-8").strip()
    elif _COMMIT.fullmatch(revision):
        commit = revision
    else:
        return None
    if not _COMMIT.fullmatch(commit):
        raise CheckpointError(f"{ref}: not a commit hash ({commit[:50]!r})")
    snapshot = folder / "snapshots" / commit
    return snapshot if snapshot.is_dir() else None


def _download_command(repo_id: str, revision: str | None) -> str:
    rev = f" --revision {revision}" if revision else ""
    return f"hf download {repo_id}{rev}"


def resolve_hub_id(repo_id: str, revision: str | None = None) -> pathlib.Path:
    """The local folder of `repo_id`: the cached snapshot, or one downloaded with
    `huggingface_hub.snapshot_download` (only `NEEDED_FILES` and one copy of the weights,
    `WEIGHT_FILES`) when that is installed and `HF_HUB_OFFLINE` is not set. Otherwise
    `CheckpointError` with the command to run."""
    snapshot = cached_snapshot(repo_id, revision)
    if snapshot is not None:
        return snapshot
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    try:
        import huggingface_hub  # optional (the hub extra): downloads only
    except ImportError:
        huggingface_hub = None
    if huggingface_hub is not None and not offline:
        try:
            return _download(huggingface_hub, repo_id, revision)
        except Exception as e:  # no network, no such repository, a gated model, ...
            raise CheckpointError(
                f"{repo_id}: not in the Hugging Face cache ({hub_cache()}) and the download "
                f"failed ({type(e).__name__}: {' '.join(str(e).split())[:200]}); download it "
                f"with: {_download_command(repo_id, revision)}"
            ) from None
    how = "HF_HUB_OFFLINE is set" if offline else "huggingface_hub is not installed"
    raise CheckpointError(
        f"{repo_id}: not in the Hugging Face cache ({hub_cache()}), and {how}; download it "
        f"with: pip install huggingface_hub && {_download_command(repo_id, revision)} "
        "(or pip install 'codonnt-eqx[hub]' to let codonnt-eqx fetch it)"
    )


def _download(huggingface_hub, repo_id: str, revision: str | None) -> pathlib.Path:
    """The config and the first kind of weights of `WEIGHT_FILES` the repository has."""
    path = None
    for i, weights in enumerate(WEIGHT_FILES):
        patterns = [*NEEDED_FILES, *weights] if i == 0 else list(weights)
        path = pathlib.Path(
            huggingface_hub.snapshot_download(repo_id, revision=revision, allow_patterns=patterns)
        )
        if any(any(path.glob(w)) for w in weights):
            return path
    assert path is not None
    return path  # no weights at all: loading says what is missing

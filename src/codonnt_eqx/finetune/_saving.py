"""Saving and reloading what fine-tuning learned: the head and the adapters in one small
safetensors file (plus the whole model, Hugging Face layout, after full fine-tuning)."""

from __future__ import annotations

import json
import os
import pathlib
from typing import cast

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from ..checkpoints import from_pretrained, save_pretrained
from ..model import NucleotideTransformer
from ..tokenizers import Tokenizer
from ._heads import Head, SequenceHead, TokenHead
from ._ia3 import add_ia3
from ._lora import add_lora
from ._predictor import Finetuned
from ._trainable import Mode, trainable_filter

ADAPTER_FILE = "adapter.safetensors"
_METADATA_KEY = "codonnt_eqx.finetune"


def _saved_part(finetuned: Finetuned, mode: str):
    """The arrays that go into the adapter file: adapters (IA3 / LoRA) and the head."""
    spec = trainable_filter(finetuned, cast(Mode, "probe" if mode == "full" else mode))
    head_spec = jax.tree.map(eqx.is_inexact_array, finetuned.head)
    spec = eqx.tree_at(lambda f: f.head, spec, head_spec)
    return eqx.filter(finetuned, spec)


def _named(tree) -> dict[str, np.ndarray]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}


def save_finetuned(
    folder: str | os.PathLike, finetuned: Finetuned, tokenizer: Tokenizer, info: dict
) -> pathlib.Path:
    """Write `folder/adapter.safetensors` (head and adapter arrays, with `info` as metadata)
    and, when `info["mode"] == "full"`, the fine-tuned model under `folder/model/`.

    `info` must hold `mode`, `head` (`kind`, `in_features`, `out_features`, `hidden`), `layer`
    and, for LoRA, `lora` (`rank`, `alpha`, `targets`); `finetune` writes it.
    """

    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = _named(_saved_part(finetuned, info["mode"]))
    tmp = folder / (ADAPTER_FILE + ".tmp")
    save_file(tensors, str(tmp), metadata={_METADATA_KEY: json.dumps(info)})
    os.replace(tmp, folder / ADAPTER_FILE)
    if info["mode"] == "full":
        save_pretrained(finetuned.model, tokenizer, folder / "model")
    return folder / ADAPTER_FILE


def _template(base: NucleotideTransformer, info: dict, special_ids) -> Finetuned:
    mode = info["mode"]
    if mode == "ia3":
        base = add_ia3(base)
    elif mode == "lora":
        lora = info["lora"]
        base = add_lora(
            base,
            rank=int(lora["rank"]),
            alpha=float(lora["alpha"]),
            targets=tuple(lora["targets"]),
            key=jr.key(0),  # replaced by the saved matrices
        )
    h = info["head"]
    head = Head(int(h["in_features"]), int(h["out_features"]), h["hidden"], key=jr.key(0))
    wrapped = SequenceHead(head) if h["kind"] == "sequence" else TokenHead(head)
    return Finetuned(base, wrapped, int(info["layer"]), tuple(special_ids))


def load_finetuned(
    folder: str | os.PathLike, base: NucleotideTransformer, tokenizer: Tokenizer
) -> tuple[Finetuned, dict]:
    """Rebuild a fine-tuned predictor from `save_finetuned`'s folder.

    **Arguments:**

    - `folder`: the folder with `adapter.safetensors` (and `model/` after full fine-tuning).
    - `base`: the base model the adapters were trained on (ignored after full fine-tuning,
      whose model is read from `folder/model`). It is not modified.
    - `tokenizer`: the model's tokenizer (its special ids are pooled out).

    **Returns:** `(finetuned, info)`. Every saved array must match the rebuilt structure by
    name, shape and dtype, or `ValueError` says which does not.
    """

    folder = pathlib.Path(folder)
    with safe_open(str(folder / ADAPTER_FILE), framework="numpy") as f:
        metadata = f.metadata() or {}
        if _METADATA_KEY not in metadata:
            raise ValueError(f"{folder / ADAPTER_FILE} has no fine-tuning metadata")
        info = json.loads(metadata[_METADATA_KEY])
        tensors = {name: f.get_tensor(name) for name in f.keys()}
    if info["mode"] == "full":
        base, _ = from_pretrained(folder / "model")
    template = _template(base, info, sorted(tokenizer.special_ids))
    saved = _saved_part(template, info["mode"])
    leaves, treedef = jax.tree_util.tree_flatten_with_path(saved)
    names = [jax.tree_util.keystr(path) for path, _ in leaves]
    missing = sorted(set(names) - set(tensors))
    extra = sorted(set(tensors) - set(names))
    if missing or extra:
        raise ValueError(
            f"{folder / ADAPTER_FILE} does not match the {info['mode']} structure: "
            f"missing {missing[:3]}, unexpected {extra[:3]}"
        )
    new = []
    for name, (_, leaf) in zip(names, leaves, strict=True):
        array = tensors[name]
        if array.shape != leaf.shape or array.dtype != leaf.dtype:
            raise ValueError(
                f"{name}: saved {array.dtype}{list(array.shape)}, the model needs "
                f"{leaf.dtype}{list(leaf.shape)}"
            )
        new.append(jnp.asarray(array))
    return eqx.combine(jax.tree_util.tree_unflatten(treedef, new), template), info

"""Saving and reloading what fine-tuning learned: the head and the adapters in one small
safetensors file (plus the whole model, Hugging Face layout, after full fine-tuning)."""

from __future__ import annotations

import json
import math
import os
import pathlib
import warnings
from typing import NoReturn, cast

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from ..checkpoints import from_pretrained, save_pretrained
from ..errors import InputError
from ..io import atomic_output
from ..model import NucleotideTransformer
from ..tokenizers import Tokenizer
from ._adapter import Adapter
from ._finetuned import Finetuned
from ._heads import Head, SequenceHead, TokenHead
from ._ia3 import add_ia3
from ._lora import LORA_TARGETS, add_lora
from ._provenance import check_same, tokenizer_digest, weights_digest
from ._tasks import TASK_KINDS
from ._trainable import MODES, Mode, trainable_filter

ADAPTER_FILE = "adapter.safetensors"
_METADATA_KEY = "codonnt_eqx.finetune"


def _saved_part(finetuned: Finetuned, mode: str):
    """The arrays that go into the adapter file: adapters (IA3 / LoRA) and the head."""
    spec = trainable_filter(finetuned, cast(Mode, "probe" if mode == "full" else mode))
    head_spec = jax.tree.map(eqx.is_inexact_array, finetuned.head)
    spec = eqx.tree_at(lambda f: f.head, spec, head_spec)
    return eqx.filter(finetuned, spec)


def _base_of(model):
    """`model` without its adapters: the weights an adapter file's digest names."""
    is_adapter = lambda x: isinstance(x, Adapter)  # noqa: E731
    return jax.tree.map(lambda x: x.base if is_adapter(x) else x, model, is_leaf=is_adapter)


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
    base = finetuned.model if info["mode"] == "full" else _base_of(finetuned.model)
    info = {
        **info,
        "provenance": {
            **(info.get("provenance") or {}),
            "base_weights": weights_digest(base),
            "tokenizer": tokenizer_digest(tokenizer),
        },
    }
    with atomic_output(folder / ADAPTER_FILE) as tmp:
        save_file(tensors, str(tmp), metadata={_METADATA_KEY: json.dumps(info)})
    if info["mode"] == "full":
        save_pretrained(finetuned.model, tokenizer, folder / "model")
    return folder / ADAPTER_FILE


class AdapterError(InputError):
    """An adapter folder that cannot be loaded: unreadable, with metadata of the wrong type
    or range, or arrays that do not fit the structure the metadata describes."""


def _mode_of(raw: str) -> object:
    """The metadata's `mode`, or None for metadata `_read_info` will reject anyway."""
    try:
        info = json.loads(raw)
    except (json.JSONDecodeError, RecursionError):
        return None
    return info.get("mode") if isinstance(info, dict) else None


def _read_info(raw: str, source: str, base: NucleotideTransformer) -> dict:
    """The adapter metadata, every field type- and range-checked against `base`."""
    try:
        info = json.loads(raw)
    except (json.JSONDecodeError, RecursionError) as e:
        raise AdapterError(f"{source}: fine-tuning metadata is not JSON ({e})") from None

    def fail(field: str, wanted: str, value=None) -> NoReturn:
        got = "" if value is None else f", got {value!r}"[:120]
        raise AdapterError(f"{source}: metadata field {field} must be {wanted}{got}")

    def positive(value, field: str, low: int = 1) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            fail(field, f"an integer >= {low}", value)
        return value

    def number(value) -> bool:
        real = isinstance(value, int | float) and not isinstance(value, bool)
        return real and math.isfinite(value)

    if not isinstance(info, dict):
        fail("(top level)", "an object")
    if info.get("mode") not in MODES:
        fail("mode", f"one of {list(MODES)}", info.get("mode"))
    layers = base.config.num_layers
    layer = info.get("layer")
    if isinstance(layer, bool) or not isinstance(layer, int) or not -layers - 1 <= layer <= layers:
        fail("layer", f"an integer in -{layers + 1}..{layers} for this {layers}-layer model", layer)
    head = info.get("head")
    if not isinstance(head, dict):
        fail("head", "an object")
    if head.get("kind") not in ("sequence", "token"):
        fail("head.kind", "'sequence' or 'token'", head.get("kind"))
    task: dict = info["task"] if isinstance(info.get("task"), dict) else {}
    task_kind = task.get("kind")
    if task_kind is not None:
        if task_kind not in TASK_KINDS:
            fail("task.kind", f"one of {list(TASK_KINDS)}", task_kind)
        wanted_head = "token" if task_kind == "per-residue" else "sequence"
        if head["kind"] != wanted_head:
            fail("head.kind", f"{wanted_head!r} for a {task_kind} task", head["kind"])
    if head.get("in_features") != base.config.embed_dim:
        fail(
            "head.in_features",
            f"this model's width {base.config.embed_dim}",
            head.get("in_features"),
        )
    positive(head.get("out_features"), "head.out_features")
    if "hidden" not in head:
        fail("head.hidden", "present (an integer, or null for a linear head)")
    if head["hidden"] is not None:
        positive(head["hidden"], "head.hidden")
    classes = task.get("classes")
    if classes is not None and (
        not isinstance(classes, list)
        or not all(isinstance(c, str) for c in classes)
        or len(classes) != head["out_features"]
    ):
        fail("task.classes", f"a list of {head['out_features']} class names", classes)
    if info["mode"] == "lora":
        lora = info.get("lora")
        if not isinstance(lora, dict):
            fail("lora", "an object")
        positive(lora.get("rank"), "lora.rank")
        alpha = lora.get("alpha")
        if (
            isinstance(alpha, bool)
            or not isinstance(alpha, int | float)
            or not math.isfinite(alpha)
            or alpha <= 0
        ):
            fail("lora.alpha", "a positive number", alpha)
        targets = lora.get("targets")
        if (
            not isinstance(targets, list)
            or not targets
            or not all(isinstance(t, str) and t in LORA_TARGETS for t in targets)
        ):
            fail("lora.targets", f"a list of some of {list(LORA_TARGETS)}", targets)
    for field in ("label_mean", "label_std"):
        value = info.get(field, 0.0 if field == "label_mean" else 1.0)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            fail(field, "a finite number", value)
    if not info.get("label_std", 1.0) > 0:
        fail("label_std", "positive", info.get("label_std"))
    return info


def _adapter_header(folder: pathlib.Path) -> tuple[str, dict, dict]:
    """(source, metadata, {array name: (shape, dtype)}) of a run folder's adapter file."""
    file = folder / ADAPTER_FILE
    source = str(file)
    if not file.is_file():
        raise AdapterError(f"{source}: no such file (not a fine-tuning run folder?)")
    try:
        with safe_open(source, framework="numpy") as f:
            metadata = f.metadata() or {}
            saved_shapes = {}
            for name in f.keys():
                piece = f.get_slice(name)
                saved_shapes[name] = (tuple(piece.get_shape()), str(piece.get_dtype()))
    except Exception as e:  # safetensors raises its own errors for a corrupt header
        raise AdapterError(f"{source}: not a readable safetensors file ({e})") from None
    if _METADATA_KEY not in metadata:
        raise AdapterError(f"{source} has no fine-tuning metadata")
    return source, metadata, saved_shapes


def is_finetuned_folder(path: str | os.PathLike) -> bool:
    """Whether `path` is a folder `save_finetuned` wrote (it holds `adapter.safetensors`)."""
    return (pathlib.Path(path) / ADAPTER_FILE).is_file()


def read_finetuned_info(folder: str | os.PathLike) -> dict:
    """The metadata of a fine-tuning run folder without loading any weights: `mode`, `head`,
    `layer`, `task` (name, kind, classes), `base_model` (the checkpoint it was trained on, as
    named then) and `provenance`. Fields are checked when `load_finetuned` reads them against
    a model; here only that the metadata is a JSON object with a known `mode`."""
    source, metadata, _ = _adapter_header(pathlib.Path(folder))
    try:
        info = json.loads(metadata[_METADATA_KEY])
    except (json.JSONDecodeError, RecursionError) as e:
        raise AdapterError(f"{source}: fine-tuning metadata is not JSON ({e})") from None
    if not isinstance(info, dict) or info.get("mode") not in MODES:
        raise AdapterError(f"{source}: metadata without a known mode (one of {list(MODES)})")
    return info


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
    folder: str | os.PathLike,
    base: NucleotideTransformer,
    tokenizer: Tokenizer,
    *,
    check_base: bool = True,
) -> tuple[Finetuned, dict]:
    """Rebuild a fine-tuned predictor from `save_finetuned`'s folder.

    **Arguments:**

    - `folder`: the folder with `adapter.safetensors` (and `model/` after full fine-tuning).
    - `base`: the base model the adapters were trained on (ignored after full fine-tuning,
      whose model is read from `folder/model`). It is not modified.
    - `tokenizer`: the model's tokenizer (its special ids are pooled out).
    - `check_base`: refuse a `base` or `tokenizer` whose digest differs from the one the
      adapter recorded (`ProvenanceError`, both digests named). Turn off only to apply a head
      to another model on purpose.

    **Returns:** `(finetuned, info)`. Every metadata field is type- and range-checked and every
    saved array must match the structure it describes by name, shape and dtype (compared
    before anything is allocated), or `AdapterError` says which does not.
    """

    folder = pathlib.Path(folder)
    source, metadata, saved_shapes = _adapter_header(folder)
    if _mode_of(metadata[_METADATA_KEY]) == "full":  # the model is the folder's: check on it
        base, _ = from_pretrained(folder / "model", tokenizer_classes=[type(tokenizer)])
    info = _read_info(metadata[_METADATA_KEY], source, base)
    provenance: dict = info["provenance"] if isinstance(info.get("provenance"), dict) else {}
    if check_base:
        if not provenance:
            warnings.warn(
                f"{source} records no digest of its base model (written by an older version); "
                "it is loaded unchecked",
                stacklevel=2,
            )
        elif info["mode"] != "full":
            check_same(
                "base weights",
                provenance.get("base_weights"),
                weights_digest(base),
                source,
                "load it with the model it was trained on (check_base=False to override)",
            )
        check_same(
            "tokenizer",
            provenance.get("tokenizer"),
            tokenizer_digest(tokenizer),
            source,
            "load it with the model's own tokenizer",
        )
    special = sorted(tokenizer.special_ids)
    # Shapes first, from the metadata and the file header alone: a corrupt or hostile rank
    # or width is refused before anything of that size is allocated.
    shaped = eqx.filter_eval_shape(
        lambda b: _saved_part(_template(b, info, special), info["mode"]), base
    )
    leaves = jax.tree_util.tree_flatten_with_path(shaped)[0]
    wanted = {
        jax.tree_util.keystr(path): (tuple(leaf.shape), _dtype_name(leaf.dtype))
        for path, leaf in leaves
    }
    missing = sorted(set(wanted) - set(saved_shapes))
    extra = sorted(set(saved_shapes) - set(wanted))
    if missing or extra:
        raise AdapterError(
            f"{source} does not match the {info['mode']} structure its metadata describes: "
            f"missing {missing[:3]}, unexpected {extra[:3]}"
        )
    for name, (shape, dtype) in wanted.items():
        if saved_shapes[name] != (shape, dtype):
            s_shape, s_dtype = saved_shapes[name]
            raise AdapterError(
                f"{source}: {name} is saved as {s_dtype}{list(s_shape)}, the metadata and model "
                f"need {dtype}{list(shape)}"
            )
    template = _template(base, info, special)
    saved = _saved_part(template, info["mode"])
    leaves, treedef = jax.tree_util.tree_flatten_with_path(saved)
    try:
        with safe_open(source, framework="numpy") as f:
            new = [jnp.asarray(f.get_tensor(jax.tree_util.keystr(path))) for path, _ in leaves]
    except Exception as e:
        raise AdapterError(f"{source}: unreadable arrays ({e})") from None
    for (path, _), array in zip(leaves, new, strict=True):
        if not bool(jnp.all(jnp.isfinite(array))):
            raise AdapterError(f"{source}: {jax.tree_util.keystr(path)} holds NaN or infinity")
    return eqx.combine(jax.tree_util.tree_unflatten(treedef, new), template), info


_SAFETENSORS_DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "float64": "F64"}


def _dtype_name(dtype) -> str:
    """A dtype as safetensors' header names it."""
    name = np.dtype(dtype).name
    return _SAFETENSORS_DTYPES.get(name, name)

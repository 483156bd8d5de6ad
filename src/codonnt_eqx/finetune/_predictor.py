"""Predictions of a fine-tuned model on sequences of any length, batched and windowed like
`Embedder`: one value or class (with probabilities) per sequence, or one per codon."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..checkpoints import from_pretrained
from ..inference import Embedder, InvalidRecordError, NamedSequence
from ..model import NucleotideTransformer
from ..tokenizers import Tokenizer
from ._finetuned import Finetuned
from ._heads import TokenHead
from ._saving import AdapterError, load_finetuned, read_finetuned_info

_ROWS = 256  # per-token heads run on [multiple of this, embed] blocks: few compiled shapes


@dataclass(frozen=True)
class Prediction:
    """One sequence's prediction.

    - `name`: the record's name.
    - `prediction`: regression, a float in the label's units; classification, the class
      name; per-residue, an array of class names, one per codon token.
    - `probabilities`: classification `[classes]`, per-residue `[tokens, classes]` (softmax);
      None for regression.
    - `spans`: per-residue, `[tokens, 2]` nucleotide start/end of each token; else None.
    """

    name: str
    prediction: float | str | np.ndarray
    probabilities: np.ndarray | None = None
    spans: np.ndarray | None = None


class Predictor:
    """A fine-tuned model (frozen probe, IA³, LoRA or full) ready to predict.

    `Predictor.load(run_folder)` rebuilds it from a `finetune` run folder, on the base model
    the run recorded (or the one given); calling it on sequences (strings or FASTA records)
    yields one `Prediction` each, in order. Long sequences are cut into windows like
    `Embedder`'s and pooled over the whole sequence, so a sequence that fits one window gets
    exactly `Finetuned`'s output.

    **Arguments:**

    - `finetuned`: the `Finetuned` module, e.g. from `load_finetuned`.
    - `tokenizer`: its tokenizer.
    - `info`: the run's metadata (`load_finetuned`'s second value): task kind and classes,
      the regression label's mean and standard deviation.
    - `embedder_options`: `Embedder`'s batching, window, run and device options
      (`batch_tokens`, `window`, `overlap`, `attention`, `dtype`, `devices`, ...).

    ```python
    predictor = Predictor.load("runs/gfp-ia3")
    for p in predictor(read_fasta("examples/cds.fasta")):
        print(p.name, p.prediction)
    ```
    """

    def __init__(self, finetuned: Finetuned, tokenizer: Tokenizer, info: dict, **embedder_options):
        task = info.get("task") if isinstance(info.get("task"), dict) else {}
        assert isinstance(task, dict)
        per_token = isinstance(finetuned.head, TokenHead)
        self.kind: str = task.get("kind") or (
            "per-residue"
            if per_token
            else "regression"
            if _outputs(finetuned) == 1
            else "classification"
        )
        classes = task.get("classes")
        if self.kind != "regression" and not classes:
            classes = [str(i) for i in range(_outputs(finetuned))]
        self.classes: tuple[str, ...] | None = tuple(classes) if classes else None
        self.task_name: str = task.get("name") or ""
        self.info, self.finetuned, self.tokenizer = info, finetuned, tokenizer
        self._mean = float(info.get("label_mean", 0.0))
        self._std = float(info.get("label_std", 1.0))
        layers = finetuned.model.config.num_layers
        layer = finetuned.layer % (layers + 1)
        self.embedder = Embedder(
            finetuned.model,
            tokenizer,
            layers=None if layer == layers else layer,
            pooling="none" if per_token else "mean",
            **embedder_options,
        )
        self._head = eqx.filter_jit(lambda head, x: jax.vmap(head)(x))

    @classmethod
    def load(
        cls,
        folder: str | os.PathLike,
        base: NucleotideTransformer | None = None,
        tokenizer: Tokenizer | None = None,
        *,
        checkpoint: str | os.PathLike | None = None,
        check_base: bool = True,
        strict: bool = False,
        **embedder_options,
    ) -> Predictor:
        """The predictor of a `finetune` run folder (see `load_run` for the arguments);
        `embedder_options` as for the constructor."""
        finetuned, tokenizer, info = load_run(
            folder, base, tokenizer, checkpoint=checkpoint, check_base=check_base, strict=strict
        )
        return cls(finetuned, tokenizer, info, **embedder_options)

    def __call__(
        self,
        sequences: Iterable[str | NamedSequence],
        *,
        on_invalid: Callable[[InvalidRecordError], None] | None = None,
    ) -> Iterator[Prediction]:
        """One `Prediction` per sequence, in order; invalid records as in `Embedder`."""
        head = self.finetuned.head.head
        for e in self.embedder(sequences, on_invalid=on_invalid):
            if self.kind == "per-residue":
                rows = len(e.vectors)
                padded = np.zeros((-(-max(rows, 1) // _ROWS) * _ROWS, e.vectors.shape[-1]))
                padded[:rows] = e.vectors
                out = np.asarray(self._head(head, jnp.asarray(padded, jnp.float32)))[:rows]
                probs = _softmax(out)
                assert self.classes is not None
                names = np.asarray(self.classes, dtype=object)[probs.argmax(axis=-1)]
                yield Prediction(e.name, names, probs, e.spans)
                continue
            out = np.asarray(self._head(head, jnp.asarray(e.vectors[None], jnp.float32)))[0]
            if self.kind == "regression":
                yield Prediction(e.name, float(out[0]) * self._std + self._mean)
            else:
                probs = _softmax(out)
                assert self.classes is not None
                yield Prediction(e.name, self.classes[int(probs.argmax())], probs)


def load_run(
    folder: str | os.PathLike,
    base: NucleotideTransformer | None = None,
    tokenizer: Tokenizer | None = None,
    *,
    checkpoint: str | os.PathLike | None = None,
    check_base: bool = True,
    strict: bool = False,
) -> tuple[Finetuned, Tokenizer, dict]:
    """A `finetune` run folder's model, tokenizer and metadata, with its base loaded for it.

    **Arguments:**

    - `folder`: the run folder (`adapter.safetensors`, and `model/` after full fine-tuning).
    - `base`, `tokenizer`: the base model and tokenizer it was trained on; by default loaded
      from `checkpoint`, or else from the checkpoint the run recorded (a folder, shipped name
      or Hub id). Ignored after full fine-tuning: the folder holds the model.
    - `check_base`: refuse a base whose weights or tokenizer differ from those trained on
      (`ProvenanceError`, see `load_finetuned`).
    - `strict`: a loaded tokenizer rejects lowercase and IUPAC codes instead of reading them
      as upper case and N.

    **Returns:** `(finetuned, tokenizer, info)`: `finetuned.model` is the adapted model (what
    `Embedder` embeds with), `info` the checked metadata.
    """
    folder = pathlib.Path(folder)
    info = read_finetuned_info(folder)
    if info["mode"] == "full":
        base, tokenizer = from_pretrained(
            folder / "model", uppercase=not strict, iupac_to_n=not strict
        )
    elif base is None or tokenizer is None:
        source = checkpoint or info.get("base_model")
        if not source or not isinstance(source, str | os.PathLike):
            raise AdapterError(
                f"{folder}: the run records no base model; pass the one it was trained on "
                "(base=, tokenizer= or checkpoint=; --checkpoint on the command line)"
            )
        loaded, loaded_tok = from_pretrained(
            _near(folder, str(source)), uppercase=not strict, iupac_to_n=not strict
        )
        base = loaded if base is None else base
        tokenizer = loaded_tok if tokenizer is None else tokenizer
    finetuned, info = load_finetuned(folder, base, tokenizer, check_base=check_base)
    return finetuned, tokenizer, info


def _outputs(finetuned: Finetuned) -> int:
    return finetuned.head.head.out_features


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    p = np.exp(z)
    return (p / p.sum(axis=-1, keepdims=True)).astype(np.float32)


def _near(folder: pathlib.Path, source: str) -> str | pathlib.Path:
    """A recorded relative checkpoint path that no longer resolves from here, tried beside the
    run folder's parent (runs are often moved with their checkpoint)."""
    if os.path.isabs(source) or os.path.exists(source):
        return source
    for root in (folder, folder.parent):
        candidate = root / source
        if candidate.exists():
            return candidate
    return source

"""A task split as token ids, targets and padded batches."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..tokenizers import Tokenizer
from ._tasks import Task, TaskError, TaskSplit


@dataclasses.dataclass(frozen=True)
class Encoded:
    """One split, tokenized.

    - `tokens`: int32 [n, max_length], right-padded.
    - `lengths`: tokens per sequence, special tokens included.
    - `targets`: float32 [n] (regression, standardised), int32 [n] (classes), or int32
      [n, max_length] per token (-1 where there is no label: specials, pads, a stop codon).
    """

    tokens: np.ndarray
    lengths: np.ndarray
    targets: np.ndarray

    def __len__(self) -> int:
        return len(self.lengths)


def encode_split(
    task: Task,
    split: TaskSplit,
    tokenizer: Tokenizer,
    *,
    max_codons: int | None,
    label_mean: float = 0.0,
    label_std: float = 1.0,
) -> Encoded:
    """Tokenize a split and lay its labels out per sequence or per token.

    Per residue, sequence token i (after the specials) is codon i: this is checked, and a
    tokenizer that does not make one token per codon raises `TaskError`.
    """
    sequences = list(split.sequences)
    if max_codons is not None:
        sequences = [s[: 3 * max_codons] for s in sequences]
    tokens = tokenizer.batch_encode(sequences).astype(np.int32)
    special = np.isin(tokens, np.asarray(sorted(tokenizer.special_ids)))
    lengths = (tokens != tokenizer.pad_id).sum(axis=1).astype(np.int32)
    if task.kind == "regression":
        targets = ((np.asarray(split.labels) - label_mean) / label_std).astype(np.float32)
    elif task.kind == "classification":
        targets = np.asarray(split.labels, np.int32)
    else:
        targets = np.full(tokens.shape, -1, np.int32)
        for i, labels in enumerate(split.labels):
            if max_codons is not None:
                labels = labels[:max_codons]
            positions = np.flatnonzero(~special[i])
            if len(positions) != len(labels):
                raise TaskError(
                    f"{split.names[i]}: {len(positions)} sequence tokens for {len(labels)} "
                    "codons; per-residue tasks need a tokenizer with one token per codon "
                    "(KmerTokenizer(3))"
                )
            targets[i, positions] = labels
    return Encoded(tokens, lengths, targets)


def batches(
    data: Encoded, batch_size: int, bucket: int, pad_id: int, rng: np.random.Generator | None
) -> Iterator[tuple[Any, ...]]:
    """(tokens [B, L], targets, weights [B]) batches of exactly `batch_size` rows, so that
    only a few shapes compile: L is the longest sequence rounded up to a multiple of `bucket`,
    and a short last batch is filled with copies of its first row at weight 0.

    With `rng` the order is shuffled (training): sequences are drawn at random in groups of 16
    batches, sorted by length within a group (so a batch holds similar lengths and few pads),
    and the batches then go in random order. Without it sequences go by length, and `index`
    (the rows, -1 for fillers) comes back as a fourth element.
    """
    n = len(data)
    if rng is None:
        order = np.argsort(data.lengths, kind="stable")
        chunks = [order[s : s + batch_size] for s in range(0, n, batch_size)]
    else:
        order = rng.permutation(n)
        group = 16 * batch_size
        for start in range(0, n, group):
            chunk = order[start : start + group].copy()
            order[start : start + group] = chunk[np.argsort(data.lengths[chunk], kind="stable")]
        starts = rng.permutation(np.arange(0, n, batch_size))
        chunks = [order[s : s + batch_size] for s in starts]
    for idx in chunks:
        real = len(idx)
        idx = np.concatenate([idx, np.full(batch_size - real, idx[0])])
        length = int(-(-data.lengths[idx].max() // bucket) * bucket)
        tokens = _fit(data.tokens[idx], length, pad_id)
        targets = data.targets[idx]
        if targets.ndim == 2:
            targets = _fit(targets, length, -1)
        weights = (np.arange(batch_size) < real).astype(np.float32)
        if rng is not None:
            yield tokens, targets, weights
        else:
            yield tokens, targets, weights, np.where(weights > 0, idx, -1)


def _fit(array: np.ndarray, length: int, fill: int) -> np.ndarray:
    if array.shape[1] >= length:
        return array[:, :length]
    return np.pad(array, ((0, 0), (0, length - array.shape[1])), constant_values=fill)

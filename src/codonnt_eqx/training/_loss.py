"""The masked-language-model loss and its metrics, as sums that accumulate exactly."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from ..tokenizers import Tokenizer


class LossMetrics(eqx.Module):
    """Sums over the selected positions of a sequence, a batch or many batches (int32 counts,
    float32 loss). Sums, not means, so that micro-batches and devices combine exactly: add
    them with `+` (or `jax.lax.psum` the fields), then turn them into means with `summarise`.

    - `loss_sum`: cross-entropy in nats, summed over the selected positions.
    - `num_selected`: number of selected positions.
    - `num_correct`: selected positions whose argmax prediction is the target.
    - `nucleotides`: nucleotides covered by the selected targets.
    """

    loss_sum: Float[Array, ""]
    num_selected: Int[Array, ""]
    num_correct: Int[Array, ""]
    nucleotides: Int[Array, ""]

    def __add__(self, other: LossMetrics) -> LossMetrics:
        return jax.tree.map(jnp.add, self, other)


def nucleotides_per_token(tokenizer: Tokenizer) -> Int[np.ndarray, " vocab"]:
    """How many nucleotides each token adds to the sequence, from `tokenizer.token_nucleotides`:
    0 for special tokens, 3 for a 3-mer, 1 for a single base or `N` or an overlapping k-mer.

    **Arguments:**

    - `tokenizer`: a `Tokenizer`.

    **Returns:**

    A NumPy int32 array [vocab_size], the `nucleotides` argument of `masked_lm_metrics`.

    ```python
    nucleotides_per_token(KmerTokenizer(3))  # [0]*6 + [3]*64 + [1]*5
    ```
    """
    out = np.asarray(tokenizer.token_nucleotides)
    if out.shape != (tokenizer.vocab_size,) or not np.issubdtype(out.dtype, np.integer):
        raise ValueError(
            f"{tokenizer!r}.token_nucleotides must be int [{tokenizer.vocab_size}], got "
            f"{out.dtype} {out.shape}"
        )
    if (out < 0).any() or out[sorted(tokenizer.special_ids)].any():
        raise ValueError(f"{tokenizer!r}.token_nucleotides: negative, or non-zero for a special")
    return out.astype(np.int32)


def _per_position(
    logits: Float[Array, "*batch length vocab"], targets: Int[Array, "*batch length"]
) -> tuple[Float[Array, "*batch length"], Bool[Array, "*batch length"]]:
    """Cross-entropy (nats, float32) and correctness of the argmax at every position."""
    logits = logits.astype(jnp.float32)
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
    correct = jnp.argmax(logits, axis=-1) == targets
    return nll, correct


def masked_lm_metrics(
    logits: Float[Array, "*batch length vocab"],
    targets: Int[Array, "*batch length"],
    selected: Bool[Array, "*batch length"],
    nucleotides: Int[np.ndarray | Array, " vocab"],
) -> LossMetrics:
    """The masked-language-model metrics of one sequence or a batch, as sums.

    **Arguments:**

    - `logits`: float [..., length, vocab], any leading (batch) dimensions; cast to float32.
    - `targets`: int [..., length], the original tokens (`MaskedTokens.targets`).
    - `selected`: bool [..., length], where the loss applies (`MaskedTokens.selected`).
    - `nucleotides`: int [vocab], from `nucleotides_per_token(tokenizer)`.

    **Returns:**

    A `LossMetrics` of scalars summed over every selected position of every leading index.
    With nothing selected, every field is 0.

    ```python
    logits = jax.vmap(model)(batch.inputs).logits
    metrics = masked_lm_metrics(logits, batch.targets, batch.selected, nucleotides)
    summarise(metrics)  # {"loss": ..., "accuracy": ..., "bits_per_nucleotide": ...}
    ```
    """
    nll, correct = _per_position(logits, targets)
    return LossMetrics(
        loss_sum=jnp.sum(jnp.where(selected, nll, 0.0)),
        num_selected=jnp.sum(selected, dtype=jnp.int32),
        num_correct=jnp.sum(correct & selected, dtype=jnp.int32),
        nucleotides=jnp.sum(jnp.where(selected, jnp.asarray(nucleotides)[targets], 0)).astype(
            jnp.int32
        ),
    )


def masked_lm_loss(
    logits: Float[Array, "*batch length vocab"],
    targets: Int[Array, "*batch length"],
    selected: Bool[Array, "*batch length"],
) -> Float[Array, ""]:
    """Mean cross-entropy (nats) over the selected positions: the quantity to differentiate.

    **Arguments:**

    - `logits`: float [..., length, vocab]; cast to float32.
    - `targets`: int [..., length].
    - `selected`: bool [..., length].

    **Returns:**

    A float32 scalar, `loss_sum / max(num_selected, 1)` (0 when nothing is selected, with zero
    gradients).

    ```python
    loss, grads = eqx.filter_value_and_grad(
        lambda m: masked_lm_loss(jax.vmap(m)(batch.inputs).logits, batch.targets, batch.selected)
    )(model)
    ```
    """
    nll, _ = _per_position(logits, targets)
    total = jnp.sum(jnp.where(selected, nll, 0.0))
    return total / jnp.maximum(jnp.sum(selected, dtype=jnp.int32), 1).astype(jnp.float32)


def summarise(metrics: LossMetrics) -> dict[str, float]:
    """Means of accumulated metrics, as Python floats for logging (not jit-able).

    **Arguments:**

    - `metrics`: a `LossMetrics`, typically summed over micro-batches, devices and steps.

    **Returns:**

    `{"loss": nats per selected token, "accuracy": fraction of selected tokens predicted,
    "bits_per_nucleotide": loss_sum / ln 2 / nucleotides}`; each is 0.0 when its denominator
    is 0.

    ```python
    summarise(metrics_a + metrics_b)["bits_per_nucleotide"]
    ```
    """
    loss_sum = float(metrics.loss_sum)
    num_selected = int(metrics.num_selected)
    nucleotides = int(metrics.nucleotides)
    return {
        "loss": loss_sum / num_selected if num_selected else 0.0,
        "accuracy": int(metrics.num_correct) / num_selected if num_selected else 0.0,
        "bits_per_nucleotide": loss_sum / math.log(2) / nucleotides if nucleotides else 0.0,
    }

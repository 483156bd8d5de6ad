"""BERT masking of one token sequence for masked-language-model pretraining."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, Bool, Int, PRNGKeyArray

from ..tokenizers import Tokenizer


class MaskedTokens(eqx.Module):
    """One masked sequence (batch with `jax.vmap`, which stacks every field).

    - `inputs` int32 [length]: what the model sees.
    - `targets` int32 [length]: the original tokens.
    - `selected` bool [length]: where the loss applies (masked, replaced or kept as is).
    """

    inputs: Int[Array, " length"]
    targets: Int[Array, " length"]
    selected: Bool[Array, " length"]


def maskable_tokens(tokenizer: Tokenizer) -> Bool[np.ndarray, " vocab"]:
    """The tokens masking may select and may draw as random replacements: every token that is
    not special (`<pad>`, `<cls>`, `<mask>`, `<unk>`, ...).

    **Arguments:**

    - `tokenizer`: any `Tokenizer`.

    **Returns:**

    A NumPy bool array [vocab_size], `True` for the non-special tokens (for `KmerTokenizer(3)`:
    the 64 3-mers and the single bases `A T C G N`).

    ```python
    maskable = maskable_tokens(KmerTokenizer(3))  # bool [75], 69 True
    ```
    """
    out = np.ones(tokenizer.vocab_size, dtype=bool)
    out[sorted(tokenizer.special_ids)] = False
    return out


def _check_probability(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    value = float(value)
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return value


def _concrete_maskable(maskable: np.ndarray | Array) -> np.ndarray:
    try:
        out = np.asarray(maskable)
    except jax.errors.TracerArrayConversionError:
        raise ValueError(
            "maskable must be a concrete (NumPy) array, not a traced one: close over it "
            "(functools.partial) instead of passing it through jit / vmap"
        ) from None
    if out.ndim != 1 or out.dtype != np.bool_:
        raise ValueError(f"maskable must be a 1-D bool array [vocab], got {out.dtype} {out.shape}")
    return out


def _counts_table(rate: float, length: int, span: int = 1) -> np.ndarray:
    """How many positions (span 1) or span anchors to draw for each possible number 0..length
    of maskable positions.

    Built in float64 NumPy at trace time so that it is exactly Python's `round(rate * n / span)`
    (half to even), whatever the dtype of the traced arithmetic.
    """
    n = np.arange(length + 1)
    counts = np.round(rate * n / span)
    if rate > 0:
        counts = np.where(n >= 1, np.maximum(counts, 1), 0)
    return counts.astype(np.int32)


def mask_tokens(
    key: PRNGKeyArray,
    tokens: Int[Array | np.ndarray, " length"],
    *,
    maskable: Bool[np.ndarray | Array, " vocab"],
    mask_id: int,
    rate: float = 0.15,
    mask_prob: float = 0.8,
    random_prob: float = 0.1,
    span: int = 1,
) -> MaskedTokens:
    """BERT masking of one token sequence, token by token or in spans.

    Of the positions holding a maskable token (never `<pad>`, `<cls>` or another special
    token), exactly `round(rate * n)` are selected, `n` being their number (at least one when
    `n >= 1` and `rate > 0`), uniformly at random without replacement. Each selected position
    then independently becomes `mask_id` with probability `mask_prob`, a uniformly random
    maskable token *other than its own* with probability `random_prob`, and otherwise keeps its
    token. Works under `jit`; batch with `jax.vmap` over keys and sequences.

    With `span > 1` (overlapping k-mers: `span = k`, `tokenizer.mask_span`) the selection is
    made of spans instead: `round(rate * n / span)` *anchors* (at least one when `n >= 1` and
    `rate > 0`) are drawn uniformly without replacement among the maskable positions, and a
    maskable position is selected when an anchor lies at it or fewer than `span` positions to
    its left. Spans run right from their anchors, merge where they overlap, stop at the end of
    the sequence and never select a non-maskable position (one inside a span is stepped over).
    Why: each base of a sequence of overlapping k-mers is spelled by k consecutive tokens, so a
    token masked alone is read off its unmasked neighbours and teaches nothing; a run of k
    masked tokens hides at least one base from every unmasked token. The fraction selected
    is a little below `rate`: anchors closer than `span` share positions, and spans are cut at
    the end. With `a = rate * n / span` anchors among `n` positions, a position is missed by
    all of them with probability about `(1 - rate / span) ** span`, so about
    `1 - (1 - rate / span) ** span` of them are selected (rate 0.15, span 6: 0.141, tending to
    `1 - exp(-rate)` = 0.139 for long spans), less the end effect of order `span / n`.

    **Arguments:**

    - `key`: PRNG key; the result is a function of it and the other arguments.
    - `tokens`: int [length]. Ids outside the vocabulary are never selected (the model
      rejects them).
    - `maskable`: NumPy bool [vocab], from `maskable_tokens(tokenizer)`: which tokens may be
      selected and drawn as replacements. It is a constant of the computation, not a traced
      argument: close over it (e.g. `functools.partial`) when you jit.
    - `mask_id`: the `<mask>` token, e.g. `tokenizer.mask_id`; must not be maskable.
    - `rate`: fraction of the maskable positions selected (Codon-NT: 0.15).
    - `mask_prob`: probability that a selected position becomes `mask_id` (0.8).
    - `random_prob`: probability that a selected position becomes a random other maskable
      token (0.1). `mask_prob + random_prob <= 1`; the rest keep their token.
    - `span`: int >= 1, the number of consecutive positions an anchor selects (1: BERT's
      independent positions, exactly as without the argument).

    **Returns:**

    A `MaskedTokens` with `inputs` int32 [length], `targets` int32 [length] (= `tokens`) and
    `selected` bool [length].

    ```python
    tok = KmerTokenizer(3)
    mask = functools.partial(mask_tokens, maskable=maskable_tokens(tok), mask_id=tok.mask_id)
    tokens = tok.batch_encode(["ATGGCCAAGTAA", "ATGTGA"])  # int32 [2, 5]
    keys = jax.random.split(jax.random.key(0), 2)
    batch = jax.jit(jax.vmap(mask))(keys, tokens)  # fields [2, 5]
    ```
    """
    rate = _check_probability("rate", rate)
    mask_prob = _check_probability("mask_prob", mask_prob)
    random_prob = _check_probability("random_prob", random_prob)
    if mask_prob + random_prob > 1.0 + 1e-12:
        raise ValueError(
            f"mask_prob + random_prob must be at most 1, got {mask_prob} + {random_prob}"
        )
    if isinstance(span, bool) or not isinstance(span, (int, np.integer)) or span < 1:
        raise ValueError(f"span must be an int >= 1, got {span!r}")
    span = int(span)
    maskable = _concrete_maskable(maskable)
    vocab_size = maskable.shape[0]
    if isinstance(mask_id, bool) or not isinstance(mask_id, (int, np.integer)):
        raise ValueError(f"mask_id must be an int, got {mask_id!r}")
    if not 0 <= mask_id < vocab_size:
        raise ValueError(f"mask_id {mask_id} is outside the vocabulary (size {vocab_size})")
    if maskable[mask_id]:
        raise ValueError(f"mask_id {mask_id} is marked maskable; it must be a special token")
    maskable_ids = np.flatnonzero(maskable).astype(np.int32)
    num_maskable_ids = maskable_ids.shape[0]
    if random_prob > 0 and num_maskable_ids < 2:
        raise ValueError(
            "random_prob > 0 needs at least two maskable tokens (a replacement differs from the "
            f"token it replaces); maskable has {num_maskable_ids}"
        )
    tokens = jnp.asarray(tokens)
    if tokens.ndim != 1:
        raise ValueError(
            f"mask_tokens works on one sequence [length], got shape {tokens.shape}; "
            "batch with jax.vmap"
        )
    tokens = tokens.astype(jnp.int32)
    length = tokens.shape[0]
    # One draw of random words serves every decision (each random op costs compile time).
    priority_hi, priority_lo, action_bits, replace_bits = jr.bits(key, (4, length), jnp.uint32)

    # Selection: maskable positions first, in the order of 64-bit random priorities; the first
    # `count` of them are a uniform draw without replacement (two positions tie with
    # probability below length^2 / 2^65, when the earlier one wins).
    # Out-of-vocabulary ids would be clamped (or wrapped) by the gather: they are not maskable.
    in_vocab = (tokens >= 0) & (tokens < vocab_size)
    is_maskable = in_vocab & jnp.asarray(maskable)[jnp.clip(tokens, 0, vocab_size - 1)]
    num_maskable = jnp.sum(is_maskable, dtype=jnp.int32)
    count = jnp.asarray(_counts_table(rate, length, span))[num_maskable]
    positions = jnp.arange(length, dtype=jnp.int32)
    *_, order = jax.lax.sort((~is_maskable, priority_hi, priority_lo, positions), num_keys=3)
    selected = jnp.zeros(length, bool).at[order].set(positions < count)
    if span > 1:
        # `selected` holds the anchors. The nearest anchor at or left of each position (a
        # running maximum of anchor positions, -span where there is none) is fewer than `span`
        # positions away exactly when some anchor's span covers the position.
        last_anchor = jax.lax.cummax(jnp.where(selected, positions, -span))
        selected = is_maskable & (positions - last_anchor < span)

    # Action: 24 random bits u per position; u < mask_prob * 2^24 -> <mask>, then the next
    # random_prob * 2^24 values -> random token, the rest -> unchanged.
    u = (action_bits >> 8).astype(jnp.int32)
    to_mask = selected & (u < round(mask_prob * 2**24))
    inputs = jnp.where(to_mask, jnp.int32(mask_id), tokens)
    if random_prob > 0:
        to_random = selected & ~to_mask & (u < round((mask_prob + random_prob) * 2**24))
        # Uniform over the maskable tokens other than the original: an index among
        # num_maskable_ids - 1 (modulo bias below num_maskable_ids / 2^32) that steps over the
        # original's own index.
        index_of = np.zeros(vocab_size, np.int32)
        index_of[maskable_ids] = np.arange(num_maskable_ids, dtype=np.int32)
        draw = (replace_bits % np.uint32(num_maskable_ids - 1)).astype(jnp.int32)
        draw = draw + (draw >= jnp.asarray(index_of)[tokens])
        inputs = jnp.where(to_random, jnp.asarray(maskable_ids)[draw], inputs)
    return MaskedTokens(inputs=inputs, targets=tokens, selected=selected)

"""Key padding, defined once: which keys are real, the masked softmax over them, and the zeroing
of padded key/value rows. The reference, the blocked implementation, the flash tiles and the
model's attention maps all call these, so "a padded key gets exactly zero weight and whatever it
holds never reaches an output or a gradient" has one spelling.

Everything here is shape-agnostic (masks broadcast against scores or rows), so the same code
serves whole [batch, heads, queries, keys] score arrays and single [block_q, block_k] tiles
inside Triton and Mosaic kernels.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

# Finite, so that max() over a fully masked row stays finite and exp() of differences is 0/1
# rather than NaN; masked probabilities are zeroed explicitly, never by this value alone.
MASK_VALUE = -0.7 * float(np.finfo(np.float32).max)


def key_padding(kv_lengths: jax.Array | None, batch: int, length: int) -> jax.Array:
    """bool [batch, length]: True for real keys (position < kv_lengths[b]). `None`: no padding.

    Lengths outside [0, length] act as if clipped to it: the comparison needs no clip.
    """
    if kv_lengths is None:
        return jnp.ones((batch, length), bool)
    return jnp.arange(length)[None, :] < jnp.asarray(kv_lengths).reshape(batch, 1)


def attendable(valid: jax.Array, segment_ids: jax.Array | None) -> jax.Array:
    """bool [batch, 1, queries, keys] (or [batch, 1, 1, keys] without segments): the keys each
    query may attend to: real keys (`valid` [batch, keys]) of the query's own segment."""
    keys = valid[:, None, None, :]
    if segment_ids is None:
        return keys
    return keys & (segment_ids[:, None, :, None] == segment_ids[:, None, None, :])


def zero_padded(rows: jax.Array, *xs: jax.Array) -> tuple[jax.Array, ...]:
    """Each of `xs` with the rows where `rows` (bool, broadcastable to them) is False set to 0.

    A padded key/value row may hold anything, NaN included; masking its score is not enough,
    because the backward pass multiplies by it (dQ = dS K) and 0 * NaN = NaN.
    """
    return tuple(jnp.where(rows, x, jnp.zeros_like(x)) for x in xs)


def masked_softmax(s: jax.Array, valid: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Softmax over the last axis restricted to the keys where `valid`, and its log-sum-exp.

    **Arguments:**

    - `s`: float32 scores [..., queries, keys].
    - `valid`: bool, broadcastable to `s`; False marks padded keys.

    **Returns:** `(p, lse)`: `p` like `s`, exactly 0 at invalid keys, each row summing to 1, or
    all zero for a row with no valid key; `lse` [..., queries, 1], the log-sum-exp of the valid
    scores (-inf for a row with none), from which `probabilities_from_lse` rebuilds `p`.
    """
    s = jnp.where(valid, s, MASK_VALUE)
    # `initial`: a row of zero keys has max MASK_VALUE like a fully masked one, not an error.
    m = jnp.max(s, axis=-1, keepdims=True, initial=MASK_VALUE)
    p = jnp.where(valid, jnp.exp(s - m), 0.0)
    total = jnp.sum(p, axis=-1, keepdims=True)
    # total >= 1 when a row has a valid key (its maximum contributes exp(0)), else exactly 0.
    empty = total == 0.0
    total = jnp.where(empty, 1.0, total)
    return p / total, jnp.where(empty, -jnp.inf, m + jnp.log(total))


def probabilities_from_lse(s: jax.Array, lse: jax.Array, valid: jax.Array | None) -> jax.Array:
    """`masked_softmax(s, valid)[0]` rebuilt from its saved `lse`, as flash backward passes do.

    `valid` None: every key of `s` is valid (skips the mask). A row without valid keys has
    lse = -inf, so exp() gives inf there, and the mask (all False on that row) makes it 0.
    """
    p = jnp.exp(s - lse)
    return p if valid is None else jnp.where(valid, p, 0.0)

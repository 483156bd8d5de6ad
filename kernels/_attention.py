"""`attention`: one entry point over every implementation, for the model."""

from __future__ import annotations

import functools
import typing
from typing import Literal

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

from ._blocked import _blocked_attention
from ._contract import check_attention_inputs, check_segment_ids, empty_attention
from ._flash import _flash_attention, check_head_dim
from ._masking import attendable, key_padding, zero_padded
from ._reference import _reference_attention

Implementation = Literal["auto", "pallas", "blocked", "reference", "xla", "cudnn"]
# Derived, so that the names are spelled once (the Literal is what type checkers see).
IMPLEMENTATIONS: tuple[Implementation, ...] = typing.get_args(Implementation)
# The implementations that take `segment_ids` (the Pallas and cuDNN kernels do not).
SEGMENT_IMPLEMENTATIONS: tuple[Implementation, ...] = ("auto", "blocked", "reference", "xla")


def _dot_product_attention(
    q, k, v, kv_lengths, scale: float, implementation, segment_ids=None
) -> jax.Array:
    batch, length = k.shape[:2]
    valid = key_padding(kv_lengths, batch, length)
    k, v = zero_padded(valid[:, :, None, None], k, v)
    if segment_ids is None:
        out = jax.nn.dot_product_attention(
            q, k, v, scale=scale, key_value_seq_lengths=kv_lengths, implementation=implementation
        )
        # jax.nn gives mean(V) to a query with no valid key; our contract is 0.
        has_key = jnp.any(valid, axis=1)[:, None, None, None]
    else:
        mask = attendable(valid, segment_ids)  # [batch, 1, queries, keys]
        out = jax.nn.dot_product_attention(
            q, k, v, scale=scale, mask=mask, implementation=implementation
        )
        has_key = jnp.any(mask, axis=-1)[:, 0, :, None, None]  # [batch, queries, 1, 1]
    return jnp.where(has_key, out, jnp.zeros_like(out))


def attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    kv_lengths: ArrayLike | None = None,
    *,
    scale: float | None = None,
    implementation: Implementation = "auto",
    segment_ids: ArrayLike | None = None,
) -> jax.Array:
    """Self-attention with key padding through a chosen implementation; one contract for all.

    **Arguments:**

    - `q, k, v`: [batch, length, heads, head_dim], one shape and one dtype (float32, bfloat16
      or float16); any size may be 0 (the result is then empty, and so are its gradients).
    - `kv_lengths`: int [batch]; keys at positions >= `kv_lengths[b]` get zero weight and never
      reach outputs or gradients, even if they hold NaN. Values outside [0, length] are
      clipped to it. `None`: no padding.
    - `scale`: logit scale, a finite number; default 1/sqrt(head_dim).
    - `segment_ids`: int [batch, length], or `None`: a query attends only to the (valid) keys
      of its own segment, so that several sequences packed into one row never see each other.
      Taken by `"reference"`, `"blocked"` and `"xla"`, and by `"auto"` (`"blocked"` on CPU,
      `"xla"` elsewhere: the Pallas kernels do not take segments); `"pallas"` and `"cudnn"`
      refuse them (`ValueError`).
    - `implementation`: one of `IMPLEMENTATIONS`: `"pallas"` (`flash_attention`; interpret mode
      on CPU; head_dim up to 256), `"reference"` (plain JAX, full L x L matrix), `"blocked"`
      (plain JAX, one head and 256 queries at a time: the fastest on CPU), `"xla"` / `"cudnn"`
      (`jax.nn.dot_product_attention`; cuDNN needs a CUDA GPU), or `"auto"`: the Pallas
      kernels on GPU and TPU, `"blocked"` on CPU (chosen per compile platform, so the Pallas
      head_dim limit of 256 applies to `"auto"` on every platform).

    **Returns:** [batch, length, heads, head_dim] in the dtype of `q`; a query with no valid key
    gets zeros.

    Inputs are checked here, once, for every implementation: `ValueError` for a wrong shape or
    an unknown implementation, `TypeError` for a wrong dtype. Only static properties are
    checked, so this works under `jit`.
    """
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}")
    q, k, v, lengths, scale = check_attention_inputs(q, k, v, kv_lengths, scale)
    segments = check_segment_ids(segment_ids, *q.shape[:2])
    if segments is not None and implementation not in SEGMENT_IMPLEMENTATIONS:
        raise ValueError(
            f"implementation {implementation!r} does not take segment_ids; use one of "
            f"{SEGMENT_IMPLEMENTATIONS}"
        )
    if implementation == "pallas" or (implementation == "auto" and segments is None):
        # "auto" too, on every platform: under jit every platform's branch is traced, eagerly
        # only this one's, and an input must not be accepted one way and rejected the other.
        check_head_dim(q.shape[-1])
    if q.size == 0:
        return empty_attention(q)
    if implementation == "pallas":
        return _flash_attention(q, k, v, lengths, scale)
    if implementation == "reference":
        return _reference_attention(q, k, v, lengths, scale, segments)
    if implementation == "blocked":
        return _blocked_attention(q, k, v, lengths, scale, segment_ids=segments)
    if implementation in ("xla", "cudnn"):
        return _dot_product_attention(q, k, v, lengths, scale, implementation, segments)
    if lengths is None:
        lengths = jnp.full((q.shape[0],), q.shape[1], jnp.int32)

    def blocked(q, k, v, lengths):
        return _blocked_attention(q, k, v, lengths, scale, segment_ids=segments)

    if segments is None:
        other = functools.partial(_flash_attention, scale=scale)
    else:  # the Pallas kernels do not take segments: XLA's attention with a mask

        def other(q, k, v, lengths):
            return _dot_product_attention(q, k, v, lengths, scale, "xla", segments)

    return lax.platform_dependent(q, k, v, lengths, cpu=blocked, cuda=other, rocm=other, tpu=other)

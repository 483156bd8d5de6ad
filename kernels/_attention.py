"""`attention`: one entry point over every implementation, for the model."""

from __future__ import annotations

import functools
from typing import Literal

import jax
import jax.numpy as jnp
from jax import lax

from ._blocked import blocked_attention
from ._flash import flash_attention
from ._reference import key_padding, reference_attention, zero_padded_keys

Implementation = Literal["auto", "pallas", "blocked", "reference", "xla", "cudnn"]
IMPLEMENTATIONS = ("auto", "pallas", "blocked", "reference", "xla", "cudnn")


def _dot_product_attention(q, k, v, kv_lengths, *, scale, implementation):
    batch, length = k.shape[:2]
    valid = key_padding(kv_lengths, batch, length)
    k, v = zero_padded_keys(k, v, valid)
    lengths = None if kv_lengths is None else jnp.asarray(kv_lengths, jnp.int32)
    out = jax.nn.dot_product_attention(
        q, k, v, scale=scale, key_value_seq_lengths=lengths, implementation=implementation
    )
    # jax.nn gives mean(V) to a query with no valid key; our contract is 0.
    return jnp.where(jnp.any(valid, axis=1)[:, None, None, None], out, jnp.zeros_like(out))


def attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    kv_lengths: jax.Array | None = None,
    *,
    scale: float | None = None,
    implementation: Implementation = "auto",
) -> jax.Array:
    """Self-attention with key padding through a chosen implementation; same semantics for all.

    `implementation`: `"pallas"` (`flash_attention`; interpret mode on CPU), `"reference"`
    (plain JAX, full L x L matrix), `"blocked"` (plain JAX, 256 queries at a time: the fastest
    on CPU), `"xla"` / `"cudnn"` (`jax.nn.dot_product_attention`), or `"auto"`: the Pallas
    kernels on GPU and TPU, `"blocked"` on CPU (chosen per compile platform).
    Shapes and padding semantics as `flash_attention`.
    """
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}")
    if implementation == "pallas":
        return flash_attention(q, k, v, kv_lengths, scale=scale)
    if implementation == "reference":
        return reference_attention(q, k, v, kv_lengths, scale=scale)
    blocked = functools.partial(blocked_attention, scale=scale)
    if implementation == "blocked":
        return blocked(q, k, v, kv_lengths)
    if implementation in ("xla", "cudnn"):
        return _dot_product_attention(
            q, k, v, kv_lengths, scale=scale, implementation=implementation
        )
    if kv_lengths is None:
        kv_lengths = jnp.full((q.shape[0],), q.shape[1], jnp.int32)
    pallas = functools.partial(flash_attention, scale=scale)
    return lax.platform_dependent(
        q, k, v, kv_lengths, cpu=blocked, cuda=pallas, rocm=pallas, tpu=pallas
    )

"""What every attention implementation accepts, checked in one place before any of them runs.

The contract, identical for `attention(implementation=...)`, `flash_attention`,
`blocked_attention`, `reference_attention` (and, for q and k, `attention_weights`):

- `q`, `k`, `v`: one 4-D shape [batch, length, heads, head_dim] with head_dim >= 1, one dtype
  out of float32, bfloat16 and float16. Shape errors are `ValueError`, dtype errors `TypeError`.
- `kv_lengths`: `None` (no padding) or an integer array of shape [batch]. Values outside
  [0, length] are clipped to it: a negative length means no valid key, a length past the end
  means every key is valid.
- `segment_ids`: `None` or an integer array of shape [batch, length]: a query attends only to
  keys of its own segment (packed sequences); accepted by the plain-JAX implementations
  (`reference`, `blocked`, `xla`, and `auto`, which then uses XLA's attention off the CPU).
- `scale`: `None` (1/sqrt(head_dim)) or a finite real number. Any sign is accepted: softmax is
  defined for it, and a Python float cannot be checked against a traced value anyway.
- Any size may be 0 (batch, length, heads): the result is then an empty array of the right
  shape and dtype (`empty_attention`), and gradients are empty too.

Only shapes and dtypes are checked, which are static under `jit`; values of traced arrays are
never inspected (the clipping is an array operation).
"""

from __future__ import annotations

import math
import numbers

import jax
import jax.numpy as jnp

DTYPES = (jnp.float32, jnp.bfloat16, jnp.float16)


def _check_dtypes(names: str, *xs: jax.Array) -> None:
    dtypes = [x.dtype for x in xs]
    if any(d not in DTYPES for d in dtypes) or len(set(dtypes)) != 1:
        raise TypeError(
            f"{names} must share one dtype out of float32, bfloat16 and float16, got "
            + ", ".join(str(d) for d in dtypes)
        )


def _integer_array(x, name: str, shape: tuple[int, ...], dims: str) -> jax.Array:
    """`x` as an array of integers of `shape` (`dims` names its axes in the error)."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.integer):
        raise TypeError(f"{name} must be an integer array, got dtype {x.dtype}")
    if x.shape != shape:
        raise ValueError(f"{name} must have shape [{dims}] = {shape}, got {x.shape}")
    return x


def _check_kv_lengths(kv_lengths, batch: int, length: int) -> jax.Array | None:
    if kv_lengths is None:
        return None
    lengths = _integer_array(kv_lengths, "kv_lengths", (batch,), "batch")
    return jnp.clip(lengths, 0, length).astype(jnp.int32)


def check_segment_ids(segment_ids, batch: int, length: int) -> jax.Array | None:
    """`segment_ids` as int32 [batch, length] (or None); `TypeError`/`ValueError` otherwise."""
    if segment_ids is None:
        return None
    ids = _integer_array(segment_ids, "segment_ids", (batch, length), "batch, length")
    return ids.astype(jnp.int32)


def _check_scale(scale, head_dim: int) -> float:
    if scale is None:
        return head_dim**-0.5
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real):
        raise TypeError(f"scale must be a real number or None, got {type(scale).__name__}")
    if not math.isfinite(scale):
        raise ValueError(f"scale must be finite, got {scale}")
    return float(scale)


def check_attention_inputs(
    q, k, v, kv_lengths, scale
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array | None, float]:
    """Raise on anything outside the contract; return `(q, k, v, kv_lengths, scale)` with
    kv_lengths int32 clipped to [0, length] (or None) and scale a float."""
    q, k, v = (jnp.asarray(x) for x in (q, k, v))
    if q.ndim != 4 or not q.shape == k.shape == v.shape:
        raise ValueError(
            "q, k and v must share one shape [batch, length, heads, head_dim], got "
            f"{q.shape}, {k.shape}, {v.shape}"
        )
    _check_dtypes("q, k and v", q, k, v)
    batch, length, _, head_dim = q.shape
    if head_dim < 1:
        raise ValueError(f"head_dim must be at least 1, got {head_dim}")
    lengths = _check_kv_lengths(kv_lengths, batch, length)
    return q, k, v, lengths, _check_scale(scale, head_dim)


def check_weights_inputs(
    q, k, kv_lengths, scale
) -> tuple[jax.Array, jax.Array, jax.Array | None, float]:
    """`check_attention_inputs` for `attention_weights`: q and k may differ in length only."""
    q, k = jnp.asarray(q), jnp.asarray(k)
    if q.ndim != 4 or k.ndim != 4 or q.shape[::2] != k.shape[::2] or q.shape[3] != k.shape[3]:
        raise ValueError(
            "q and k must be [batch, length, heads, head_dim] with the same batch, heads and "
            f"head_dim, got {q.shape}, {k.shape}"
        )
    _check_dtypes("q and k", q, k)
    batch, length, _, head_dim = k.shape
    if head_dim < 1:
        raise ValueError(f"head_dim must be at least 1, got {head_dim}")
    lengths = _check_kv_lengths(kv_lengths, batch, length)
    return q, k, lengths, _check_scale(scale, head_dim)


def empty_attention(q: jax.Array) -> jax.Array:
    """The output for inputs with a zero-size dimension: nothing to attend, nothing to compute
    (and the tiling of blocked and flash would divide by a zero length)."""
    return jnp.zeros(q.shape, q.dtype)

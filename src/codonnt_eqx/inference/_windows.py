"""Cutting a long token sequence into overlapping windows, and which window each token's
output is taken from when they are stitched back."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from jaxtyping import Int


class WindowPlan(NamedTuple):
    """Windows over `num_tokens` tokens: window `w` covers tokens `[start[w], start[w] + size)`
    (clipped to the sequence) and contributes its outputs for tokens `[keep[w, 0], keep[w, 1])`.

    The kept ranges partition `[0, num_tokens)` in order; each token is kept from the window
    whose centre is nearest to it (the earlier window on a tie), i.e. where it has the most
    context on both sides.
    """

    start: Int[np.ndarray, " windows"]
    keep: Int[np.ndarray, "windows 2"]
    size: int


def plan_windows(num_tokens: int, size: int, overlap: int) -> WindowPlan:
    """Windows of `size` tokens overlapping by `overlap` tokens (the last one is moved back
    to end at the sequence end, so it may overlap more). A sequence of at most `size` tokens
    is one window.

    **Arguments:**

    - `num_tokens`: tokens in the sequence (>= 1).
    - `size`: tokens per window (>= 1).
    - `overlap`: tokens shared by consecutive windows, in `[0, size)`.
    """
    if num_tokens < 1 or size < 1:
        raise ValueError(f"need num_tokens >= 1 and size >= 1, got {num_tokens}, {size}")
    if not 0 <= overlap < size:
        raise ValueError(f"overlap must be in [0, {size}) for windows of {size}, got {overlap}")
    if num_tokens <= size:
        return WindowPlan(np.zeros(1, np.int64), np.array([[0, num_tokens]]), size)
    stride = size - overlap
    count = -(-(num_tokens - size) // stride) + 1
    start = np.minimum(np.arange(count, dtype=np.int64) * stride, num_tokens - size)
    # Window w's centre is start + (size - 1) / 2; token p belongs to w up to the midpoint of
    # the two centres, (start[w] + start[w + 1] + size - 1) / 2 (ties to the earlier window).
    # Since stride <= size, that midpoint lies inside window w.
    boundary = (start[:-1] + start[1:] + size - 1) // 2 + 1
    keep = np.stack([np.r_[0, boundary], np.r_[boundary, num_tokens]], axis=1)
    return WindowPlan(start, keep, size)

"""Inference in batches of one shape: a jitted function compiles once for any number of
inputs when every call sees the same batch size."""

from __future__ import annotations

from typing import TypeVar

import jax
import numpy as np

T = TypeVar("T")


def pad_rows(batch: T, size: int) -> T:
    """`batch` (an array, or a pytree of arrays sharing their leading axis) grown to `size`
    rows by repeating its last row. The filler rows are real inputs (no zeros through a
    normalisation or a log); callers keep the first `len(batch)` rows of the output."""

    def grow(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a)
        if not 0 < len(a) <= size:
            raise ValueError(f"a batch of {len(a)} rows cannot be padded to {size}")
        return a if len(a) == size else np.concatenate([a, np.repeat(a[-1:], size - len(a), 0)])

    return jax.tree.map(grow, batch)

"""Model inputs from raw readings: per-channel scaling fitted on training windows only.

`build` fits the scaling and saves it with the run (workdir/normalization.json), together with
the area names the model's area embedding was trained on; `predict` loads it, so new data are
scaled exactly as the training data were.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import h5py
import jax
import jax.numpy as jnp
import numpy as np

from jaxtrain.files import read_json, write_json_atomic

FILENAME = "normalization.json"


def channel_stats(path: str, area_names: Sequence[str], windows: np.ndarray, seq_len: int,
                  method: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (center, scale) over every reading inside the training windows only
    (`windows`: (area index, end row) pairs).

    "zscore": mean/std. "robust": median and IQR/1.349 (= std for Gaussian data): fire
    readings are orders of magnitude above normal ones and would otherwise set the scale,
    squashing the small sustained rises that tell a smoulder from normal operation.
    """
    parts = []
    with h5py.File(path, "r") as f:
        for s, area in enumerate(area_names):
            ends = windows[windows[:, 0] == s, 1]
            if not len(ends):
                continue
            readings = f["areas"][area]["readings"]
            covered = np.zeros(readings.shape[0], bool)
            for offset in range(seq_len):  # mark rows [end - seq_len + 1, end]
                covered[ends - offset] = True
            parts.append(readings[...][covered].astype(np.float64))
    x = np.concatenate(parts)
    if method == "zscore":
        center, scale = x.mean(0), x.std(0)
    elif method == "robust":
        q25, center, q75 = np.percentile(x, [25, 50, 75], axis=0)
        scale = (q75 - q25) / 1.349
    else:
        raise ValueError(f"data.normalization must be 'robust' or 'zscore', got {method!r}")
    return center.astype(np.float32), np.maximum(scale, 1e-6).astype(np.float32)


def normalize(x: np.ndarray | jax.Array, center: np.ndarray, scale: np.ndarray, method: str,
              diff_lags: tuple[int, ...] = ()) -> np.ndarray | jax.Array:
    """Model inputs of (..., T, C) windows: scaled readings, then one change-over-`lag` block
    per lag (minutes; zero where the window has no reading that far back).

    "robust" compresses the tails with asinh (linear near 0, log-like beyond a few units), so
    fires stay large but bounded. The change channels hand the model the sustained rise that
    tells a smoulder from a nuisance plateau instead of making it learn differencing first.
    numpy in, numpy out (host); a jax array in, jax out (inside the jitted step).
    """
    xp = jnp if isinstance(x, jax.Array) else np
    z = (x - center) / scale
    squash = xp.arcsinh if method == "robust" else (lambda v: v)
    parts = [squash(z)]
    for lag in diff_lags:
        lag = min(lag, z.shape[-2])
        change = z[..., lag:, :] - z[..., : z.shape[-2] - lag, :]
        parts.append(squash(xp.concatenate([xp.zeros_like(z[..., :lag, :]), change], axis=-2)))
    return xp.concatenate(parts, axis=-1).astype(xp.float32)


def save(workdir: str, *, method: str, center: np.ndarray, scale: np.ndarray,
         channel_names: Sequence[str], area_names: Sequence[str]) -> None:
    """workdir/normalization.json: the scaling, and the channels and areas it applies to."""
    write_json_atomic(os.path.join(workdir, FILENAME),
                      {"channels": list(channel_names), "method": method, "center": center,
                       "scale": scale, "areas": list(area_names)})


def load(workdir: str) -> dict[str, Any]:
    """The run's saved scaling: {"channels", "method", "center", "scale" (float32), "areas"}."""
    path = os.path.join(workdir, FILENAME)
    saved = read_json(path, missing="missing (written when the run starts)")
    missing = {"channels", "method", "center", "scale", "areas"} - set(saved)
    if missing:
        raise ValueError(f"{path}: no {', '.join(sorted(missing))} (a run from an older "
                         "jaxtrain; retrain it to predict)")
    return {**saved, "center": np.asarray(saved["center"], np.float32),
            "scale": np.asarray(saved["scale"], np.float32)}

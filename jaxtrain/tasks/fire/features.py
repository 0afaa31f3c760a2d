"""Named per-window features for the tree ensemble, in one vectorized numpy pass.

The transformer reads whole windows; the tree members read a fixed row of engineered numbers
per window. Features are computed from raw readings in their physical units (trees split on
thresholds, so scaling changes nothing about them, and "co_per_co2 > 0.01" is readable):

- per channel: level (mean), spread (std), min, max, last value, slope (least-squares, per
  minute) and the change over the last 5 and 15 minutes;
- cross-channel ratios fire physics suggests, at the window's last minute: CO per CO2
  (incomplete, smouldering combustion makes CO out of proportion to CO2), smoke per PM2.5
  (optical smoke vs particulates: steam and dust move one without the other) and temperature
  per humidity (a fire heats and dries the air; a shower heats and wets it);
- the area as a one-hot (areas differ in their normal levels).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

CHANNEL_STATS: tuple[str, ...] = ("level", "spread", "min", "max", "last", "slope",
                                  "change_5m", "change_15m")
RATIOS: tuple[tuple[str, str, str], ...] = (  # (name, numerator, denominator)
    ("co_per_co2", "co", "co2"),
    ("smoke_per_pm25", "smoke", "pm25"),
    ("temperature_per_humidity", "temperature", "humidity"),
)
CHUNK = 1 << 15  # windows per read: bounds host memory for any data size


def feature_names(channel_names: Sequence[str], area_names: Sequence[str]) -> list[str]:
    """Column names of `window_features`, e.g. ``"smoke_slope"``, ``"co_per_co2"``,
    ``"area=kitchen"``."""
    names = [f"{c}_{s}" for c in channel_names for s in CHANNEL_STATS]
    names += [name for name, num, den in RATIOS if num in channel_names and den in channel_names]
    return names + [f"area={a}" for a in area_names]


def window_features(x: np.ndarray, area: np.ndarray, channel_names: Sequence[str],
                    num_areas: int) -> np.ndarray:
    """(N, T, C) raw readings and (N,) area indices -> (N, F) float32, F = len(feature_names).

    Columns are channel-major (all of temperature's statistics first), then the ratios, then
    the area one-hot. Changes look back min(lag, T - 1) minutes.
    """
    x = np.asarray(x, np.float32)
    if x.ndim != 3 or x.shape[1] < 2 or x.shape[2] != len(channel_names):
        raise ValueError(f"windows must be (N, T>=2, {len(channel_names)}), got {x.shape}")
    n, t, _ = x.shape
    last = x[:, -1]
    minutes = np.arange(t, dtype=np.float32) - (t - 1) / 2.0  # centred: slope = cov / var
    slope = np.einsum("ntc,t->nc", x, minutes) / float((minutes**2).sum())
    stats = [x.mean(1), x.std(1), x.min(1), x.max(1), last, slope,
             last - x[:, -1 - min(5, t - 1)], last - x[:, -1 - min(15, t - 1)]]
    columns = [np.stack(stats, axis=2).reshape(n, -1)]  # (N, C * stats), channel-major
    index = {c: i for i, c in enumerate(channel_names)}
    for _, num, den in RATIOS:
        if num in index and den in index:
            # Readings can touch 0 (clipped sensors): a floor keeps the ratio finite.
            columns.append((last[:, index[num]]
                            / np.maximum(np.abs(last[:, index[den]]), 1e-3))[:, None])
    columns.append(np.eye(num_areas, dtype=np.float32)[np.asarray(area, np.int64)])
    return np.concatenate(columns, axis=1).astype(np.float32)


def source_features(source: Any, channel_names: Sequence[str], num_areas: int,
                    area_map: np.ndarray | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Features of every window of a window source (read `CHUNK` windows at a time), and the
    source's other fields ("label", "risk", "area": the source's own area index).

    `area_map` maps the source's area index to the run's (a new log may hold fewer areas).
    """
    feats, rest = [], []
    for start in range(0, len(source), CHUNK):
        batch = source.read_batch(np.arange(start, min(start + CHUNK, len(source))))
        area = batch["area"] if area_map is None else area_map[batch["area"]]
        feats.append(window_features(batch["x"], area, channel_names, num_areas))
        rest.append({k: v for k, v in batch.items() if k != "x"})
    fields = {k: np.concatenate([r[k] for r in rest]) for k in rest[0]} if rest else {}
    return np.concatenate(feats) if feats else np.zeros((0, 0), np.float32), fields

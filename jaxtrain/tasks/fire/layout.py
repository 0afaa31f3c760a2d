"""The ``jaxtrain-fire-v1`` HDF5 layout: one sensor node per area, one reading a minute.

Layout::

    / attrs: format, sample_period_s, channel_names, channel_units, class_names, area_names, seed
    /areas/<area>/readings   (T, 6) float32
    /areas/<area>/timestamp  (T,)   int64 unix seconds
    /areas/<area>/label      (T,)   int8 in {0: normal, 1: warning, 2: fire}
    /areas/<area>/risk       (T,)   float32 in [0, 1]

The synthetic generator (synthetic.py) and the reader (reader.py) both take the format's
names from here; what only the synthetic data choose (area names, start time) stays in
synthetic.py, whose source is the synthetic data's cache key.
"""

from __future__ import annotations

FORMAT = "jaxtrain-fire-v1"
SAMPLE_PERIOD_S = 60
CHANNEL_NAMES: tuple[str, ...] = ("temperature", "smoke", "co", "co2", "humidity", "pm25")
CHANNEL_UNITS: tuple[str, ...] = ("degC", "%/m", "ppm", "ppm", "%", "ug/m3")
CLASS_NAMES: tuple[str, ...] = ("normal", "warning", "fire")
DATASETS: tuple[str, ...] = ("readings", "timestamp", "label", "risk")

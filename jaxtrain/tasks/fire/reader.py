"""Reads and validates a ``jaxtrain-fire-v1`` file (layout.py), chunk by chunk.

Every problem is one line naming the file and the dataset or attribute at fault, so a bad
log stops a run before training with a message a person can act on.
"""

from __future__ import annotations

import dataclasses
import os

import h5py
import numpy as np

from jaxtrain.data.hdf5 import check_format, read_validated, str_list
from jaxtrain.tasks.fire.layout import CHANNEL_NAMES, CLASS_NAMES, DATASETS, FORMAT, SAMPLE_PERIOD_S

_C = len(CHANNEL_NAMES)
_CHUNK = 1 << 17  # rows validated at a time: bounds memory for any length


@dataclasses.dataclass(frozen=True)
class FireFile:
    """Validated layout of a fire log: names, per-area lengths and label counts."""

    path: str
    area_names: list[str]
    channel_names: list[str]
    channel_units: list[str]
    class_names: list[str]
    lengths: list[int]  # minutes per area
    label_counts: np.ndarray  # (num_areas, num_classes) int64; .sum(0) for the whole file
    sample_period_s: int
    seed: int | None  # generator seed; None for logs from a real deployment


def read_fire_file(path: str | os.PathLike[str]) -> FireFile:
    """Open and validate a fire log chunk by chunk.

    Raises FileNotFoundError if ``path`` does not exist and a one-line
    ``ValueError("<path>: <dataset or attribute>: <problem>")`` for anything else.
    """
    return read_validated(path, "fire data", _read_layout)


def _read_layout(f: h5py.File, path: str) -> FireFile:
    def fail(what: str) -> ValueError:
        return ValueError(f"{path}: {what}")

    check_format(f, path, FORMAT)
    names: dict[str, list[str]] = {}
    expected = {"channel_names": _C, "channel_units": _C, "class_names": len(CLASS_NAMES)}
    for key in ("channel_names", "channel_units", "class_names", "area_names"):
        if key not in f.attrs:
            raise fail(f"missing root attribute {key!r}")
        names[key] = str_list(f.attrs[key])
        if key in expected and len(names[key]) != expected[key]:
            raise fail(
                f"root attribute {key!r} has {len(names[key])} entries, expected {expected[key]}"
            )
    if not names["area_names"]:
        raise fail("root attribute 'area_names' is empty")
    try:
        period = int(f.attrs.get("sample_period_s", SAMPLE_PERIOD_S))
        seed = int(f.attrs["seed"]) if "seed" in f.attrs else None
    except (TypeError, ValueError):
        raise fail("root attributes 'sample_period_s'/'seed' must be integers") from None
    if not isinstance(f.get("areas"), h5py.Group):
        raise fail("missing group /areas")
    lengths: list[int] = []
    counts = np.zeros((len(names["area_names"]), len(CLASS_NAMES)), dtype=np.int64)
    for i, area in enumerate(names["area_names"]):
        lengths.append(_check_area(f, path, area, names["channel_names"], counts[i]))
    return FireFile(
        path=path,
        area_names=names["area_names"],
        channel_names=names["channel_names"],
        channel_units=names["channel_units"],
        class_names=names["class_names"],
        lengths=lengths,
        label_counts=counts,
        sample_period_s=period,
        seed=seed,
    )


def _check_area(f: h5py.File, path: str, area: str, channels: list[str], counts: np.ndarray) -> int:
    """Validate /areas/<area> block by block; add its label histogram to counts."""
    grp = f"/areas/{area}"

    def fail(what: str) -> ValueError:
        return ValueError(f"{path}: {what}")

    if not isinstance(f["areas"].get(area), h5py.Group):
        raise fail(f"{grp}: missing group")
    ds: dict[str, h5py.Dataset] = {}
    for name in DATASETS:
        obj = f["areas"][area].get(name)
        found = isinstance(obj, h5py.Dataset)
        if not found:
            raise fail(f"{grp}/{name}: missing dataset")
        ds[name] = obj
    shape = ds["readings"].shape
    if len(shape) != 2 or shape[1] != _C:
        raise fail(f"{grp}/readings: shape {shape}, expected (T, {_C})")
    n = shape[0]
    if n == 0:
        raise fail(f"{grp}/readings: empty")
    kinds = {"readings": "f", "timestamp": "iu", "label": "iu", "risk": "f"}
    for name, d in ds.items():
        if d.dtype.kind not in kinds[name]:
            raise fail(
                f"{grp}/{name}: dtype {d.dtype} is not {'float' if kinds[name] == 'f' else 'int'}"
            )
        if name != "readings" and d.shape != (n,):
            raise fail(f"{grp}/{name}: shape {d.shape}, expected ({n},) like readings")
    prev_ts: int | None = None
    for b0 in range(0, n, _CHUNK):
        b1 = min(b0 + _CHUNK, n)
        x, ts, lab, rsk = (ds[k][b0:b1] for k in DATASETS)
        nonfinite = ~np.isfinite(x)
        if nonfinite.any():
            r, c = np.argwhere(nonfinite)[0]
            raise fail(
                f"{grp}/readings: non-finite value {x[r, c]} at row {b0 + r} ({channels[c]})"
            )
        out = (lab < 0) | (lab >= counts.size)
        if out.any():
            r = int(np.argmax(out))
            raise fail(
                f"{grp}/label: value {int(lab[r])} at row {b0 + r}, expected 0..{counts.size - 1}"
            )
        counts += np.bincount(lab.astype(np.int64), minlength=counts.size)
        out = ~((rsk >= 0.0) & (rsk <= 1.0))  # written this way to catch NaN too
        if out.any():
            r = int(np.argmax(out))
            raise fail(f"{grp}/risk: value {rsk[r]} at row {b0 + r}, expected within [0, 1]")
        ts = ts.astype(np.int64)
        steps = np.diff(ts, prepend=ts[0] - 1 if prev_ts is None else prev_ts)
        if (steps <= 0).any():
            raise fail(f"{grp}/timestamp: not increasing at row {b0 + int(np.argmax(steps <= 0))}")
        prev_ts = int(ts[-1])
    return n

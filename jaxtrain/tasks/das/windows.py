"""Sliding windows over DAS recordings: the window index, its cache, the grain source, and
the same windows as device-resident data."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from jaxtrain.data.device import DeviceData, slices
from jaxtrain.data.hdf5 import PerProcess
from jaxtrain.files import atomic_path
from jaxtrain.tasks.das.reader import DASLayout, Recording, open_recording, resolve_layout

Record = dict[str, np.ndarray]


# ----------------------------------------------------------------------------- window index
def _fingerprint(files: Sequence[str], layout: DASLayout, window: int, stride: int) -> str:
    """Identity of the inputs: path, size and mtime of every file, window, stride, layout."""
    stats = []
    for p in files:
        st = os.stat(p)
        stats.append([os.path.abspath(p), st.st_size, st.st_mtime_ns])
    blob = json.dumps({"version": 1, "files": stats, "window": window, "stride": stride,
                       "layout": dataclasses.asdict(layout)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def build_window_index(files: Sequence[str | os.PathLike[str]], layout: DASLayout | str,
                       window: int = 1024, stride: int = 512, *,
                       cache_path: str | os.PathLike[str] | None = None) -> np.ndarray:
    """All sliding windows as int64 (N, 2) rows of (file index, start sample).

    A file of T samples gives floor((T - window) / stride) + 1 windows (none if T < window).
    With `cache_path` (an .npz), the index is reused while the fingerprint (each file's path,
    size and mtime, window, stride, layout) matches, and rebuilt (files reopened) otherwise.
    """
    if window < 1 or stride < 1:
        raise ValueError(f"window and stride must be >= 1, got {window}, {stride}")
    files = [os.fspath(p) for p in files]
    layout = resolve_layout(layout)
    key = _fingerprint(files, layout, window, stride)
    cache = None if cache_path is None else os.fspath(cache_path)
    if cache is not None and os.path.exists(cache):
        try:
            with np.load(cache, allow_pickle=False) as z:
                if str(z["fingerprint"]) == key:
                    return z["index"].astype(np.int64)
        except (OSError, ValueError, KeyError):
            pass  # unreadable or old cache: rebuild it
    parts = []
    for i, p in enumerate(files):
        rec = open_recording(p, layout)
        count = max(0, (rec.num_samples - window) // stride + 1)
        starts = np.arange(count, dtype=np.int64) * stride
        parts.append(np.stack([np.full(count, i, np.int64), starts], 1))
    index = np.concatenate(parts) if parts else np.zeros((0, 2), np.int64)
    if cache is not None:
        # A file object, so numpy does not append ".npz" to the temporary name.
        with atomic_path(cache) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, index=index, fingerprint=np.array(key))
    return index


def normalize_per_channel(x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Zero mean, unit std per channel over time (last axis) of each window; float32.

    Channels with std <= eps (dead, flat) come out as zeros instead of NaN/inf.
    """
    x = np.asarray(x, dtype=np.float32)
    mean = x.mean(axis=-1, keepdims=True, dtype=np.float64)
    std = x.std(axis=-1, keepdims=True, dtype=np.float64)
    return ((x - mean) / np.where(std > eps, std, 1.0)).astype(np.float32)


def normalize_windows(x: Any, eps: float = 1e-6) -> Any:
    """`normalize_per_channel` in jnp, inside a jitted step (float32 sums: within ~1e-6)."""
    mean = x.mean(axis=-1, keepdims=True)
    std = x.std(axis=-1, keepdims=True)
    return (x - mean) / jnp.where(std > eps, std, 1.0)


# ----------------------------------------------------------------------------- grain source
class DASWindowSource:
    """grain random-access source over sliding windows of DAS files.

    Record i is window ``index[i] = (file id, start sample)``::

        {"x": float32 (channels, window), normalized per channel (unless normalize=False),
         "label": int32 (labels[i], or -1 without labels),
         "file": int32 file id (position in `files`), "start": int64 start sample}

    Only the window's rows are read (h5py slicing: the chunks it falls in), never a whole
    file. Files are opened lazily in the process that reads, at most `max_open_files` at
    a time (least recently used closed first), each with a `chunk_cache_bytes` HDF5 chunk
    cache, so memory stays under max_open_files x chunk_cache_bytes (512 MiB by default)
    however many files there are; reopening costs ~5 ms, so keep max_open_files at least
    the number of files a shuffled epoch touches when they are few. Handles are dropped on
    pickling, so grain can ship the source to worker processes. The constructor reads nothing.

    Built from a directory (`reader.list_recordings`, `labels.window_labels`)::

        files = list_recordings("/data/das")
        index = build_window_index(files, "jaxtrain", 1024, 512, cache_path="/tmp/idx.npz")
        y = window_labels(index, files, load_labels("/data/das"), 1024, sampling_rate)
        source = DASWindowSource(files, index, "jaxtrain", 1024, labels=y)

    Args:
      files: recording paths; the index's file ids point into this list.
      index: int64 (N, 2) (file id, start sample) rows, from `build_window_index`.
      layout: a `DASLayout` or `LAYOUTS` key, the same one the index was built with.
      window: samples per window (the index's window length).
      labels: optional (N,) per-window class ids (see `labels.window_labels`).
      normalize: per-channel zero mean / unit std per window (`normalize_per_channel`).
      max_open_files: open h5py handles kept per process.
      chunk_cache_bytes: HDF5 chunk cache per open file (random windows reuse little of it:
        a window touches ~2 chunks).
    """

    def __init__(self, files: Sequence[str | os.PathLike[str]], index: np.ndarray,
                 layout: DASLayout | str = "jaxtrain", window: int = 1024, *,
                 labels: np.ndarray | None = None, normalize: bool = True,
                 max_open_files: int = 128, chunk_cache_bytes: int = 4 * 2**20):
        self.files = [os.fspath(p) for p in files]
        self.index = np.asarray(index, np.int64).reshape(-1, 2)
        self.layout = resolve_layout(layout)
        self.window = int(window)
        if labels is not None:
            labels = np.asarray(labels, np.int32).reshape(-1)
            if len(labels) != len(self.index):
                raise ValueError(f"{len(labels)} labels for {len(self.index)} windows")
        self.labels = labels
        if len(self.index) and (self.index[:, 0].min() < 0
                                or self.index[:, 0].max() >= len(self.files)):
            raise ValueError(f"window index names file ids outside [0, {len(self.files)})")
        self.normalize = normalize
        self.chunk_cache_bytes = int(chunk_cache_bytes)
        self._recordings = PerProcess(self._open, max_open=max(1, int(max_open_files)))

    def __len__(self) -> int:
        return len(self.index)

    def __repr__(self) -> str:  # grain keys checkpoint state on it
        return (f"DASWindowSource(n={len(self)}, files={len(self.files)}, window={self.window}, "
                f"layout={self.layout.name!r})")

    def _open(self, file_id: int) -> Recording:
        return open_recording(self.files[file_id], self.layout,
                              cache_bytes=self.chunk_cache_bytes)

    def __getitem__(self, i: int) -> Record:
        file_id, start = (int(v) for v in self.index[i])
        x = self._recordings.get(file_id).read(start, start + self.window)
        if self.normalize:
            x = normalize_per_channel(x)
        label = -1 if self.labels is None else int(self.labels[i])
        return {"x": x, "label": np.int32(label), "file": np.int32(file_id),
                "start": np.int64(start)}


# ----------------------------------------------------------------------------- device-resident
def _stored_as_int16(dtype: np.dtype) -> bool:
    return dtype.kind in "iu" and dtype.itemsize <= 2 and dtype != np.uint16


def device_bytes(source: DASWindowSource, windows: int) -> int:
    """What `window_device_data` uploads for `source`'s files and `windows` windows: 2 bytes
    a sample (int16 counts or float16), a float32 scale per file and channel, 12 bytes a
    window. From the files' metadata; nothing is read."""
    recs = [open_recording(p, source.layout) for p in source.files]
    return sum(2 * r.num_samples * r.num_channels + 4 * r.num_channels for r in recs) \
        + 12 * windows


def window_device_data(splits: Mapping[str, DASWindowSource]) -> DeviceData:
    """The splits' windows as device data: every recording uploaded once, 2 bytes a sample,
    windows cut, scaled and normalized in the step (`gather`), so the host ships positions.

    Recordings stored as integers of up to 16 bits stay int16 counts (exact); float ones are
    divided by each channel's peak and kept as float16 (~3 significant digits, 5e-4 relative,
    far below DAS noise; per-window normalization removes the scale either way). The
    per-(file, channel) scale (the layout's scale attribute, times that peak) is applied
    before normalization, so dead-channel detection (`eps`) sees physical values as on the
    host. The splits must be windows of the same files, layout and window length.
    """
    first = next(iter(splits.values()))
    for name, src in splits.items():
        if (src.files, src.layout, src.window, src.normalize) != (
                first.files, first.layout, first.window, first.normalize):
            raise ValueError(f"split {name!r} reads other files or windows than the others")
    recs = [open_recording(p, first.layout) for p in first.files]
    used = np.unique(np.concatenate([src.index[:, 0] for src in splits.values()]))
    channels = {recs[i].num_channels for i in used}
    if len(channels) > 1:
        raise ValueError(f"recordings with {sorted(channels)} channels: one model input needs "
                         "one channel count")
    num_channels = channels.pop() if channels else 0
    offsets = np.zeros(len(recs), np.int64)
    total = 0
    for i in used:
        offsets[i], total = total, total + recs[i].num_samples
    if total >= 2**31:
        raise ValueError(f"{total} samples: too many for int32 window positions")
    exact = all(_stored_as_int16(recs[i].dtype) for i in used)
    series = np.zeros((num_channels, total), np.int16 if exact else np.float16)
    scale = np.ones((len(recs), num_channels), np.float32)
    for i in used:
        with recs[i] as rec:
            raw = rec.read_raw(0, rec.num_samples)
            if exact:
                series[:, offsets[i]:offsets[i] + rec.num_samples] = raw
                scale[i] = rec.scale
            else:
                peak = np.abs(raw).max(axis=1).astype(np.float64)
                peak = np.where(peak > 0, peak, 1.0)
                series[:, offsets[i]:offsets[i] + rec.num_samples] = raw / peak[:, None]
                scale[i] = peak * rec.scale
    index = np.concatenate([src.index for src in splits.values()])
    labels = np.concatenate([src.labels if src.labels is not None
                             else np.full(len(src), -1, np.int32) for src in splits.values()])
    counts = np.cumsum([0, *(len(src) for src in splits.values())])
    positions = {name: np.arange(counts[i], counts[i + 1], dtype=np.int32)
                 for i, name in enumerate(splits)}
    arrays = {"series": series, "scale": scale,
              "window_start": (offsets[index[:, 0]] + index[:, 1]).astype(np.int32),
              "window_file": index[:, 0].astype(np.int32),
              "window_label": labels.astype(np.int32)}
    window, normalize = first.window, first.normalize

    def gather(data: dict[str, Any], positions: Any) -> dict[str, Any]:
        file = data["window_file"][positions]
        x = slices(data["series"], data["window_start"][positions], window, axis=1)
        x = x.astype(jnp.float32) * data["scale"][file][:, :, None]
        return {"x": normalize_windows(x) if normalize else x,
                "label": data["window_label"][positions], "file": file}

    return DeviceData(arrays, positions, gather)

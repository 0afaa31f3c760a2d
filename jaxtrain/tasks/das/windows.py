"""Sliding windows over DAS recordings: the window index, its cache, and the grain source."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence

import numpy as np

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

"""HDF5 access shared by every system: one-line errors, per-process handles, window sources.

h5py handles cannot be pickled and must not be shared across a fork, and grain ships sources
to its worker processes by pickling: `PerProcess` is the one place that opens files lazily
in the process that reads and forgets them on pickling.
"""

from __future__ import annotations

import errno
import functools
import os
import threading
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, Generic, TypeVar

import h5py
import numpy as np

from jaxtrain.cli import one_line
from jaxtrain.data.device import DeviceData, slices

Record = dict[str, np.ndarray]
K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
V = TypeVar("V")


def open_hdf5(path: str | os.PathLike, what: str = "data") -> h5py.File:
    """Opens `path` read-only; a missing or non-HDF5 file is a one-line error naming it."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(errno.ENOENT, f"No such {what} file", path)
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise ValueError(f"{path}: not a readable HDF5 file ({one_line(e)})") from None


def read_validated(path: str | os.PathLike, what: str, read: Callable[[h5py.File, str], T]
                   ) -> T:
    """`read(file, path)` on the opened file: a missing, non-HDF5 or damaged file, and
    whatever `read` rejects, end as one line naming the file."""
    path = os.fspath(path)
    f = open_hdf5(path, what)
    try:
        with f:
            return read(f, path)
    except (OSError, KeyError, RuntimeError, TypeError) as e:
        # h5py reports damaged files lazily, from whichever object is touched first.
        raise ValueError(f"{path}: damaged HDF5 file ({one_line(e)})") from None


def str_list(value: object) -> list[str]:
    """An HDF5 string attribute/dataset (bytes or str, scalar or array) as a list of str."""
    items = np.atleast_1d(np.asarray(value, dtype=object)).tolist()
    return [v.decode() if isinstance(v, bytes) else str(v) for v in items]


def check_format(f: h5py.File, path: str, expected: str) -> None:
    """The file's root `format` attribute must name our layout; else a one-line error."""
    fmt = f.attrs.get("format")
    fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
    if fmt != expected:
        raise ValueError(f"{path}: root attribute 'format' is {fmt!r}, expected {expected!r}")


class PerProcess(Generic[K, V]):
    """`open_fn(key)` results cached per process and per reading thread, least recently used
    closed beyond `max_open` (per thread).

    After a fork or unpickling the cache starts empty, so each grain worker opens its own
    handles. Each thread has its own handles: grain's read threads share a source, and one
    thread evicting (closing) a handle another is reading from broke that read. `open_fn`
    must be picklable (a module function or `functools.partial`); values with a `close()`
    method are closed when evicted.
    """

    def __init__(self, open_fn: Callable[[K], V], max_open: int = 0):
        self.open_fn, self.max_open = open_fn, int(max_open)
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._local = threading.local()
        self._lock = threading.Lock()
        self._caches: list[dict[K, V]] = []  # every thread's, for close()

    def _items(self) -> dict[K, V]:
        if self._pid != os.getpid():  # forked: the parent's handles are not ours
            self._reset()
        items = getattr(self._local, "items", None)
        if items is None:
            items = self._local.items = {}  # insertion order = least recently used first
            with self._lock:
                self._caches.append(items)
        return items

    def get(self, key: K) -> V:
        items = self._items()
        value = items.pop(key, None)
        if value is None:
            value = self.open_fn(key)
            while self.max_open and len(items) >= self.max_open:
                _close(items.pop(next(iter(items))))
        items[key] = value  # most recently used last
        return value

    def __len__(self) -> int:
        if self._pid != os.getpid():
            return 0
        with self._lock:
            return sum(len(items) for items in self._caches)

    def close(self) -> None:
        if self._pid == os.getpid():
            with self._lock:
                for items in self._caches:
                    for value in items.values():
                        _close(value)
                    items.clear()
        self._reset()

    def __getstate__(self) -> dict[str, Any]:
        return {"open_fn": self.open_fn, "max_open": self.max_open}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["open_fn"], state["max_open"])


def _close(value: Any) -> None:
    if hasattr(value, "close"):
        value.close()


class HDF5WindowSource:
    """Random access to windows `[end - length + 1, end]` of time-major HDF5 datasets.

    Args:
      streams: (file path, group path) pairs; each group holds datasets with time on axis 0.
      windows: int array (N, 2) of (stream index, window end row).
      length: window length in rows.
      window_fields: output name -> dataset name, returned as the whole window.
      point_fields: output name -> dataset name, returned at the window's last row (targets).
      stream_field: output name for the stream index (e.g. the area), or None.
      in_memory_bytes: per reading process, datasets are loaded whole into RAM on first use
        while their total stays under this; the rest are read lazily, window by window.
        Why: one h5py slice costs ~0.3 ms whatever its size, 100x a numpy slice, and a
        sensor series (5M rows x 6 channels = 120 MB) fits easily.
    """

    def __init__(self, streams: Sequence[tuple[str, str]], windows: np.ndarray, length: int,
                 window_fields: Mapping[str, str], point_fields: Mapping[str, str] | None = None,
                 stream_field: str | None = "stream", in_memory_bytes: int = 2**30):
        self.streams = [(os.fspath(p), g) for p, g in streams]
        self.windows = np.asarray(windows, np.int64).reshape(-1, 2)
        self.length = int(length)
        self.window_fields = dict(window_fields)
        self.point_fields = dict(point_fields or {})
        self.stream_field = stream_field
        self.in_memory_bytes = int(in_memory_bytes)
        self._files = PerProcess(functools.partial(h5py.File, mode="r",
                                                   rdcc_nbytes=16 * 2**20))
        self._arrays = PerProcess(self._load)  # (stream, name) -> array, per reading process
        self._loaded_bytes = 0

    def __len__(self) -> int:
        return len(self.windows)

    def __repr__(self) -> str:  # grain keys checkpoint state on it
        return (f"HDF5WindowSource(n={len(self)}, length={self.length}, "
                f"streams={len(self.streams)}, fields={sorted(self.window_fields)})")

    def _load(self, key: tuple[int, str]) -> np.ndarray | h5py.Dataset:
        """The dataset `name` of `stream`: in RAM within the budget, else the h5py dataset."""
        if not len(self._arrays):  # the first array of this (worker) process
            self._loaded_bytes = 0
        stream, name = key
        path, group = self.streams[stream]
        array = self._files.get(path)[group][name]
        if self._loaded_bytes + array.nbytes <= self.in_memory_bytes:
            array, self._loaded_bytes = array[...], self._loaded_bytes + array.nbytes
        return array

    def _array(self, stream: int, name: str) -> np.ndarray | h5py.Dataset:
        return self._arrays.get((stream, name))

    def __getitem__(self, index: int) -> Record:
        stream, end = (int(v) for v in self.windows[index])
        record = {name: np.array(self._array(stream, ds)[end - self.length + 1:end + 1])
                  for name, ds in self.window_fields.items()}
        record.update({name: np.asarray(self._array(stream, ds)[end])
                       for name, ds in self.point_fields.items()})
        if self.stream_field:
            record[self.stream_field] = np.int32(stream)
        return record

    def read_batch(self, indices: np.ndarray) -> Record:
        """Records `indices`, stacked: one numpy gather per stream and field for the series in
        RAM (microseconds per window, not one Python call each); lazy ones window by window."""
        indices = np.asarray(indices, np.int64)
        streams, ends = self.windows[indices, 0], self.windows[indices, 1]
        offsets = np.arange(1 - self.length, 1)
        groups = [(s, streams == s) for s in np.unique(streams)]
        out: Record = {}
        for name, ds in (*self.window_fields.items(), *self.point_fields.items()):
            window = name in self.window_fields
            first = self._array(int(streams[0]), ds)  # streams share trailing shape and dtype
            values = np.empty((len(indices), *((self.length,) if window else ()),
                               *first.shape[1:]), first.dtype)
            for s, sel in groups:
                array, rows = self._array(int(s), ds), ends[sel]
                if window:
                    rows = rows[:, None] + offsets
                if isinstance(array, np.ndarray):
                    values[sel] = array[rows]
                else:  # lazy h5py dataset: one read per window (h5py wants sorted slices)
                    values[sel] = np.stack([array[r[0]:r[-1] + 1] if window else array[r]
                                            for r in rows])
            out[name] = values
        if self.stream_field:
            out[self.stream_field] = streams.astype(np.int32)
        return out


def window_device_data(splits: Mapping[str, HDF5WindowSource]) -> DeviceData:
    """The splits' windows as device data: each stream's series uploaded once, windows cut
    in the step (`device.slices`), not shipped as overlapping copies (a 60-row window at
    stride 12 would be 5x the series).

    The splits must read the same streams and fields (splits of one file). Arrays: one
    series per field, every stream's rows concatenated ("series/<name>"), and per window
    its global end row and stream ("window_end", "window_stream"); the gather returns the
    records `read_batch` would, with the stored dtypes.
    """
    first = next(iter(splits.values()))
    for name, src in splits.items():
        if (src.streams, src.window_fields, src.point_fields, src.length) != (
                first.streams, first.window_fields, first.point_fields, first.length):
            raise ValueError(f"split {name!r} reads other streams or fields than the others")
    fields = {**first.window_fields, **first.point_fields}
    series: dict[str, np.ndarray] = {}
    for name, ds in fields.items():
        series[name] = np.concatenate([np.asarray(first._array(s, ds)[...])
                                       for s in range(len(first.streams))])
    rows = [len(first._array(s, next(iter(fields.values())))) for s in range(len(first.streams))]
    starts = np.concatenate([[0], np.cumsum(rows)[:-1]]).astype(np.int64)
    windows = np.concatenate([src.windows for src in splits.values()])
    ends = starts[windows[:, 0]] + windows[:, 1]
    if len(ends) and ends.max() >= 2**31:
        raise ValueError(f"{sum(rows)} rows: too many for int32 window positions")
    counts = np.cumsum([0, *(len(src) for src in splits.values())])
    positions = {name: np.arange(counts[i], counts[i + 1], dtype=np.int32)
                 for i, name in enumerate(splits)}
    arrays = {**{f"series/{k}": v for k, v in series.items()},
              "window_end": ends.astype(np.int32),
              "window_stream": windows[:, 0].astype(np.int32)}
    length, window_names = first.length, tuple(first.window_fields)
    stream_field = first.stream_field

    def gather(data: dict[str, Any], positions: Any) -> dict[str, Any]:
        end = data["window_end"][positions]
        out = {name: (slices(data[f"series/{name}"], end - (length - 1), length)
                      if name in window_names else data[f"series/{name}"][end])
               for name in fields}
        if stream_field:
            out[stream_field] = data["window_stream"][positions]
        return out

    return DeviceData(arrays, positions, gather)

"""Input pipeline: windows of HDF5 arrays served through grain, split without leakage.

- `HDF5WindowSource`: a grain random-access source; each record is a window of rows of
  time-major datasets in one or more HDF5 groups/files. h5py handles are opened lazily in
  the process that reads (grain workers are spawned and receive a pickled source).
- `split_windows`: cuts every stream into contiguous time blocks and assigns whole blocks to
  train/val/test, so overlapping windows never straddle two splits.
- `train_dataset` / `eval_dataset`: grain pipelines that give each process only its rows of
  every global batch (global shuffle, per-process slice), so N processes see exactly the
  batches one process would.
- `BatchFeeder`: moves batches onto the mesh ahead of the step and reports the iterator
  state of the first batch not yet consumed, which is what a checkpoint must store.
"""

from __future__ import annotations

import collections
import errno
import hashlib
import itertools
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import grain
import h5py
import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from jaxtrain import sharding as shd

Record = dict[str, np.ndarray]


def one_line(exc: BaseException) -> str:
    """An exception's message folded onto one line (for one-line user errors)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def open_hdf5(path: str | os.PathLike, what: str = "data") -> h5py.File:
    """Opens `path` read-only; a missing or non-HDF5 file is a one-line error naming it."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(errno.ENOENT, f"No such {what} file", path)
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise ValueError(f"{path}: not a readable HDF5 file ({one_line(e)})") from None


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


def generated_once(name: str, *, cache_dir: str, generator_file: str,
                   make: Callable[[str], None], done: str = "") -> str:
    """Path of synthetic data made by `make(path)` once, then reused.

    The path is `cache_dir/<name with the generator's source hash>`, so a changed generator
    never reuses stale data (`name` may hold `{version}`; appended otherwise). `done` names
    the file inside a generated directory that is written last (its presence means complete).
    Process 0 generates while the others wait; a host without a shared file system then
    makes its own copy.
    """
    with open(generator_file, "rb") as f:
        version = hashlib.sha1(f.read()).hexdigest()[:8]
    name = name.format(version=version) if "{version}" in name else f"{name}-{version}"
    path = os.path.join(os.path.abspath(os.path.expanduser(cache_dir)), name)
    marker = os.path.join(path, done) if done else path

    def generate() -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        logging.info("generating synthetic data: %s", path)
        make(path)

    if not os.path.exists(marker) and jax.process_index() == 0:
        generate()
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(f"generated {name}")
        if not os.path.exists(marker):
            generate()
    return path


def configured_or_generated(path: str, what: str, generated: Callable[[], str]) -> str:
    """`config.data.path` when set (it must exist), else the built-in synthetic data."""
    if not path:
        return generated()
    if not os.path.exists(os.path.expanduser(path)):
        raise FileNotFoundError(f"{what} not found: {path} (config.data.path)")
    return os.path.abspath(os.path.expanduser(path))


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
        self._files: dict[str, h5py.File] = {}
        self._arrays: dict[tuple[int, str], np.ndarray | h5py.Dataset] = {}
        self._loaded_bytes = 0
        self._pid = -1

    def __len__(self) -> int:
        return len(self.windows)

    def __repr__(self) -> str:  # grain keys checkpoint state on it
        return (f"HDF5WindowSource(n={len(self)}, length={self.length}, "
                f"streams={len(self.streams)}, fields={sorted(self.window_fields)})")

    def _array(self, stream: int, name: str) -> np.ndarray | h5py.Dataset:
        """The dataset `name` of `stream`: in RAM within the budget, else the h5py dataset."""
        if self._pid != os.getpid():  # first read in this (worker) process
            self._files, self._arrays, self._loaded_bytes = {}, {}, 0
            self._pid = os.getpid()
        array = self._arrays.get((stream, name))
        if array is None:
            path, group = self.streams[stream]
            if path not in self._files:
                self._files[path] = h5py.File(path, "r", rdcc_nbytes=16 * 2**20)
            array = self._files[path][group][name]
            if self._loaded_bytes + array.nbytes <= self.in_memory_bytes:
                array, self._loaded_bytes = array[...], self._loaded_bytes + array.nbytes
            self._arrays[(stream, name)] = array
        return array

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

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_files"], state["_arrays"], state["_pid"] = {}, {}, -1  # no h5py handles
        state["_loaded_bytes"] = 0
        return state


def split_windows(lengths: Sequence[int], length: int, *, blocks_per_stream: int,
                  fractions: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 0,
                  strides: Sequence[int] = (1, 1, 1),
                  block_keys: Sequence[np.ndarray] | None = None,
                  names: Sequence[str] = ("train", "val", "test")) -> dict[str, np.ndarray]:
    """Window ends per split; whole time blocks go to one split (no leakage by overlap).

    `block_keys` (one int array per stream, e.g. labels) stratifies: blocks are grouped by the
    largest key they contain (e.g. "has a fire") and each group is divided by `fractions`.
    Returns {name: (N, 2) int64 array of (stream, end)}.
    """
    rng = np.random.default_rng(seed)
    blocks = []  # (stream, start, stop, key)
    for s, n in enumerate(lengths):
        edges = np.linspace(0, n, blocks_per_stream + 1).astype(np.int64)
        for a, b in itertools.pairwise(edges):
            key = int(block_keys[s][a:b].max()) if block_keys is not None and b > a else 0
            blocks.append((s, int(a), int(b), key))
    assignment: dict[int, list[tuple[int, int, int]]] = {i: [] for i in range(len(names))}
    for key in sorted({blk[3] for blk in blocks}):
        group = [blk[:3] for blk in blocks if blk[3] == key]
        order = rng.permutation(len(group))
        counts = _split_counts(len(group), fractions)
        start = 0
        for i, c in enumerate(counts):
            assignment[i] += [group[j] for j in order[start:start + c]]
            start += c
    out = {}
    for i, name in enumerate(names):
        ends = [np.stack([np.full(len(r), s), r], 1)
                for s, a, b in sorted(assignment[i])
                for r in [np.arange(a + length - 1, b, strides[i], dtype=np.int64)] if len(r)]
        out[name] = np.concatenate(ends) if ends else np.zeros((0, 2), np.int64)
    return out


def _split_counts(n: int, fractions: Sequence[float]) -> list[int]:
    """Largest-remainder rounding, with at least one block per split when there are enough."""
    raw = np.asarray(fractions, float) / sum(fractions) * n
    counts = np.floor(raw).astype(int)
    for i in np.argsort(raw - counts)[::-1][: n - counts.sum()]:
        counts[i] += 1
    if n >= len(fractions):
        for i in np.flatnonzero(counts == 0):
            counts[i] += 1
            counts[np.argmax(counts)] -= 1
    return counts.tolist()


def _apply(ds: grain.MapDataset, transform: Callable | None,
           random_transform: Callable | None) -> grain.MapDataset:
    if transform is not None:
        ds = ds.map(transform)
    if random_transform is not None:
        ds = ds.random_map(random_transform)
    return ds


class _ShuffledBatchIndices:
    """Global batch b -> this process's record indices, from one numpy permutation per epoch.

    Why not grain's shuffle + batch: they cost ~40 us per record in Python (23k records/s per
    process, measured), too slow for small records; here a whole batch is one slice. The
    stream runs across epochs like grain's repeat: position p is record perm_{p // n}[p % n].
    """

    def __init__(self, n: int, local: int, index: int, count: int, seed: int):
        self.n, self.local, self.index, self.count, self.seed = n, local, index, count, seed
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        perm = self._perms.get(epoch)
        if perm is None:
            perm = np.random.default_rng([self.seed, epoch]).permutation(self.n)
            self._perms = {e: p for e, p in self._perms.items() if e >= epoch - 1}
            self._perms[epoch] = perm
        return perm

    def __call__(self, batch: int) -> np.ndarray:
        start = (batch * self.count + self.index) * self.local
        pos = np.arange(start, start + self.local)
        epochs = pos // self.n
        out = np.empty(self.local, np.int64)
        for e in np.unique(epochs):
            sel = epochs == e
            out[sel] = self._perm(int(e))[pos[sel] % self.n]
        return out


def train_dataset(source: Any, *, global_batch_size: int, mesh: Mesh, seed: int,
                  num_epochs: int, transform: Callable[[Record], Record] | None = None,
                  random_transform: Callable[[Record, np.random.Generator], Record] | None = None,
                  batch_transform: Callable[[Record], Record] | None = None,
                  worker_count: int = 0, read_threads: int = 2,
                  process: tuple[int, int] | None = None) -> grain.IterDataset:
    """Shuffled (reshuffled every epoch), batched records: this process's rows only.

    The global order is one seeded permutation per epoch; each global batch is cut into
    `process_count` consecutive slices and this process reads only its own slice.
    `transform` / `random_transform` map single records; `batch_transform` maps whole host
    batches (vectorized numpy: one call per batch instead of one per record).
    `process` = (index, count) overrides jax's (for tests).
    """
    index, count = process or (jax.process_index(), jax.process_count())
    local = shd.process_batch_size(global_batch_size, mesh) if process is None \
        else global_batch_size // count
    if hasattr(source, "read_batch") and transform is None and random_transform is None:
        ds = grain.MapDataset.range(num_epochs * len(source) // (local * count))
        ds = ds.map(_ShuffledBatchIndices(len(source), local, index, count, seed))
        ds = ds.map(source.read_batch)
    else:
        ds = grain.MapDataset.source(source).seed(seed).shuffle().repeat(num_epochs)
        ds = _apply(ds, transform, random_transform)
        ds = ds.batch(local, drop_remainder=True)[index::count]
    if batch_transform is not None:
        ds = ds.map(batch_transform)
    it = ds.to_iter_dataset(grain.ReadOptions(num_threads=read_threads,
                                              prefetch_buffer_size=2 * read_threads))
    if worker_count > 0:
        it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
    return it


class _PaddedSource:
    """Pads a source to `size` records by repeating the last; `valid` marks real ones."""

    def __init__(self, source: Any, size: int):
        self.source, self.size = source, size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int) -> Record:
        n = len(self.source)
        return {**self.source[min(i, n - 1)], "valid": np.bool_(i < n)}


def eval_dataset(source: Any, *, global_batch_size: int, mesh: Mesh,
                 transform: Callable[[Record], Record] | None = None,
                 batch_transform: Callable[[Record], Record] | None = None,
                 read_threads: int = 2) -> grain.IterDataset:
    """One ordered pass, padded to whole global batches; `valid` masks the padding.

    `batch_transform` must keep the batch's other keys (`valid` among them)."""
    if len(source) == 0:
        raise ValueError("evaluation split is empty")
    local = shd.process_batch_size(global_batch_size, mesh)
    padded = -(-len(source) // global_batch_size) * global_batch_size
    n = len(source)
    if hasattr(source, "read_batch") and transform is None:  # whole batches at a time
        index, count = jax.process_index(), jax.process_count()

        def read(batch: int) -> Record:
            i = np.arange(local) + (batch * count + index) * local
            return {**source.read_batch(np.minimum(i, n - 1)), "valid": i < n}

        ds = grain.MapDataset.range(padded // (local * count)).map(read)
    else:
        records = _apply(grain.MapDataset.source(source), transform, None)
        ds = grain.MapDataset.source(_PaddedSource(records, padded))
        ds = ds.batch(local, drop_remainder=True)[jax.process_index()::jax.process_count()]
    if batch_transform is not None:
        ds = ds.map(batch_transform)
    return ds.to_iter_dataset(grain.ReadOptions(num_threads=read_threads,
                                                prefetch_buffer_size=2 * read_threads))


class BatchFeeder:
    """Puts `ahead` global batches on the mesh before they are needed.

    `get_state()` is the iterator state just before the first batch not yet returned, so a
    checkpoint taken after step k resumes at batch k + 1 exactly, despite the look-ahead.
    """

    def __init__(self, iterator: Any, mesh: Mesh, ahead: int = 2):
        self._it, self._mesh, self._ahead = iterator, mesh, ahead
        self._queue: collections.deque = collections.deque()
        self._exhausted = False

    def _fill(self) -> None:
        while not self._exhausted and len(self._queue) < self._ahead:
            state = self._it.get_state()
            try:
                batch = next(self._it)
            except StopIteration:
                self._exhausted = True
                return
            self._queue.append((state, shd.make_global_batch(batch, self._mesh)))

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        self._fill()
        if not self._queue:
            raise StopIteration
        _, batch = self._queue.popleft()
        return batch

    def get_state(self) -> Any:
        return self._queue[0][0] if self._queue else self._it.get_state()

    def set_state(self, state: Any) -> None:
        self._queue.clear()
        self._exhausted = False
        self._it.set_state(state)

"""Streaming DAS windows from blocks: for recordings larger than the device budget.

`DASBlockSource` serves whole batches (`read_batch`) from blocks of consecutive samples read
with one call each (`os.preadv` at the chunks' offsets where the storage allows,
`direct_read.DirectRows`, so read threads overlap; else h5py) and kept in a byte-bounded LRU
(`BlockCache`), in a block-local epoch order (`jaxtrain.data.block_order`): each block is read
once per epoch while the cache holds two groups of blocks. Windows leave the host as compact raw
values (int16 counts, or float16 over each channel's block peak for float files), time-major as
the files store them, plus a per-window, per-channel float32 scale; `decode_windows` transposes,
scales and normalizes them inside the jitted step, as the device-resident path
(`windows.window_device_data`) does.
"""

from __future__ import annotations

import collections
import concurrent.futures
import os
import threading
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import h5py
import jax.numpy as jnp
import numpy as np

from jaxtrain.data.block_order import BlockOrder, block_lengths, window_blocks
from jaxtrain.data.direct_read import DirectRows
from jaxtrain.tasks.das.reader import DASLayout, Recording, open_recording
from jaxtrain.tasks.das.windows import DASWindowSource, _stored_as_int16, normalize_windows

Record = dict[str, np.ndarray]
Block = tuple[np.ndarray, np.ndarray]  # (samples, channels) int16/float16, (channels,) scale


class BlockCache:
    """Blocks in RAM, least recently used dropped once they exceed `max_bytes`.

    Shared by a process's read threads (grain reads batches from 2+ threads: per-thread
    caches would read a block once per thread) and by the splits' sources (one memory
    budget). A block being read by one thread is waited for, not read again, by another.
    Contents are dropped on pickling and after a fork: each grain worker fills its own.
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._items: collections.OrderedDict[Hashable, Block] = collections.OrderedDict()
        self._pending: dict[Hashable, threading.Event] = {}
        self.nbytes = 0
        self.reads = 0  # blocks read since the process started (for tests and logs)

    def get(self, key: Hashable, read: Callable[[], Block]) -> Block:
        """The cached block `key`, or `read()` once (other threads asking meanwhile wait)."""
        if self._pid != os.getpid():  # forked: the parent's blocks are not this process's
            self._reset()
        while True:
            with self._lock:
                hit = self._items.get(key)
                if hit is not None:
                    self._items.move_to_end(key)
                    return hit
                waiting = self._pending.get(key)
                if waiting is None:
                    done = self._pending[key] = threading.Event()
            if waiting is not None:
                waiting.wait()
                continue  # read by the other thread (or it failed: read it here)
            try:
                value = read()
            except BaseException:
                with self._lock:
                    self._pending.pop(key).set()
                raise
            with self._lock:
                self._items[key] = value
                self.nbytes += sum(a.nbytes for a in value)
                self.reads += 1
                while self.nbytes > self.max_bytes and len(self._items) > 1:
                    _, old = self._items.popitem(last=False)
                    self.nbytes -= sum(a.nbytes for a in old)
                self._pending.pop(key)
            done.set()
            return value

    def __len__(self) -> int:
        return len(self._items) if self._pid == os.getpid() else 0

    def __contains__(self, key: Hashable) -> bool:
        """Whether `key` is cached now (a peek: the LRU order stays)."""
        return self._pid == os.getpid() and key in self._items

    def __getstate__(self) -> dict[str, Any]:
        return {"max_bytes": self.max_bytes}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["max_bytes"])


def _chunk_samples(path: str, dataset: str, time_axis: int) -> int:
    """The data set's HDF5 chunk length along time (1 for a contiguous data set)."""
    with h5py.File(path, "r") as f:
        chunks = f[dataset].chunks
    return int(chunks[time_axis]) if chunks else 1


class DASBlockSource(DASWindowSource):
    """`DASWindowSource`'s windows, read by blocks for streaming (`read_batch`).

    A block is the samples [k L_f, (k + 1) L_f + window - 1) of file f (clipped to the file):
    every window starting in [k L_f, (k + 1) L_f), with L_f = `block_samples` rounded up to
    the file's chunk length along time. `read_batch` reads each block it needs with one read
    (all channels; `DirectRows` for plain time-major storage, else an h5py slice) into
    `cache` and cuts the windows from RAM::

        {"x": int16 (B, window, channels) raw counts, or float16 over each channel's block
              peak when some file is stored as floats (or as wider integers); time-major,
              so a window is one contiguous copy (a (channels, time) block cost a transposing
              copy of ~1 GB/s, 3x the h5py read) and the step transposes (`decode_windows`),
         "scale": float32 (B, channels), physical value = x * scale,
         "label": int32 (B,), "file": int32 (B,)}

    `decode_windows(x, scale)` in the step gives what `DASWindowSource[i]["x"]` gives on the
    host. With grain's read threads T and this process's batch B, each block is read once per
    epoch when a group holds at least 2 T B windows (the batches in flight then span at most
    the 2 groups the cache must hold). "start" is left out: the model never reads it (and
    int64 does not reach the device).
    `epoch_permutation(seed, epoch)` is the block-local order (`block_order.epoch_order`,
    `shuffle_blocks` blocks a group), which `pipeline.train_dataset` picks up. `__getitem__`
    stays the per-window read (normalized float32), e.g. for inspection.

    The constructor opens each file of the index once for its metadata (length, channels,
    dtype, scale, chunking) and reads no samples. Raises ValueError when `cache` cannot hold
    two groups of the largest block (reads would then repeat within an epoch) or the files'
    channel counts differ.
    """

    def __init__(self, files: Sequence[str | os.PathLike[str]], index: np.ndarray,
                 layout: DASLayout | str = "jaxtrain", window: int = 1024, *,
                 labels: np.ndarray | None = None, normalize: bool = True,
                 block_samples: int = 32768, shuffle_blocks: int = 16,
                 cache: BlockCache | None = None, memory_bytes: int = 512 * 2**20,
                 max_open_files: int = 128, chunk_cache_bytes: int = 4 * 2**20,
                 direct_reads: bool = True, block_read_threads: int = 4):
        super().__init__(files, index, layout, window, labels=labels, normalize=normalize,
                         max_open_files=max_open_files, chunk_cache_bytes=chunk_cache_bytes)
        self.cache = cache if cache is not None else BlockCache(memory_bytes)
        self.direct_reads = bool(direct_reads)
        # The first batch of a group needs most of its blocks: read them side by side (preadv
        # releases the GIL), so the disk sees several requests at once, not one at a time.
        self.block_read_threads = int(block_read_threads)
        self._pool: tuple[int, concurrent.futures.ThreadPoolExecutor] | None = None
        self._direct_rows: dict[int, DirectRows | None] = {}
        self.shuffle_blocks = int(shuffle_blocks)
        used = np.unique(self.index[:, 0])
        samples = np.zeros(len(self.files), np.int64)
        chunks = np.ones(len(self.files), np.int64)
        channels, exact = set(), True
        self._meta: dict[int, Recording] = {}  # file id -> validated metadata, no handle
        for i in used:
            rec = self._meta[int(i)] = open_recording(self.files[i], self.layout)
            samples[i], channels = rec.num_samples, channels | {rec.num_channels}
            exact = exact and _stored_as_int16(rec.dtype)
            chunks[i] = _chunk_samples(rec.path, rec.dataset,
                                       0 if self.layout.axis_order == "time_channel" else 1)
        if len(channels) > 1:
            raise ValueError(f"recordings with {sorted(channels)} channels: one model input "
                             "needs one channel count")
        self.num_channels = channels.pop() if channels else 0
        # Why one dtype for all: batches of one run must keep one shape and dtype (one compile).
        self.exact = exact
        self.lengths = block_lengths(block_samples, chunks)
        self.blocks, firsts = window_blocks(self.index, self.lengths)
        self.block_file = firsts[:, 0]
        self.block_start = firsts[:, 1]
        self.block_stop = np.minimum(samples[self.block_file],
                                     self.block_start + self.lengths[self.block_file]
                                     + self.window - 1)
        self.order = BlockOrder(self.blocks, self.shuffle_blocks)
        # 2 bytes a sample and the float32 scale per channel, as `BlockCache` counts them.
        largest = self.num_channels * (2 * int((self.block_stop - self.block_start).max(
            initial=0)) + 4)
        need = 2 * self.shuffle_blocks * largest
        if self.cache.max_bytes < need:
            raise ValueError(
                f"a block cache of {self.cache.max_bytes / 2**20:.0f} MiB cannot hold 2 groups "
                f"of {self.shuffle_blocks} blocks of {largest / 2**20:.1f} MiB: needs "
                f"{-(-need // 2**20)} MiB (config.data.stream_memory_mb), or smaller blocks "
                "(config.data.stream_block_samples) or groups (config.data.stream_shuffle_blocks)")

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_pool"] = None  # threads are per process
        return state

    def _read_pool(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._pool is None or self._pool[0] != os.getpid():
            self._pool = (os.getpid(), concurrent.futures.ThreadPoolExecutor(
                self.block_read_threads, thread_name_prefix="das-blocks"))
        return self._pool[1]

    def __repr__(self) -> str:  # grain keys checkpoint state on it
        return (f"DASBlockSource(n={len(self)}, files={len(self.files)}, window={self.window}, "
                f"layout={self.layout.name!r}, blocks={len(self.block_file)}, "
                f"group={self.shuffle_blocks})")

    def _open(self, file_id: int) -> Recording:
        # A fresh copy of the metadata validated by the constructor rather than a second
        # validation: ~3 ms a file, as much as reading a block of 15k samples x 64 channels.
        m = self._meta[file_id]
        return Recording(m.path, m.layout, m.dataset, m.num_samples, m.num_channels,
                         m.sampling_rate, m.channel_spacing, m.start_time, m.scale, m.dtype,
                         cache_bytes=self.chunk_cache_bytes)

    def epoch_permutation(self, seed: int, epoch: int) -> np.ndarray:
        """The windows' order in `epoch`: blocks permuted, windows permuted within groups."""
        return self.order(seed, epoch)

    def _direct(self, file_id: int) -> DirectRows | None:
        """File `file_id`'s reader outside h5py (time-major plain storage), else None."""
        if file_id not in self._direct_rows:  # two threads may both look: same answer
            m = self._meta[file_id]
            self._direct_rows[file_id] = (DirectRows.open(m.path, m.dataset)
                                          if m.layout.axis_order == "time_channel" else None)
        return self._direct_rows[file_id]

    def _read_block(self, block: int) -> Block:
        file_id = int(self.block_file[block])
        start, stop = int(self.block_start[block]), int(self.block_stop[block])
        direct = self._direct(file_id) if self.direct_reads else None
        if direct is not None:  # preadv, outside h5py's lock: read threads overlap
            rec = self._meta[file_id]
            raw = direct.rows(start, stop)
            rec.check_finite(raw, start, time_major=True)
        else:
            rec = self._recordings.get(file_id)
            raw = rec.read_raw(start, stop, time_major=True)
        if self.exact:
            return raw.astype(np.int16, copy=False), np.full(self.num_channels, rec.scale,
                                                             np.float32)
        # float16 over the block's channel peak (a file's peak would need a pass over it).
        peak = np.abs(raw).max(axis=0).astype(np.float64)
        peak = np.where(peak > 0, peak, 1.0)
        data = (raw / peak.astype(np.float32)).astype(np.float16)
        return data, (peak * rec.scale).astype(np.float32)

    def _key(self, block: int) -> Hashable:
        return (self.files[int(self.block_file[block])], int(self.block_start[block]),
                int(self.block_stop[block]))

    def block(self, block: int) -> Block:
        """Block `block` from the cache (read on a miss)."""
        return self.cache.get(self._key(block), lambda: self._read_block(block))

    def read_batch(self, indices: np.ndarray) -> Record:
        """Windows `indices`, stacked, cut from their blocks (one read per block)."""
        indices = np.asarray(indices, np.int64).reshape(-1)
        blocks = self.blocks[indices]
        offsets = self.index[indices, 1] - self.block_start[blocks]
        x = np.empty((len(indices), self.window, self.num_channels),
                     np.int16 if self.exact else np.float16)
        scale = np.empty((len(indices), self.num_channels), np.float32)
        order = np.argsort(blocks, kind="stable")
        bounds = np.flatnonzero(np.diff(blocks[order])) + 1
        needed = blocks[order][np.r_[0, bounds]] if len(order) else blocks[:0]
        # Most batches find all their blocks cached: only misses go to the read threads.
        missing = [b for b in needed.tolist() if self._key(b) not in self.cache]
        if self.block_read_threads > 1 and len(missing) > 1:  # fill the cache side by side
            list(self._read_pool().map(self.block, missing))
        for rows in np.split(order, bounds) if len(order) else ():
            data, block_scale = self.block(int(blocks[rows[0]]))
            scale[rows] = block_scale
            for row in rows.tolist():  # slice copies: 4x faster than one fancy-index gather
                start = int(offsets[row])
                x[row] = data[start:start + self.window]
        labels = (np.full(len(indices), -1, np.int32) if self.labels is None
                  else self.labels[indices])
        return {"x": x, "scale": scale, "label": labels,
                "file": self.index[indices, 0].astype(np.int32)}


def stream_source(source: DASWindowSource, cache: BlockCache, block_samples: int,
                  shuffle_blocks: int) -> DASBlockSource:
    """`source`'s windows (same files, index, labels) as a `DASBlockSource` on `cache`."""
    return DASBlockSource(source.files, source.index, source.layout, source.window,
                          labels=source.labels, normalize=source.normalize,
                          block_samples=block_samples, shuffle_blocks=shuffle_blocks,
                          cache=cache, max_open_files=source._recordings.max_open,
                          chunk_cache_bytes=source.chunk_cache_bytes)


def decode_windows(x: Any, scale: Any, normalize: bool = True) -> Any:
    """In the step: `read_batch`'s compact time-major windows as (B, channels, window),
    scaled to physical values (so dead-channel detection sees what the host sees), then
    normalized per channel (`normalize_windows`)."""
    x = jnp.swapaxes(x, 1, 2).astype(jnp.float32) * scale[:, :, None]
    return normalize_windows(x) if normalize else x

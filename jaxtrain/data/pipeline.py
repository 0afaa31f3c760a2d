"""Input pipeline: grain datasets that give each process its rows of every global batch.

- `train_dataset` / `eval_dataset`: global shuffle (reshuffled every epoch), per-process
  slice, so N processes see exactly the batches one process would.
- `read_mode`: how a source is read, said once and recorded in results.json: whole batches
  (`read_batch` + one numpy permutation per epoch) or record by record (grain's shuffle).
- `BatchFeeder`: moves batches onto the mesh ahead of the step and reports the iterator
  state of the first batch not yet consumed, which is what a checkpoint must store.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Iterator
from typing import Any

import grain
import jax
import numpy as np
from jax.sharding import Mesh

from jaxtrain import sharding as shd

Record = dict[str, np.ndarray]
Transform = Callable[[Record], Record]
RandomTransform = Callable[[Record, np.random.Generator], Record]


def read_mode(source: Any, transform: Transform | None = None,
              random_transform: RandomTransform | None = None) -> str:
    """"batches" when `source.read_batch` serves whole batches and no per-record transform
    needs single records; else "records". The two shuffle differently (same records per
    epoch, another order), so the mode is part of a run's recorded set-up."""
    per_record = transform is not None or random_transform is not None
    return "batches" if hasattr(source, "read_batch") and not per_record else "records"


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
    `permutation(seed, epoch)`, when given, replaces the uniform permutation (e.g. a block
    order for streaming reads, `block_order.BlockOrder`); it must be a pure function of
    (seed, epoch), so resume and per-process slices stay exact.
    """

    def __init__(self, n: int, local: int, index: int, count: int, seed: int,
                 permutation: Callable[[int, int], np.ndarray] | None = None):
        self.n, self.local, self.index, self.count, self.seed = n, local, index, count, seed
        self.permutation = permutation
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        perm = self._perms.get(epoch)
        if perm is None:
            perm = (np.random.default_rng([self.seed, epoch]).permutation(self.n)
                    if self.permutation is None else self.permutation(self.seed, epoch))
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
                  num_epochs: int, transform: Transform | None = None,
                  random_transform: RandomTransform | None = None,
                  batch_transform: Transform | None = None,
                  worker_count: int = 0, read_threads: int = 2,
                  process: tuple[int, int] | None = None) -> grain.IterDataset:
    """Shuffled (reshuffled every epoch), batched records: this process's rows only.

    The global order is one seeded permutation per epoch; each global batch is cut into
    `process_count` consecutive slices and this process reads only its own slice.
    `transform` / `random_transform` map single records; `batch_transform` maps whole host
    batches (vectorized numpy: one call per batch instead of one per record).
    `process` = (index, count) overrides jax's (for tests). `read_mode` says how records
    are read and shuffled; in "batches" mode a source's `epoch_permutation(seed, epoch)`, if
    it has one, gives each epoch's order (streaming sources keep reads block-local).
    """
    index, count = process or (jax.process_index(), jax.process_count())
    local = shd.process_batch_size(global_batch_size, mesh) if process is None \
        else global_batch_size // count
    if read_mode(source, transform, random_transform) == "batches":
        ds = grain.MapDataset.range(num_epochs * len(source) // (local * count))
        ds = ds.map(_ShuffledBatchIndices(len(source), local, index, count, seed,
                                          getattr(source, "epoch_permutation", None)))
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
                 transform: Transform | None = None,
                 batch_transform: Transform | None = None,
                 read_threads: int = 2) -> grain.IterDataset:
    """One ordered pass, padded to whole global batches; `valid` masks the padding.

    `batch_transform` must keep the batch's other keys (`valid` among them)."""
    if len(source) == 0:
        raise ValueError("evaluation split is empty")
    local = shd.process_batch_size(global_batch_size, mesh)
    padded = -(-len(source) // global_batch_size) * global_batch_size
    n = len(source)
    if read_mode(source, transform) == "batches":
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
    """Puts `ahead` global batches on the mesh before they are needed, from a thread.

    The thread reads the host iterator and starts each batch's host-to-device copy while the
    main thread dispatches steps, so the copy of batch n + 1 overlaps step n (the loop only
    waits when the input is slower than the step). `get_state()` is the iterator state just
    before the first batch not yet returned, so a checkpoint taken after step k resumes at
    batch k + 1 exactly, despite the look-ahead.
    """

    def __init__(self, iterator: Any, mesh: Mesh, ahead: int = 2):
        self._it, self._mesh, self._ahead = iterator, mesh, ahead
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._reset()

    def _reset(self) -> None:
        self._queue: collections.deque = collections.deque()  # (state before, batch)
        self._next_state: Any = None  # state before the batch being read, when the queue is empty
        self._done = False  # the iterator ended, or raised (`_error`)
        self._error: BaseException | None = None
        self._stopping = False

    def _start(self) -> None:
        if self._thread is None:
            self._next_state = self._it.get_state()
            self._thread = threading.Thread(target=self._produce, name="BatchFeeder",
                                            daemon=True)
            self._thread.start()

    def _produce(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stopping or len(self._queue) < self._ahead)
                if self._stopping:
                    return
                state = self._next_state
            try:
                batch = shd.make_global_batch(next(self._it), self._mesh)
            except BaseException as e:  # StopIteration included: handed to the consumer
                with self._cond:
                    self._done = True
                    self._error = None if isinstance(e, StopIteration) else e
                    self._cond.notify_all()
                return
            with self._cond:
                self._queue.append((state, batch))
                self._next_state = self._it.get_state()
                self._cond.notify_all()

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        self._start()
        with self._cond:
            self._cond.wait_for(lambda: self._queue or self._done)
            if not self._queue:
                if self._error is not None:
                    raise self._error
                raise StopIteration
            _, batch = self._queue.popleft()
            self._cond.notify_all()
        return batch

    def get_state(self) -> Any:
        if self._thread is None:
            return self._it.get_state()
        with self._cond:
            return self._queue[0][0] if self._queue else self._next_state

    def close(self) -> None:
        """Stops the reading thread (it finishes the batch it is reading)."""
        if self._thread is not None:
            with self._cond:
                self._stopping = True
                self._cond.notify_all()
            self._thread.join()
            self._thread = None

    def set_state(self, state: Any) -> None:
        self.close()
        self._reset()
        self._it.set_state(state)

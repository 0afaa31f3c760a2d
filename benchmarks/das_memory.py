"""Out-of-core DAS input: every window of a data set far larger than the memory allowed,
through the training input pipeline, against this disk's own sequential read rate.

    python -m benchmarks.das_memory --batch_size=512 --shuffle_blocks=32  # GPU batch, 8 GiB
    python -m benchmarks.das_memory --direct_reads=true,false  # preadv beside h5py reads
    python -m benchmarks.das_memory --paths=windows --workers=0,2,4  # one read per window
    python -m benchmarks.das_memory --size_gb=2 --memory_limit_gb=1 --workers=0 \
        --data_dir=/tmp/das-quick --delete_data  # ~1 min
    python -m benchmarks.das_memory --delete_data     # remove the data set afterwards

Paths (`--paths`): "blocks" is training's streaming input (`data.stream=blocks`:
`DASBlockSource` through `pipeline.train_dataset`, one read per block into a bounded cache,
raw int16 windows), "windows" the per-window h5py reads with normalization in the source.
The disk's sequential rate (`sequential_read_rate`: the files read front to back after their
pages are dropped) is measured before and after every pass, and each pass's data rate (each
stored sample counted once) is given as a fraction of the faster neighbouring reading.

Data set (`make_dataset`): a few recordings from the DAS generator (`synthetic.generate`,
64 channels, int16, 120 s) plus long files (`--file_gb` each, real interrogators' case: few files of
many GB) that loop the first generated recording, streamed to disk in 64 MiB slabs, so 8 GiB
take about a minute to write. Same layout, attributes and (1024, channels) chunks as the
generator. Reused while `<data_dir>/das_memory_manifest.json` matches the parameters.

Each pass runs in its own subprocess (the "main process" of training), which builds
`DASWindowSource` over `build_window_index` (1024-sample windows, stride 512) and
streams it exactly like `jaxtrain.data.train_dataset` does (seeded global shuffle ->
per-window normalization in the source -> batch -> `to_iter_dataset(ReadOptions)` ->
`mp_prefetch(workers)`), except that the last partial batch is kept so that every window
can be checked to arrive exactly once (by its (file, start) fields). Before each pass the
data set's pages are dropped from the OS page cache (fsync + posix_fadvise DONTNEED on each
file, no root needed), so every pass reads from storage, not from RAM.

Memory, measured from outside by this (parent) process, every `--sample_s`:
  * tree RSS: sum of VmRSS over the pass's process and all its descendants (grain workers).
    Conservative: pages shared between processes (the interpreter, jax/numpy libraries, the
    shared-memory batches grain passes from workers) count once per process.
  * tree PSS: sum of Pss (/proc/PID/smaps_rollup), shared pages divided among their users:
    the tree's physical footprint. Sampled once a second only (smaps_rollup costs ~9 ms per
    process; VmRSS 0.1 ms); the sampler's CPU time is reported (`sampler_cpu_s`).
  * sum of per-process VmHWM (kernel high-water marks): an upper bound on the tree's peak
    that no sampling interval can miss (the peaks of different processes need not coincide).
  * getrusage goes to the JSON only as a cross-check: RUSAGE_CHILDREN.ru_maxrss is the
    largest single (reaped) worker, not a sum, and RUSAGE_SELF.ru_maxrss keeps the peak of
    the forked parent image from before exec; hence the sampling of /proc.
The page cache is not counted: it is the kernel's, reclaimable, and dropped before each pass.
Enforcement: a watchdog kills the whole pass (its process group) as soon as the sampled tree
RSS (`--limit_metric=rss`, default) or PSS exceeds `--memory_limit_gb`; the pass then FAILS.
RLIMIT_AS is not used: jax and threads reserve far more address space than they touch.

"main peak" is the pass process's own VmHWM.

Throughput: windows/s and MB/s of stored (int16) bytes the windows request from HDF5
(windows x channels x window x 2: at stride 512 every sample is requested twice), from the
first batch to the last (steady; the JSON also has the rate including worker start-up).
"disk read" is read_bytes from /proc/PID/io summed over the processes alive in a sample
(its peak: a reaped child's I/O moves into its parent's counter), i.e. what reached storage,
including kernel readahead.
Output: a table on stdout and a JSON file (`--json_out`, default <data_dir>/das_memory.json).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import h5py
import numpy as np
from absl import app, flags

from jaxtrain.tasks.das.labels import load_labels
from jaxtrain.tasks.das.reader import open_recording
from jaxtrain.tasks.das.schema import LABELS_FILE
from jaxtrain.tasks.das.synthetic import generate
from jaxtrain.tasks.das.windows import DASWindowSource, build_window_index

GIB = 2**30
MANIFEST = "das_memory_manifest.json"
_VERSION = 1  # bump when the data set written by make_dataset changes
_SLAB_BYTES = 64 * 2**20  # rows per h5py write: big enough to stream at disk speed


# ----------------------------------------------------------------------------- data set
def _atomic_json(path: str, obj: Any) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def _write_looped(path: str, base: h5py.File, rows: int, start_unix: float) -> str:
    """A `rows`-long recording looping `base`'s /strain_rate, written slab by slab; returns
    its start time (ISO)."""
    src = base["strain_rate"]
    raw = src[...]
    channels = raw.shape[1]
    slab_rows = max(1024, _SLAB_BYTES // (channels * raw.dtype.itemsize) // 1024 * 1024)
    reps = -(-(slab_rows + len(raw)) // len(raw))
    slab = np.tile(raw, (reps, 1))  # any loop phase: slab[o:o + slab_rows]
    tmp = path + ".tmp"
    with h5py.File(tmp, "w") as f:
        for key, value in base.attrs.items():
            f.attrs[key] = value
        f.attrs["start_time_unix"] = float(start_unix)
        stamp = dt.datetime.fromtimestamp(start_unix, tz=dt.UTC).isoformat(timespec="milliseconds")
        f.attrs["start_time"] = stamp.replace("+00:00", "Z")
        ds = f.create_dataset("strain_rate", shape=(rows, channels), dtype=raw.dtype,
                              chunks=src.chunks)
        ds.attrs["dimensions"] = ["time", "channel"]
        for a in range(0, rows, slab_rows):
            n = min(slab_rows, rows - a)
            o = a % len(raw)
            ds[a:a + n] = slab[o:o + n]
    os.replace(tmp, path)
    return stamp.replace("+00:00", "Z")


def make_dataset(data_dir: str, size_gb: float, *, file_gb: float = 1.0,
                 generated_files: int = 4, channels: int = 64, seed: int = 0,
                 log: Callable[[str], None] = print) -> list[str]:
    """The benchmark's recordings in `data_dir` (written once, reused while parameters match).

    `generated_files` come from `synthetic.generate` (120 s each); the rest of `size_gb`
    (GiB of int16 samples) is long files of at most `file_gb` looping the first generated
    recording. Refuses to touch a non-empty directory it did not create.
    """
    data_dir = os.path.abspath(data_dir)
    params = {"version": _VERSION, "size_gb": size_gb, "file_gb": file_gb,
              "generated_files": generated_files, "channels": channels, "seed": seed}
    manifest_path = os.path.join(data_dir, MANIFEST)
    if os.path.exists(manifest_path):
        with open(manifest_path) as f:
            manifest = json.load(f)
        files = [os.path.join(data_dir, n) for n in manifest["files"]]
        if manifest["params"] == params and all(
                os.path.exists(p) and os.path.getsize(p) == manifest["files"][os.path.basename(p)]
                for p in files):
            log(f"reusing {len(files)} files in {data_dir}")
            return files
        delete_dataset(data_dir)
    elif os.path.isdir(data_dir) and os.listdir(data_dir):
        raise ValueError(f"{data_dir}: not empty and not a das_memory data set (no {MANIFEST}); "
                         "pass an empty or new --data_dir")
    os.makedirs(data_dir, exist_ok=True)
    t0 = time.perf_counter()
    files = generate(data_dir, num_files=generated_files, duration_s=120.0,
                     num_channels=channels, dtype="int16", seed=seed)
    labels = load_labels(data_dir)
    row_bytes = channels * 2
    remaining = int(size_gb * GIB) - sum(os.path.getsize(p) for p in files)
    per_file = max(1024, int(file_gb * GIB) // row_bytes)
    with h5py.File(files[0], "r") as base:
        base_name, start = os.path.basename(files[0]), float(base.attrs["start_time_unix"])
        k = 0
        while remaining > row_bytes * 1024:
            rows = min(per_file, remaining // row_bytes)
            name = f"das_long_{k:03d}.h5"
            path = os.path.join(data_dir, name)
            stamp = _write_looped(path, base, rows, start + (k + 1) * 86_400.0)
            files.append(path)
            # Events repeat with the loop but are not annotated: every window reads as noise.
            labels[name] = {"label": "noise", "events": [], "looped_from": base_name,
                            "start_time": stamp}
            remaining -= os.path.getsize(path)
            k += 1
            log(f"  wrote {name}: {rows} samples x {channels} channels "
                f"({os.path.getsize(path) / GIB:.2f} GiB, {time.perf_counter() - t0:.0f} s)")
    _atomic_json(os.path.join(data_dir, LABELS_FILE), labels)
    _atomic_json(manifest_path, {"params": params, "files": {
        os.path.basename(p): os.path.getsize(p) for p in files}})
    log(f"wrote {len(files)} files, {dataset_bytes(files) / GIB:.2f} GiB in "
        f"{time.perf_counter() - t0:.0f} s")
    return files


def dataset_bytes(files: Sequence[str]) -> int:
    return sum(os.path.getsize(p) for p in files)


def delete_dataset(data_dir: str) -> None:
    """Remove a directory made by `make_dataset` (only one holding its manifest)."""
    if not os.path.exists(os.path.join(data_dir, MANIFEST)):
        raise ValueError(f"{data_dir}: no {MANIFEST}; not deleting a directory this benchmark "
                         "did not create")
    shutil.rmtree(data_dir)


def drop_page_cache(files: Sequence[str]) -> None:
    """Evict the files' pages from the OS page cache (no root needed: our own files)."""
    for p in files:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)  # dirty pages cannot be dropped
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def sequential_read_rate(files: Sequence[str], read_bytes: int = 8 * 2**20) -> dict[str, Any]:
    """This storage's own limit: the files read front to back in `read_bytes` pieces after
    their pages are dropped (what `cat` or `dd` would get), bytes/s over all of them."""
    drop_page_cache(files)
    buf = bytearray(read_bytes)
    total, t0 = 0, time.perf_counter()
    for p in files:
        with open(p, "rb", buffering=0) as f:
            while n := f.readinto(buf):
                total += n
    seconds = time.perf_counter() - t0
    return {"bytes": total, "seconds": seconds, "mb_per_s": total / seconds / 1e6,
            "read_bytes": read_bytes}


# ----------------------------------------------------------------------------- memory
def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def process_tree(root: int) -> list[int]:
    """`root` and all its live descendants (via /proc/PID/task/TID/children)."""
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except (FileNotFoundError, ProcessLookupError):
            continue
        out.append(pid)
        for tid in tids:
            text = _read(f"/proc/{pid}/task/{tid}/children")
            todo += [int(c) for c in (text or "").split()]
    return out


def _field_kb(text: str | None, key: str) -> int:
    for line in (text or "").splitlines():
        if line.startswith(key):
            return int(line.split()[1]) * 1024
    return 0


class TreeMemorySampler:
    """Samples a process tree's memory in a thread; calls `on_exceed` once over the limit."""

    def __init__(self, root: int, interval_s: float = 0.05, limit_bytes: float | None = None,
                 metric: str = "rss", on_exceed: Callable[[], None] | None = None):
        self.root, self.interval = root, interval_s
        self.limit, self.metric, self.on_exceed = limit_bytes, metric, on_exceed
        self.peak = {"rss": 0, "pss": 0, "procs": 0}
        self.hwm: dict[int, int] = {}  # pid -> VmHWM
        self.read_bytes: dict[int, int] = {}  # pid -> /proc/PID/io read_bytes (last seen)
        self.peak_read = 0
        self.samples, self.exceeded_at, self.cpu_s = 0, None, 0.0
        self.timeline: list[tuple[float, int, int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._t0 = time.perf_counter()

    def sample(self) -> tuple[int, int, int]:
        rss = pss = 0
        pids = process_tree(self.root)
        # smaps_rollup costs ~9 ms per jax-sized process (RSS: 0.1 ms): PSS once a second.
        with_pss = self.samples % max(1, round(1.0 / self.interval)) == 0
        for pid in pids:
            status = _read(f"/proc/{pid}/status")
            if status is None:
                continue
            rss += _field_kb(status, "VmRSS:")
            self.hwm[pid] = max(self.hwm.get(pid, 0), _field_kb(status, "VmHWM:"))
            if with_pss:
                pss += _field_kb(_read(f"/proc/{pid}/smaps_rollup"), "Pss:")
            io = _read(f"/proc/{pid}/io")
            if io:
                self.read_bytes[pid] = int(io.split("read_bytes:")[1].split()[0])
        # A reaped child's I/O is added to its parent's counters, so only a sum over the
        # processes alive in one sample counts each byte once.
        self.peak_read = max(self.peak_read, sum(self.read_bytes.get(p, 0) for p in pids))
        self.peak["rss"] = max(self.peak["rss"], rss)
        self.peak["pss"] = max(self.peak["pss"], pss)
        self.peak["procs"] = max(self.peak["procs"], len(pids))
        self.samples += 1
        t = time.perf_counter() - self._t0
        if with_pss:  # JSON: one point a second
            self.timeline.append((round(t, 2), rss, pss, len(pids)))
        value = rss if self.metric == "rss" else pss
        if self.limit is not None and value > self.limit and self.exceeded_at is None \
                and (with_pss or self.metric == "rss"):
            self.exceeded_at = t
            if self.on_exceed is not None:
                self.on_exceed()
        return rss, pss, len(pids)

    def _run(self) -> None:
        t = time.thread_time()
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)
        self.cpu_s = time.thread_time() - t  # the sampler's own cost, reported

    def start(self) -> TreeMemorySampler:
        self._thread.start()
        return self

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join()
        return {"peak_tree_rss_bytes": self.peak["rss"], "peak_tree_pss_bytes": self.peak["pss"],
                "sum_process_hwm_bytes": sum(self.hwm.values()),
                "max_process_hwm_bytes": max(self.hwm.values(), default=0),
                "peak_processes": self.peak["procs"], "processes_seen": len(self.hwm),
                "tree_read_bytes": self.peak_read,
                "process_hwm_bytes": sorted(self.hwm.values(), reverse=True),
                "root_hwm_bytes": self.hwm.get(self.root, 0), "samples": self.samples,
                "sampler_cpu_s": self.cpu_s,
                "exceeded_at_s": self.exceeded_at, "timeline_s_rss_pss_procs": self.timeline}


# ----------------------------------------------------------------------------- one pass
def run_pass(spec: dict[str, Any]) -> dict[str, Any]:
    """One pass over every window (in this process + `workers` grain workers), by the path
    `spec["path"]` names: "blocks" (training's streaming input) or "windows" (per-window)."""
    return (_blocks_pass if spec.get("path", "windows") == "blocks" else _windows_pass)(spec)


def _blocks_pass(spec: dict[str, Any]) -> dict[str, Any]:
    """One epoch of training's streaming input (`DASBlockSource` through
    `pipeline.train_dataset`, as `das/task.py` builds it with `data.stream=blocks`): each
    window must arrive once, except the epoch order's last partial batch (dropped, as in
    training)."""
    from jaxtrain.data.pipeline import train_dataset
    from jaxtrain.tasks.das.stream import DASBlockSource

    files, window = spec["files"], spec["window"]
    with np.load(spec["index_path"]) as z:
        index = z["index"].astype(np.int64)
    source = DASBlockSource(files, index, spec["layout"], window, normalize=spec["normalize"],
                            block_samples=spec["block_samples"],
                            shuffle_blocks=spec["shuffle_blocks"],
                            memory_bytes=spec["stream_memory_mb"] * 2**20,
                            direct_reads=spec["direct_reads"])
    batch = spec["batch_size"]
    expected = source.epoch_permutation(spec["seed"], 0)[:len(index) // batch * batch]
    ds = train_dataset(source, global_batch_size=batch, mesh=None, seed=spec["seed"],
                       num_epochs=1, worker_count=spec["workers"],
                       read_threads=spec["read_threads"], process=(0, 1))
    seen = np.zeros(len(index), np.int32)
    checker = DASWindowSource(files, index, spec["layout"], window, normalize=False)
    mismatches = checked = 0
    t0 = time.perf_counter()
    t_first = None
    rows_of: list[np.ndarray] = []
    for b in ds:
        if t_first is None:
            t_first = time.perf_counter()
        f = b["file"].astype(np.int64)
        # A batch's windows in the order they were asked for: the epoch order's rows.
        rows = expected[len(rows_of) * batch:(len(rows_of) + 1) * batch]
        rows_of.append(rows)
        if not np.array_equal(index[rows, 0], f):
            raise RuntimeError(f"batch {len(rows_of) - 1}: windows from other files than the "
                               "epoch order's")
        np.add.at(seen, rows, 1)
        if checked < 8:  # the bytes are the window's: raw x scale = the physical values
            physical = b["x"][0].astype(np.float32).T * b["scale"][0][:, None]
            mismatches += not np.allclose(physical, checker[int(rows[0])]["x"], rtol=1e-3,
                                          atol=1e-6)
            checked += 1
    t_end = time.perf_counter()
    n = int(seen.sum())
    want = np.zeros(len(index), np.int32)
    want[expected] = 1
    steady = max(t_end - (t_first or t_end), 1e-9)
    itemsize = 2  # int16 counts (or float16) leave the host
    return {
        "path": "blocks", "workers": spec["workers"], "windows": len(index), "windows_read": n,
        "exactly_once": bool(np.array_equal(seen, want)),
        "missing": int(((seen == 0) & (want == 1)).sum()), "duplicates": int((seen > 1).sum()),
        "dropped_last_batch": int(len(index) - len(expected)), "content_mismatches": mismatches,
        "startup_s": (t_first or t_end) - t0, "wall_s": t_end - t0,
        "windows_per_s": n / steady, "windows_per_s_incl_startup": n / (t_end - t0),
        "hdf5_mb_per_s": n * spec["channels"] * window * itemsize / steady / 1e6,
        "blocks": len(source.block_file),
        "block_reads_main": source.cache.reads if spec["workers"] == 0 else None,
    }


def _windows_pass(spec: dict[str, Any]) -> dict[str, Any]:
    import resource

    import grain

    files, window, stride = spec["files"], spec["window"], spec["stride"]
    with np.load(spec["index_path"]) as z:
        index = z["index"].astype(np.int64)
    source = DASWindowSource(files, index, spec["layout"], window,
                             normalize=spec["normalize"])
    ds = grain.MapDataset.source(source)
    if spec["shuffle"]:
        ds = ds.seed(spec["seed"]).shuffle()
    ds = ds.batch(spec["batch_size"], drop_remainder=False)
    it_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=spec["read_threads"],
                                                 prefetch_buffer_size=2 * spec["read_threads"]))
    if spec["workers"] > 0:
        it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=spec["workers"]))
    first_row = np.searchsorted(index[:, 0], np.arange(len(files)))  # file id -> first row
    seen = np.zeros(len(index), np.int32)
    checker = DASWindowSource(files, index, spec["layout"], window,
                              normalize=spec["normalize"])
    mismatches = checked = 0
    rss_before = _field_kb(_read("/proc/self/status"), "VmRSS:")
    t0 = time.perf_counter()
    t_first = None
    it = iter(it_ds)
    for batch in it:
        if t_first is None:
            t_first = time.perf_counter()
        f, s = batch["file"].astype(np.int64), batch["start"].astype(np.int64)
        rows = first_row[f] + s // stride
        ok = (s % stride == 0) & (rows < len(index))
        rows = np.where(ok, rows, 0)
        ok &= (index[rows, 0] == f) & (index[rows, 1] == s)
        if not ok.all():
            raise RuntimeError(f"pipeline returned a window not in the index: file {f[~ok][0]}, "
                               f"start {s[~ok][0]}")
        np.add.at(seen, rows, 1)
        if checked < 8:  # the bytes are the window's, not just its label
            mismatches += not np.array_equal(batch["x"][0], checker[int(rows[0])]["x"])
            checked += 1
    t_end = time.perf_counter()
    if hasattr(it, "close"):
        it.close()  # joins the workers, so RUSAGE_CHILDREN covers them
    itemsize = np.dtype(spec["stored_dtype"]).itemsize
    n = int(seen.sum())
    steady = max(t_end - (t_first or t_end), 1e-9)
    requested = n * spec["channels"] * window * itemsize
    return {
        "workers": spec["workers"], "windows": len(index), "windows_read": n,
        "exactly_once": bool((seen == 1).all()), "missing": int((seen == 0).sum()),
        "duplicates": int((seen > 1).sum()), "content_mismatches": mismatches,
        "startup_s": (t_first or t_end) - t0, "wall_s": t_end - t0,
        "windows_per_s": n / steady, "windows_per_s_incl_startup": n / (t_end - t0),
        "hdf5_mb_per_s": requested / steady / 1e6, "requested_bytes": requested,
        "main_rss_before_bytes": rss_before,
        # Kernel high-water marks, for cross-checking only: RUSAGE_SELF keeps the peak of the
        # forked parent image from before exec; RUSAGE_CHILDREN is the largest single worker.
        "rusage_self_maxrss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "rusage_children_maxrss_bytes":
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
    }


def _child_main(spec_path: str) -> None:
    with open(spec_path) as f:
        spec = json.load(f)
    result = run_pass(spec)
    _atomic_json(spec["result_path"], result)


# ----------------------------------------------------------------------------- driver
def measure(files: Sequence[str], workers: int, *, work_dir: str, limit_bytes: float,
            path: str = "windows", block_samples: int = 32768, shuffle_blocks: int = 16,
            stream_memory_mb: int = 512, direct_reads: bool = True,
            limit_metric: str = "rss", enforce: bool = True, window: int = 1024,
            stride: int = 512, batch_size: int = 32, read_threads: int = 2,
            shuffle: bool = True, normalize: bool = True, cold_cache: bool = True,
            sample_s: float = 0.05, seed: int = 0, timeout_s: float = 3600.0) -> dict[str, Any]:
    """One pass in a subprocess, its process tree watched (and killed over the limit)."""
    files = [os.path.abspath(p) for p in files]
    index_path = os.path.join(work_dir, f"index_{window}_{stride}.npz")
    index = build_window_index(files, "jaxtrain", window, stride, cache_path=index_path)
    first = open_recording(files[0])
    name = f"pass_{path}{'' if direct_reads or path != 'blocks' else '_h5py'}_w{workers}"
    spec = {"files": files, "index_path": index_path, "layout": "jaxtrain", "window": window,
            "path": path, "block_samples": block_samples, "shuffle_blocks": shuffle_blocks,
            "stream_memory_mb": stream_memory_mb, "direct_reads": direct_reads,
            "stride": stride, "batch_size": batch_size, "workers": workers,
            "read_threads": read_threads, "shuffle": shuffle, "seed": seed,
            "normalize": normalize, "channels": first.num_channels,
            "stored_dtype": str(first.dtype),
            "result_path": os.path.join(work_dir, f"{name}.json")}
    spec_path = os.path.join(work_dir, f"{name}_spec.json")
    _atomic_json(spec_path, spec)
    if os.path.exists(spec["result_path"]):
        os.remove(spec["result_path"])
    if cold_cache:
        drop_page_cache(files)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.das_memory",
                             f"--child={spec_path}"], cwd=root, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def kill() -> None:  # the whole session: the pass and its grain workers
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    sampler = TreeMemorySampler(proc.pid, sample_s, limit_bytes, limit_metric,
                                kill if enforce else None).start()
    try:
        log, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        kill()
        log, _ = proc.communicate()
    memory = sampler.stop()
    result: dict[str, Any] = {"path": path + ("" if direct_reads or path != "blocks" else
                                              " (h5py)"), "workers": workers,
                              "windows": len(index)}
    if os.path.exists(spec["result_path"]):
        with open(spec["result_path"]) as f:
            result.update(json.load(f))
    result.update(memory)
    result["returncode"] = proc.returncode
    result["killed_over_limit"] = memory["exceeded_at_s"] is not None and enforce
    metric_peak = memory["peak_tree_rss_bytes" if limit_metric == "rss" else
                          "peak_tree_pss_bytes"]
    result["passed"] = bool(proc.returncode == 0 and result.get("exactly_once")
                            and not result.get("content_mismatches")
                            and metric_peak <= limit_bytes)
    if proc.returncode != 0 and not result["killed_over_limit"]:
        result["error_tail"] = (log or "")[-2000:]
    return result


def _gb(b: float | None) -> str:
    return "-" if b is None else f"{b / GIB:.2f}"


def table(rows: Sequence[dict[str, Any]], limit_bytes: float, metric: str) -> str:
    head = ("| path | workers | windows read | exactly once | startup s | windows/s "
            "| MB/s from HDF5 | data MB/s | disk's sequential MB/s | x disk's sequential rate "
            "| disk read GiB "
            "| peak tree RSS GiB | peak tree PSS GiB | sum of per-process "
            "peaks GiB | main peak GiB | processes | limit GiB | result |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        ok = "PASS" if r["passed"] else ("FAIL (killed over limit)" if r["killed_over_limit"]
                                         else "FAIL")
        lines.append(
            f"| {r['path']} | {r['workers']} | {r.get('windows_read', 0):,} / {r['windows']:,} "
            f"| {r.get('exactly_once', False)} | {r.get('startup_s', float('nan')):.1f} "
            f"| {r.get('windows_per_s', 0):,.0f} | {r.get('hdf5_mb_per_s', 0):,.0f} "
            f"| {r.get('data_mb_per_s', 0):,.0f} | {r.get('sequential_read_mb_per_s', 0):,.0f} "
            f"| {r.get('of_disk_rate', float('nan')):.2f} "
            f"| {_gb(r['tree_read_bytes'])} | {_gb(r['peak_tree_rss_bytes'])} "
            f"| {_gb(r['peak_tree_pss_bytes'])} | {_gb(r['sum_process_hwm_bytes'])} "
            f"| {_gb(r['root_hwm_bytes'])} | {r['peak_processes']} "
            f"| {limit_bytes / GIB:g} ({metric}) | {ok} |")
    return "\n".join(lines)


def benchmark(data_dir: str, size_gb: float, memory_limit_gb: float,
              workers: Sequence[int] = (0, 2, 4), *, paths: Sequence[str] = ("blocks",),
              direct_reads: Sequence[bool] = (True,),
              file_gb: float = 1.0,
              generated_files: int = 4, channels: int = 64, json_out: str | None = None,
              log: Callable[[str], None] = print, **kwargs: Any) -> dict[str, Any]:
    """Make (or reuse) the data set, run one pass per worker count, return the summary."""
    files = make_dataset(data_dir, size_gb, file_gb=file_gb, generated_files=generated_files,
                         channels=channels, log=log)
    size = dataset_bytes(files)
    limit = memory_limit_gb * GIB
    log(f"data set: {len(files)} files, {size / GIB:.2f} GiB; budget {memory_limit_gb:g} GiB "
        f"(data / budget = {size / limit:.1f}x)")
    # The physical limit, measured in this run on these files before and after each pass (a
    # shared virtual disk's rate drifts by 2x within minutes): a pass is held to the faster
    # of its two neighbouring readings.
    disk: list[dict[str, Any]] = []

    def read_disk() -> float:
        disk.append(sequential_read_rate(files))
        log(f"sequential read of the files, page cache dropped: {disk[-1]['mb_per_s']:,.0f} MB/s")
        return disk[-1]["mb_per_s"]

    before = read_disk()
    rows = []
    passes = [(p, d) for p in paths for d in (direct_reads if p == "blocks" else (True,))]
    for path, direct in passes:
        for w in workers:
            r = measure(files, int(w), work_dir=os.path.abspath(data_dir), limit_bytes=limit,
                        path=path, direct_reads=direct, **kwargs)
            after = read_disk()
            r["sequential_read_mb_per_s"] = max(before, after)
            before = after
            rows.append(r)
            log(f"{r['path']}, workers={w}: {r.get('windows_per_s', 0):,.0f} windows/s, peak tree "
                f"RSS {_gb(r['peak_tree_rss_bytes'])} GiB, PSS "
                f"{_gb(r['peak_tree_pss_bytes'])} GiB, {'PASS' if r['passed'] else 'FAIL'}")
            if "error_tail" in r:
                log(r["error_tail"])
    stride, window = kwargs.get("stride", 512), kwargs.get("window", 1024)
    for r in rows:
        # Each sample once (windows overlap when stride < window): how fast the data set is
        # consumed, comparable with reading its files front to back.
        r["data_mb_per_s"] = r.get("hdf5_mb_per_s", 0.0) * stride / window
        r["of_disk_rate"] = r["data_mb_per_s"] / r["sequential_read_mb_per_s"]
        r["disk_reads_per_data_byte"] = r["tree_read_bytes"] / size
    summary = {
        "benchmark": "das_memory", "date": dt.date.today().isoformat(),
        "command": " ".join([os.path.basename(sys.executable), "-m", "benchmarks.das_memory",
                             *sys.argv[1:]]),
        "device": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs "
                  f"({_cpu_model()})",
        "python": platform.python_version(), "h5py": h5py.__version__,
        "hdf5": h5py.version.hdf5_version, "data_dir": os.path.abspath(data_dir),
        "files": len(files), "dataset_bytes": size, "memory_limit_bytes": limit,
        "size_over_limit": size / limit, "passed": all(r["passed"] for r in rows),
        "sequential_read": disk,
        "settings": {"file_gb": file_gb, "channels": channels, **kwargs}, "passes": rows,
    }
    if json_out:
        os.makedirs(os.path.dirname(os.path.abspath(json_out)), exist_ok=True)
        _atomic_json(json_out, summary)
    return summary


def _cpu_model() -> str:
    for line in (_read("/proc/cpuinfo") or "").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def _define_flags() -> None:
    """Defined only when run as a program: absl flags are process-global and tests import
    this module next to other entry points."""
    flags.DEFINE_string("data_dir", "/tmp/jaxtrain-das-memory",
                        "Where the synthetic data set is written (and reused).")
    flags.DEFINE_float("size_gb", 8.0, "Data set size in GiB.")
    flags.DEFINE_float("memory_limit_gb", 2.0, "Memory budget of the process tree, GiB.")
    flags.DEFINE_enum("limit_metric", "rss", ["rss", "pss"],
                      "Which tree sum the budget applies to.")
    flags.DEFINE_bool("enforce", True, "Kill a pass that exceeds the budget.")
    flags.DEFINE_list("paths", ["blocks"], "Input paths: blocks (training's streaming reads) "
                      "and/or windows (one h5py read per window).")
    flags.DEFINE_list("workers", ["0", "2"], "grain worker counts to run.")
    flags.DEFINE_integer("block_samples", 32768, "blocks: samples per block "
                         "(config.data.stream_block_samples).")
    flags.DEFINE_integer("shuffle_blocks", 16, "blocks: blocks shuffled together "
                         "(config.data.stream_shuffle_blocks).")
    flags.DEFINE_integer("stream_memory_mb", 512, "blocks: block cache per reading process "
                         "(config.data.stream_memory_mb).")
    flags.DEFINE_float("file_gb", 1.0, "Size of each long file, GiB.")
    flags.DEFINE_integer("generated_files", 4, "Files written by the DAS generator.")
    flags.DEFINE_integer("channels", 64, "Channels per file.")
    flags.DEFINE_integer("window", 1024, "Samples per window.")
    flags.DEFINE_integer("stride", 512, "Samples between window starts.")
    flags.DEFINE_integer("batch_size", 32, "Windows per batch.")
    flags.DEFINE_integer("read_threads", 2, "grain read threads per process.")
    flags.DEFINE_list("direct_reads", ["true"], "blocks: read plain storage with preadv "
                      "outside h5py (true), through h5py (false), or both (true,false).")
    flags.DEFINE_bool("shuffle", True, "Global shuffle (as training); else in order.")
    flags.DEFINE_bool("normalize", True, "Per-channel normalization in the source.")
    flags.DEFINE_bool("cold_cache", True, "Drop the data set from the page cache first.")
    flags.DEFINE_float("sample_s", 0.05, "Memory sampling interval, seconds.")
    flags.DEFINE_string("json_out", None, "Result JSON (default <data_dir>/das_memory.json).")
    flags.DEFINE_bool("delete_data", False, "Delete the data set at the end.")
    flags.DEFINE_string("child", None, "(internal) run one pass from this spec JSON.")


def main(argv: Sequence[str]) -> None:
    del argv
    f = flags.FLAGS
    if f.child:
        _child_main(f.child)
        return
    from jaxtrain.cli import USER_ERRORS, fail

    data_dir = os.path.abspath(f.data_dir)
    json_out = f.json_out or os.path.join(data_dir, "das_memory.json")
    try:
        summary = benchmark(
            data_dir, f.size_gb, f.memory_limit_gb, [int(w) for w in f.workers],
            paths=f.paths, direct_reads=[v.lower() == "true" for v in f.direct_reads],
            block_samples=f.block_samples, shuffle_blocks=f.shuffle_blocks,
            stream_memory_mb=f.stream_memory_mb,
            file_gb=f.file_gb, generated_files=f.generated_files, channels=f.channels,
            json_out=json_out, limit_metric=f.limit_metric, enforce=f.enforce,
            window=f.window, stride=f.stride, batch_size=f.batch_size,
            read_threads=f.read_threads, shuffle=f.shuffle, normalize=f.normalize,
            cold_cache=f.cold_cache, sample_s=f.sample_s)
    except USER_ERRORS as e:
        fail(str(e))
    print()
    print(f"{summary['files']} files, {summary['dataset_bytes'] / GIB:.2f} GiB of HDF5, budget "
          f"{summary['memory_limit_bytes'] / GIB:g} GiB; {summary['device']}; {summary['date']}; "
          "sequential reads (MB/s): "
          + ", ".join(f"{d['mb_per_s']:,.0f}" for d in summary["sequential_read"]))
    print(table(summary["passes"], summary["memory_limit_bytes"], f.limit_metric))
    if f.delete_data:
        if os.path.dirname(os.path.abspath(json_out)) == data_dir:
            kept = os.path.join(os.path.dirname(data_dir), "das_memory.json")
            shutil.copy(json_out, kept)  # keep the result when deleting its directory
            json_out = kept
        delete_dataset(data_dir)
    print(f"JSON: {json_out}")
    if not summary["passed"]:
        sys.exit(1)


if __name__ == "__main__":
    _define_flags()
    app.run(main)

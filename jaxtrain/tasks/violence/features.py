"""The feature cache, the stage before training: every clip decoded once, its sampled frames
encoded by the frozen VGG19, the features cached in HDF5.

Run alone by `python -m jaxtrain.tasks.violence.extract` (extract.py), and by main when the
cache is missing or incomplete. Videos are decoded in parallel
worker processes while the encoder runs on the devices; the cache is written as clips finish,
so an interrupted extraction resumes where it stopped. Cache layout
(`jaxtrain-violence-features-v1`):

  features (N, T, D) float16   frame features, T = data.num_frames
  motion   (N, T-1) float32    mean absolute grey-level difference of consecutive sampled
                               frames (the baseline's frame-difference energy)
  labels (N,) int8, names (N,) str (path under the dataset root), splits (N,) str
  done (N,) bool, errors (N,) str ("" = usable; else why the video was left out)
  attrs: format, encoder (identity JSON), root

The cache is rebuilt from scratch when its encoder identity (architecture, output, input
size, weights, frame count, ...) or its clip list differs from the config's.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import multiprocessing
import os
import time
from collections.abc import Iterator, Sequence

import h5py
import jax
import ml_collections
import numpy as np
from absl import logging

from jaxtrain import files
from jaxtrain.cli import one_line
from jaxtrain.data.hdf5 import str_list
from jaxtrain.tasks.violence import encoder as encoder_lib
from jaxtrain.tasks.violence.clips import Clip, list_clips
from jaxtrain.tasks.violence.video import VideoError, read_frames

FORMAT = "jaxtrain-violence-features-v1"


@dataclasses.dataclass(frozen=True)
class Features:
    """A complete cache, loaded: usable clips only (`errors` lists the others)."""

    features: np.ndarray  # (N, T, D) float16
    motion: np.ndarray  # (N, T-1) float32
    labels: np.ndarray  # (N,) int32
    names: list[str]
    splits: np.ndarray  # (N,) str
    errors: dict[str, str]  # name -> reason, for the videos left out
    path: str


def decode_clip(path: str, num_frames: int, size: int, min_frames: int
                ) -> tuple[np.ndarray | None, str]:
    """(frames, "") or (None, reason): runs in the decode workers; never raises."""
    try:
        return read_frames(path, num_frames, size, min_frames=min_frames), ""
    except VideoError as e:
        return None, str(e)
    except Exception as e:  # a decoder bug must not stop a 2,000-clip job
        return None, f"{path}: {one_line(e, named=True)}"


def motion_energy(frames: np.ndarray) -> np.ndarray:
    """(T, S, S, 3) uint8 -> (T-1,) mean |grey difference| between consecutive frames."""
    grey = frames.astype(np.float32).mean(-1)
    return np.abs(np.diff(grey, axis=0)).mean(axis=(1, 2))


def cache_path(config: ml_collections.ConfigDict, root: str) -> str:
    """`data.feature_cache`, or a name under `data.cache_dir` keyed by root and encoder."""
    d = config.data
    if d.feature_cache:
        return os.path.abspath(os.path.expanduser(d.feature_cache))
    key = hashlib.sha1((os.path.abspath(root) + encoder_lib.identity_json(
        encoder_lib.identity(config))).encode()).hexdigest()[:12]
    return os.path.join(os.path.abspath(os.path.expanduser(d.cache_dir)), "violence-features",
                        f"{os.path.basename(os.path.normpath(root))}-{key}.h5")


def _stale_reason(f: h5py.File, ident: str, names: list[str]) -> str:
    """Why the open cache `f` is not one of these clips by this encoder ("" when it is)."""
    if f.attrs.get("format") != FORMAT:
        return "not a feature cache"
    if f.attrs.get("encoder") != ident:
        return "the encoder, frame count or size changed"
    if "names" not in f or str_list(f["names"][...]) != names:
        return "the clip list changed"
    return ""


def _open_cache(path: str, clips: Sequence[Clip], ident: str, dim: int, num_frames: int,
                root: str) -> h5py.File:
    """The cache file for appending, new or reset when it does not match."""
    names = [c.name for c in clips]
    if os.path.exists(path):
        reason = ""
        try:
            f = h5py.File(path, "a")
        except OSError as e:
            if "unable to lock file" in str(e):  # open elsewhere: never delete a cache in use
                raise OSError(f"{path}: the feature cache is open in another process "
                              "(set data.feature_cache to extract elsewhere)") from None
            f, reason = None, f"unreadable ({one_line(e)})"
        if f is not None:
            reason = _stale_reason(f, ident, names)
            if not reason:
                return f
            f.close()
        logging.info("feature cache %s is stale (%s): extracting again", path, reason)
        os.remove(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    f = h5py.File(path, "w")
    n = len(clips)
    f.attrs["format"], f.attrs["encoder"], f.attrs["root"] = FORMAT, ident, root
    f.create_dataset("features", (n, num_frames, dim), np.float16,
                     chunks=(1, num_frames, dim))
    f.create_dataset("motion", (n, max(num_frames - 1, 1)), np.float32)
    f.create_dataset("labels", data=np.array([c.label for c in clips], np.int8))
    f.create_dataset("names", data=np.array(names, dtype=h5py.string_dtype()))
    f.create_dataset("splits", data=np.array([c.split for c in clips],
                                             dtype=h5py.string_dtype()))
    f.create_dataset("done", data=np.zeros(n, bool))
    f.create_dataset("errors", data=np.array([""] * n, dtype=h5py.string_dtype()))
    return f


def decoded_clips(paths: Sequence[str], config: ml_collections.ConfigDict
                  ) -> Iterator[tuple[np.ndarray | None, str]]:
    """decode_clip over `paths`, in order, by `data.decode_workers` processes (0 = here).

    At most a few batches are in flight, so memory stays bounded when decoding outruns the
    encoder. Workers are spawned, not forked: the parent holds JAX's threads.
    """
    d, e = config.data, config.encoder
    args = (d.num_frames, e.input_size, d.min_frames)
    if d.decode_workers <= 0:
        for p in paths:
            yield decode_clip(p, *args)
        return
    ctx = multiprocessing.get_context("spawn")
    window = max(4 * d.decode_workers, 2 * config.encoder.batch_clips)
    with concurrent.futures.ProcessPoolExecutor(d.decode_workers, mp_context=ctx) as pool:
        pending: list[concurrent.futures.Future] = []
        it = iter(paths)
        for p in it:
            pending.append(pool.submit(decode_clip, p, *args))
            if len(pending) >= window:
                yield pending.pop(0).result()
        for fut in pending:
            yield fut.result()


class _Progress:
    """A log line every few seconds: clips done, clips/s and the time left."""

    def __init__(self, total: int, every_s: float):
        self.total, self.every_s = total, every_s
        self.t0 = self.last = time.monotonic()
        self.done = 0

    def update(self, n: int, bad: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.every_s or self.done == self.total:
            rate = self.done / max(now - self.t0, 1e-9)
            eta = (self.total - self.done) / max(rate, 1e-9)
            logging.info("extract: %d/%d clips, %.1f clips/s, ETA %.0f s, %d bad", self.done,
                         self.total, rate, eta, bad)
            self.last = now


def extract(config: ml_collections.ConfigDict, root: str) -> str:
    """Extracts the features of every clip under `root` not yet in the cache; returns the
    cache's path. Bad videos are recorded (name and reason) and counted, never fatal."""
    root = os.path.abspath(os.path.expanduser(root))
    clips = list_clips(root, config.data.layout)
    ident = encoder_lib.identity_json(encoder_lib.identity(config))
    path = cache_path(config, root)
    with files.made_by_one(path, "the feature cache"):
        if not _is_complete(path, [c.name for c in clips], ident):
            _extract_missing(config, root, clips, ident, path)
    return path


def _is_complete(path: str, names: list[str], ident: str) -> bool:
    """Whether `path` is a finished cache of these clips by this encoder. Opened read-only,
    so runs already reading it (HDF5 locks a file opened for writing) are not disturbed."""
    try:
        with h5py.File(path, "r") as f:
            return not _stale_reason(f, ident, names) and bool(f["done"][...].all())
    except (OSError, KeyError):
        return False


def _extract_missing(config: ml_collections.ConfigDict, root: str, clips: Sequence[Clip],
                     ident: str, path: str) -> None:
    d, e = config.data, config.encoder
    dim = encoder_lib.feature_dim(config)
    with _open_cache(path, clips, ident, dim, d.num_frames, root) as f:
        done = f["done"][...]
        todo = np.flatnonzero(~done)
        bad = int(sum(1 for s in str_list(f["errors"][...]) if s))
        if not len(todo):
            return
        logging.info("extracting %d of %d clips (%s) into %s", len(todo), len(clips), ident,
                     path)
        encode = encoder_lib.make_encoder(config)
        progress = _Progress(len(todo), d.progress_every_s)
        batch: list[tuple[int, np.ndarray]] = []

        def flush() -> None:
            if not batch:
                return
            rows = np.array([i for i, _ in batch])
            frames = np.concatenate([fr for _, fr in batch])
            feats = encode(frames).reshape(len(batch), d.num_frames, dim)
            for k, (i, fr) in enumerate(batch):  # rows in increasing order: sequential writes
                f["features"][i] = feats[k]
                f["motion"][i] = motion_energy(fr)
            f["done"][rows] = True
            f.flush()
            progress.update(len(batch), bad)
            batch.clear()

        paths = [os.path.join(root, clips[i].name) for i in todo]
        for i, (frames, error) in zip(todo, decoded_clips(paths, config), strict=True):
            if frames is None:
                logging.warning("left out: %s", error)
                f["errors"][i] = error
                f["done"][i] = True
                bad += 1
                progress.update(1, bad)
                continue
            batch.append((int(i), frames))
            if len(batch) >= e.batch_clips:
                flush()
        flush()


def load(path: str) -> Features:
    """The usable clips of a complete cache, features in RAM (float16)."""
    with h5py.File(path, "r") as f:
        if not f["done"][...].all():
            raise ValueError(f"{path}: feature extraction is incomplete (run the extract "
                             "stage again to finish it)")
        errors = str_list(f["errors"][...])
        names = str_list(f["names"][...])
        ok = np.array([not s for s in errors], bool)
        return Features(features=f["features"][...][ok], motion=f["motion"][...][ok],
                        labels=f["labels"][...][ok].astype(np.int32),
                        names=[n for n, k in zip(names, ok, strict=True) if k],
                        splits=np.array(str_list(f["splits"][...]))[ok],
                        errors={n: s for n, s in zip(names, errors, strict=True) if s},
                        path=path)


def ensure_features(config: ml_collections.ConfigDict, root: str) -> Features:
    """The cache of `root` for this config, extracted first where clips are missing.
    Process 0 extracts; the others wait for it (the cache must be on a shared disk)."""
    from jax.experimental import multihost_utils

    path = cache_path(config, root)
    if jax.process_index() == 0:
        t0 = time.monotonic()
        path = extract(config, root)
        logging.info("features ready in %.1f s: %s", time.monotonic() - t0, path)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("violence features")
    return load(path)

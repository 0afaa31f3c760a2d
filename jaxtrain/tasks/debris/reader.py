"""Reading ``jaxtrain-debris-v1`` files (layout.py): validation, the grain source, statistics.

`read_debris_file` checks a file and describes it (`DebrisInfo`); `DebrisSource` serves its
patches to grain; `band_stats` and `pixel_counts` summarise the training patches (for input
normalisation and class weights); `patch_device_data` keeps the file in device memory.
`DebrisSource` returns masks as int32 with unlabeled pixels set to `IGNORE` (-1), MARIDA's
training convention.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Iterable
from typing import Any

import h5py
import jax.numpy as jnp
import numpy as np

from jaxtrain.data.device import DeviceData, take
from jaxtrain.data.hdf5 import (
    PerProcess,
    check_format,
    open_hdf5,
    read_validated,
    str_list,
)
from jaxtrain.tasks.debris.layout import (
    BAND_NAMES,
    DATASETS,
    DEBRIS,
    FORMAT,
    IGNORE,
    NOT_DEBRIS,
    NUM_BANDS,
    SPLITS,
    UNLABELED,
)

Record = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class DebrisInfo:
    """A validated ``jaxtrain-debris-v1`` file."""

    path: str
    num_patches: int
    height: int
    width: int
    bands: tuple[str, ...]
    names: list[str]
    split: np.ndarray  # (N,) uint8
    splits: dict[str, np.ndarray]  # "train"/"val"/"test" -> patch indices (int64, sorted)
    pixel_counts: dict[str, int]  # "not_debris", "debris", "ignore" (zeros if scan=False)
    patches_with_debris: int  # 0 if scan=False
    has_confidence: bool
    source: str

    @property
    def num_bands(self) -> int:
        return len(self.bands)

    @property
    def debris_fraction(self) -> float:
        """Debris share of the labeled pixels (ignore excluded)."""
        labeled = self.pixel_counts["debris"] + self.pixel_counts["not_debris"]
        return self.pixel_counts["debris"] / max(labeled, 1)


def read_debris_file(path: str | os.PathLike[str], *, scan: bool = True) -> DebrisInfo:
    """Opens and validates a debris file, patch by patch.

    Checks the format attribute, band names, dataset presence, shapes and dtypes, and (with
    `scan`) every patch for non-finite reflectance and label/confidence values outside their
    sets. Raises FileNotFoundError for a missing file and a one-line
    ``ValueError("<path>: <dataset>: <problem>")`` otherwise.
    """
    return read_validated(path, "debris data",
                          lambda f, checked_path: _read_layout(f, checked_path, scan))


def _read_layout(f: h5py.File, path: str, scan: bool) -> DebrisInfo:
    def fail(what: str) -> ValueError:
        return ValueError(f"{path}: {what}")

    check_format(f, path, FORMAT)
    if "band_names" not in f.attrs:
        raise fail("missing root attribute 'band_names'")
    bands = tuple(str_list(f.attrs["band_names"]))
    if bands != BAND_NAMES:
        raise fail(f"root attribute 'band_names' is {list(bands)}, expected {list(BAND_NAMES)}")
    ds: dict[str, h5py.Dataset] = {}
    for name in (*DATASETS, "confidence"):
        obj = f.get(name)
        if obj is None and name == "confidence":
            continue
        if not isinstance(obj, h5py.Dataset):
            raise fail(f"/{name}: missing dataset")
        ds[name] = obj
    shape = ds["images"].shape
    if len(shape) != 4 or shape[-1] != NUM_BANDS:
        raise fail(f"/images: shape {shape}, expected (N, H, W, {NUM_BANDS})")
    n, h, w, _ = shape
    if n == 0 or h == 0 or w == 0:
        raise fail(f"/images: empty (shape {shape})")
    if ds["images"].dtype.kind != "f":
        raise fail(f"/images: dtype {ds['images'].dtype}, expected float32")
    for name in ("masks", "confidence"):
        if name in ds:
            d = ds[name]
            if d.shape != (n, h, w):
                raise fail(f"/{name}: shape {d.shape}, expected {(n, h, w)} like /images")
            if d.dtype.kind not in "iu":
                raise fail(f"/{name}: dtype {d.dtype}, expected uint8")
    if ds["split"].shape != (n,) or ds["split"].dtype.kind not in "iu":
        raise fail(f"/split: shape {ds['split'].shape} dtype {ds['split'].dtype}, "
                   f"expected ({n},) uint8")
    if ds["names"].shape != (n,):
        raise fail(f"/names: shape {ds['names'].shape}, expected ({n},)")
    names = str_list(ds["names"][:])
    split = ds["split"][:]
    bad = (split < 0) | (split > 2)
    if bad.any():
        i = int(np.argmax(bad))
        raise fail(f"/split: value {int(split[i])} at patch {i} ({names[i]}), expected 0, 1 or 2")
    counts = np.zeros(3, np.int64)  # not debris, debris, ignore
    debris_patches = 0
    if scan:
        for i in range(n):
            where = f"patch {i} ({names[i]})"
            x = ds["images"][i]
            if not np.isfinite(x).all():
                r, c, b = np.argwhere(~np.isfinite(x))[0]
                raise fail(f"/images: non-finite value {x[r, c, b]} in {where} at row {r}, "
                           f"col {c}, band {BAND_NAMES[b]}")
            m = ds["masks"][i]
            bad = (m != NOT_DEBRIS) & (m != DEBRIS) & (m != UNLABELED)
            if bad.any():
                raise fail(f"/masks: value {int(m[bad][0])} in {where}, expected 0, 1 or 255")
            nd, ni = int(np.count_nonzero(m == DEBRIS)), int(np.count_nonzero(m == UNLABELED))
            counts += [m.size - nd - ni, nd, ni]
            debris_patches += int(nd > 0)
            if "confidence" in ds:
                cf = ds["confidence"][i]
                if cf.min() < 0 or cf.max() > 3:
                    v = cf[(cf < 0) | (cf > 3)][0]
                    raise fail(f"/confidence: value {int(v)} in {where}, expected 0..3")
    splits = {s: np.flatnonzero(split == k).astype(np.int64) for k, s in enumerate(SPLITS)}
    src = f.attrs.get("source", "unknown")
    return DebrisInfo(
        path=path, num_patches=n, height=h, width=w, bands=bands, names=names, split=split,
        splits=splits,
        pixel_counts={"not_debris": int(counts[0]), "debris": int(counts[1]),
                      "ignore": int(counts[2])},
        patches_with_debris=debris_patches, has_confidence="confidence" in ds,
        source=src.decode() if isinstance(src, bytes) else str(src),
    )



class DebrisSource:
    """grain random-access source over patches `indices` of a debris file.

    Records: image (H, W, 11) float32, mask (H, W) int32 (0, 1, IGNORE = -1 for unlabeled),
    confidence (H, W) int32 (zeros when the file has none), index () int32 (row in the file).
    The h5py handle is opened lazily in the reading process and never pickled.
    """

    def __init__(self, path: str | os.PathLike[str], indices: Iterable[int]):
        self.path = os.fspath(path)
        self.indices = np.asarray(list(indices), np.int64).reshape(-1)
        self._files = PerProcess(functools.partial(h5py.File, mode="r", rdcc_nbytes=8 * 2**20))

    def __len__(self) -> int:
        return len(self.indices)

    def __repr__(self) -> str:  # grain keys checkpoint state on it
        return f"DebrisSource({self.path!r}, n={len(self)})"

    def __getitem__(self, i: int) -> Record:
        f = self._files.get(self.path)
        row = int(self.indices[i])
        mask = f["masks"][row].astype(np.int32)
        mask[mask == UNLABELED] = IGNORE
        conf = (f["confidence"][row].astype(np.int32) if "confidence" in f
                else np.zeros(mask.shape, np.int32))
        image = np.asarray(f["images"][row], np.float32)
        return {"image": image, "mask": mask, "confidence": conf,
                "index": np.int32(row)}


def band_stats(path: str | os.PathLike[str], indices: Iterable[int]
               ) -> tuple[np.ndarray, np.ndarray]:
    """Per-band mean and std (float32, (11,)) over every pixel of patches `indices` only.

    Pass the training split's indices so no statistic leaks from validation or test. Streamed
    one patch at a time (Chan's parallel update in float64).
    """
    idx = np.asarray(list(indices), np.int64).reshape(-1)
    if idx.size == 0:
        raise ValueError(f"{os.fspath(path)}: band_stats needs at least one patch index")
    count, mean, m2 = 0, np.zeros(NUM_BANDS), np.zeros(NUM_BANDS)
    with open_hdf5(path, "debris data") as f:
        for i in np.sort(idx):
            x = f["images"][int(i)].reshape(-1, NUM_BANDS).astype(np.float64)
            nb, mb = x.shape[0], x.mean(0)
            m2b = ((x - mb) ** 2).sum(0)
            delta, tot = mb - mean, count + nb
            mean = mean + delta * nb / tot
            m2 = m2 + m2b + delta**2 * count * nb / tot
            count = tot
    return mean.astype(np.float32), np.sqrt(m2 / count).astype(np.float32)



def pixel_counts(path: str | os.PathLike[str], indices: Iterable[int]) -> np.ndarray:
    """(not debris, debris) pixel counts over patches `indices` (unlabeled pixels excluded)."""
    counts = np.zeros(2, np.int64)
    with open_hdf5(path, "debris data") as f:
        for i in np.sort(np.asarray(list(indices), np.int64)):
            m = f["masks"][int(i)]
            counts += [np.count_nonzero(m == NOT_DEBRIS), np.count_nonzero(m == DEBRIS)]
    return counts


def device_bytes(info: DebrisInfo) -> int:
    """What `patch_device_data` uploads for `info`'s file: float16 bands and an int8 mask
    per pixel. From the file's metadata; nothing is read."""
    return info.num_patches * info.height * info.width * (2 * info.num_bands + 1)


def patch_device_data(path: str | os.PathLike[str], splits: dict[str, Iterable[int]],
                      mean: np.ndarray, std: np.ndarray, *, chunk: int = 64) -> DeviceData:
    """Every patch of the file as device data: images standardized with (`mean`, `std`) and
    stored float16 (~3 significant digits of a unit-variance band, below the sensor's
    noise), masks int8 (IGNORE for unlabeled), read `chunk` patches at a time so the host
    never holds the file as float32. `splits` maps a split to its records' file rows in the
    host source's order (a row may repeat, e.g. several crops of a patch an epoch); the
    gather gives a split's records as `DebrisSource` and the task's transform give them
    (image and mask: no step reads the confidence)."""
    with open_hdf5(path, "debris data") as f:
        n, h, w, c = f["images"].shape
        image = np.empty((n, h, w, c), np.float16)
        mask = np.empty((n, h, w), np.int8)
        for lo in range(0, n, chunk):
            hi = min(lo + chunk, n)
            image[lo:hi] = (f["images"][lo:hi] - mean) / std
            m = f["masks"][lo:hi]
            mask[lo:hi] = np.where(m == UNLABELED, IGNORE, m)
    arrays = {"image": image, "mask": mask}

    def gather(data: dict[str, Any], positions: Any) -> dict[str, Any]:
        rows = take(data, positions)
        return {"image": rows["image"].astype(jnp.float32),
                "mask": rows["mask"].astype(jnp.int32)}

    return DeviceData(arrays, {s: np.asarray(list(r), np.int32) for s, r in splits.items()},
                      gather)

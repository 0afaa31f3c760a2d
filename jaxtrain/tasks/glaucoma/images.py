"""Fundus images decoded once into a uint8 HDF5 cache that the input pipeline reads.

`decode` reads one file at the training resolution: JPEGs are decoded at reduced size
(Pillow `draft`: libjpeg's DCT scaling to 1/2, 1/4 or 1/8, still >= the target; 2-3x faster
than a full decode of a 2144x1424 photograph, reference-facts.md section 7), centre-cropped to
a square (the retina fills the shorter side), resized, and optionally CLAHE-equalized on the
L channel of CIELAB as the reference recipe did (`clahe`). With `disc_crop` the square is
instead a region of interest around the optic disc (the brightest region of the fundus), as
many AIROGS pipelines do: at 48-64 px a whole-retina disc is ~5 px across, too small for a
network trained from scratch to read the cup-to-disc ratio.

`build_cache` writes every image of a dataset into ``/images (N, S, S, 3) uint8`` with a
progress line; it fills ``<file>.partial`` and renames it when done, so an interrupted build
resumes where it stopped and a finished one is reused (its name is a hash of the file list,
their sizes and times, and the decoding settings). Unreadable files are recorded in
``/errors`` (one message per row, "" when fine). `ImageSource` serves rows to grain;
`image_device_data` keeps them in device memory.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import time
from collections.abc import Mapping, Sequence

import h5py
import numpy as np
from absl import logging
from PIL import Image, ImageCms, ImageFilter

from jaxtrain import files
from jaxtrain.cli import one_line
from jaxtrain.data.device import DeviceData, take
from jaxtrain.data.hdf5 import PerProcess

FORMAT = "jaxtrain-fundus-cache-v1"
BLOCK = 64  # rows per HDF5 chunk and per resumable unit


def decode(path: str, size: int, clahe: float = 0.0, tiles: int = 8,
           disc_crop: float = 0.0) -> np.ndarray:
    """(size, size, 3) uint8 RGB of one image file; `clahe` > 0 is the clip limit;
    `disc_crop` > 0 crops a square of that fraction of the retina's width around the optic
    disc (`disc_centre`) instead of taking the whole retina."""
    with Image.open(path) as im:
        # JPEG only (a no-op for other formats): decode just large enough for the crop.
        need = math.ceil(size / disc_crop) if disc_crop > 0 else size
        im.draft("RGB", (need, need))
        im = im.convert("RGB")
        w, h = im.size
        side = min(w, h)
        box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
        if disc_crop > 0:
            box = disc_box(im, box, disc_crop)
        im = im.resize((size, size), Image.BICUBIC, box=box)
    if clahe > 0:
        im = clahe_on_lightness(im, clahe, tiles)
    return np.asarray(im, np.uint8)


DISC_MAP = 64  # the luminance map the disc is searched on (pixels across the retina)
DISC_BLUR = 0.05  # its Gaussian smoothing radius, a fraction of the retina (~ a disc radius)


def disc_centre(im: Image.Image, box: tuple[float, float, float, float] | None = None
                ) -> tuple[float, float]:
    """The optic disc's centre in `im` (pixels), searched within `box` (default: all).

    The disc is the brightest region of a fundus photograph: the argmax of the luminance
    downsampled to DISC_MAP pixels and blurred over about a disc radius, so a vessel
    reflex, a small lens reflex or noise does not win against the disc's area. Pixels
    beyond 0.45 of the map from its centre are left out (the black surround, rim flare)."""
    box = box or (0, 0, im.size[0], im.size[1])
    lum = im.convert("L").resize((DISC_MAP, DISC_MAP), Image.BILINEAR, box=box)
    lum = np.asarray(lum.filter(ImageFilter.GaussianBlur(DISC_MAP * DISC_BLUR)), np.float32)
    yy, xx = np.mgrid[0:DISC_MAP, 0:DISC_MAP] + 0.5
    lum = np.where(np.hypot(xx - DISC_MAP / 2, yy - DISC_MAP / 2) <= 0.45 * DISC_MAP, lum, -1)
    y, x = np.unravel_index(int(np.argmax(lum)), lum.shape)
    scale = (box[2] - box[0]) / DISC_MAP, (box[3] - box[1]) / DISC_MAP
    return box[0] + (x + 0.5) * scale[0], box[1] + (y + 0.5) * scale[1]


def disc_box(im: Image.Image, box: tuple[float, float, float, float], fraction: float
             ) -> tuple[float, float, float, float]:
    """A square of `fraction` of `box`'s width centred on the optic disc, moved inside `box`
    where the disc is near its edge (the crop keeps its size)."""
    cx, cy = disc_centre(im, box)
    half = fraction * (box[2] - box[0]) / 2
    x0 = min(max(cx - half, box[0]), box[2] - 2 * half)
    y0 = min(max(cy - half, box[1]), box[3] - 2 * half)
    return x0, y0, x0 + 2 * half, y0 + 2 * half


@functools.cache
def _lab_transforms() -> tuple[ImageCms.ImageCmsTransform, ImageCms.ImageCmsTransform]:
    srgb, lab = ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB")
    return (ImageCms.buildTransformFromOpenProfiles(srgb, lab, "RGB", "LAB"),
            ImageCms.buildTransformFromOpenProfiles(lab, srgb, "LAB", "RGB"))


def clahe_on_lightness(im: Image.Image, clip_limit: float = 2.0, tiles: int = 8) -> Image.Image:
    """CLAHE on the L channel of CIELAB (a, b untouched), like OpenCV's
    `createCLAHE(clipLimit, (tiles, tiles))` on `cvtColor(RGB2LAB)[..., 0]`."""
    to_lab, to_rgb = _lab_transforms()
    lab = np.array(ImageCms.applyTransform(im, to_lab))
    lab[..., 0] = clahe(lab[..., 0], clip_limit, tiles)
    return ImageCms.applyTransform(Image.fromarray(lab, "LAB"), to_rgb)


def clahe(gray: np.ndarray, clip_limit: float = 2.0, tiles: int = 8) -> np.ndarray:
    """Contrast-limited adaptive histogram equalization of a uint8 image.

    OpenCV's algorithm: per tile a 256-bin histogram clipped at `clip_limit * pixels / 256`
    with the excess spread evenly, its CDF as a lookup table, and each pixel mapped by
    bilinear interpolation between the tables of the four nearest tile centres."""
    h, w = gray.shape
    ys = np.linspace(0, h, tiles + 1).astype(int)
    xs = np.linspace(0, w, tiles + 1).astype(int)
    luts = np.empty((tiles, tiles, 256), np.float64)
    for i in range(tiles):
        for j in range(tiles):
            tile = gray[ys[i]:ys[i + 1], xs[j]:xs[j + 1]]
            hist = np.bincount(tile.ravel(), minlength=256).astype(np.float64)
            limit = max(clip_limit * tile.size / 256, 1.0)
            excess = np.maximum(hist - limit, 0).sum()
            hist = np.minimum(hist, limit) + excess / 256
            luts[i, j] = np.cumsum(hist) * (255.0 / max(tile.size, 1))
    # Tile-centre coordinates of every pixel; beyond the outer centres the edge table holds.
    fy = np.clip((np.arange(h) + 0.5) / (h / tiles) - 0.5, 0, tiles - 1)
    fx = np.clip((np.arange(w) + 0.5) / (w / tiles) - 0.5, 0, tiles - 1)
    y0, x0 = np.floor(fy).astype(int), np.floor(fx).astype(int)
    y1, x1 = np.minimum(y0 + 1, tiles - 1), np.minimum(x0 + 1, tiles - 1)
    wy, wx = (fy - y0)[:, None], (fx - x0)[None, :]
    v = gray.astype(np.intp)
    top = (1 - wx) * luts[y0[:, None], x0[None, :], v] + wx * luts[y0[:, None], x1[None, :], v]
    bot = (1 - wx) * luts[y1[:, None], x0[None, :], v] + wx * luts[y1[:, None], x1[None, :], v]
    return np.clip(np.rint((1 - wy) * top + wy * bot), 0, 255).astype(np.uint8)


def cache_key(paths: Sequence[str], size: int, clahe: float, disc_crop: float = 0.0) -> str:
    """Hash of the files (path, size, mtime) and the decoding settings."""
    h = hashlib.sha1(json.dumps([FORMAT, size, clahe, disc_crop]).encode())
    for p in paths:
        st = os.stat(p)
        h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:12]


def build_cache(path: str, paths: Sequence[str], size: int, clahe: float = 0.0,
                log_every_s: float = 5.0, disc_crop: float = 0.0) -> str:
    """Decodes `paths` into the cache file `path` (resuming `path`.partial); returns `path`.
    Runs sharing the cache wait for the one building it."""
    with files.made_by_one(path, "the image cache"):
        if not os.path.exists(path):
            _decode_into(path, paths, size, clahe, log_every_s, disc_crop)
    return path


def _decode_into(path: str, paths: Sequence[str], size: int, clahe: float,
                 log_every_s: float, disc_crop: float) -> None:
    partial = path + ".partial"
    n = len(paths)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with h5py.File(partial, "a") as f:
        if "images" not in f:
            f.attrs["format"] = FORMAT
            f.attrs["size"], f.attrs["clahe"], f.attrs["filled"] = size, clahe, 0
            f.attrs["disc_crop"] = disc_crop
            f.create_dataset("images", (n, size, size, 3), "u1",
                             chunks=(min(BLOCK, n), size, size, 3))
            f.create_dataset("errors", (n,), h5py.string_dtype())
        start = int(f.attrs["filled"])
        if start:
            logging.info("image cache: resuming %s at %d of %d", partial, start, n)
        t0, last = time.monotonic(), time.monotonic()
        for a in range(start, n, BLOCK):
            b = min(a + BLOCK, n)
            block = np.zeros((b - a, size, size, 3), np.uint8)
            errors = [""] * (b - a)
            for k in range(a, b):
                try:
                    block[k - a] = decode(paths[k], size, clahe, disc_crop=disc_crop)
                except (OSError, ValueError, SyntaxError) as e:  # what Pillow raises on bad data
                    errors[k - a] = one_line(e, named=True)
            f["images"][a:b] = block
            f["errors"][a:b] = errors
            f.attrs["filled"] = b  # after the block: a crash redoes at most one block
            f.flush()
            now = time.monotonic()
            if now - last >= log_every_s or b == n:
                rate = (b - start) / max(now - t0, 1e-9)
                logging.info("image cache: %d/%d images (%.0f/s, %.0f s left)", b, n, rate,
                             (n - b) / max(rate, 1e-9))
                last = now
    os.replace(partial, path)


def read_errors(path: str) -> list[str]:
    with h5py.File(path, "r") as f:
        return [e.decode() if isinstance(e, bytes) else str(e) for e in f["errors"][:]]


class ImageSource:
    """grain random-access source over rows `rows` of a cache file, with labels.

    Records: image (S, S, 3) uint8, label () int32, index () int32 (the row). The split's
    rows are loaded into RAM on first use when they fit `in_memory_bytes` (one numpy gather
    per batch then), else read from HDF5 row by row.
    """

    def __init__(self, path: str, rows: Sequence[int], labels: Sequence[int],
                 in_memory_bytes: int = 2**30):
        self.path = os.fspath(path)
        self.rows = np.asarray(rows, np.int64).reshape(-1)
        self.labels = np.asarray(labels, np.int32).reshape(-1)
        self.in_memory_bytes = int(in_memory_bytes)
        self._files = PerProcess(functools.partial(h5py.File, mode="r",
                                                   rdcc_nbytes=32 * 2**20))
        self._arrays = PerProcess(self._load)

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:  # grain keys checkpoint state on it
        return f"ImageSource({self.path!r}, n={len(self)})"

    def _load(self, _: str) -> np.ndarray | h5py.Dataset:
        images = self._files.get(self.path)["images"]
        row_bytes = int(np.prod(images.shape[1:]))
        if row_bytes * len(self.rows) <= self.in_memory_bytes:
            order = np.argsort(self.rows)  # h5py reads sorted, unique indices
            out = np.empty((len(self.rows), *images.shape[1:]), np.uint8)
            out[order] = images[self.rows[order]] if len(self.rows) else out
            return out
        return images

    def _images(self, i: np.ndarray) -> np.ndarray:
        data = self._arrays.get("images")
        if isinstance(data, np.ndarray):
            return data[i]
        return np.stack([data[int(self.rows[k])] for k in i])

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        return {"image": self._images(np.array([int(i)]))[0], "label": self.labels[int(i)],
                "index": np.int32(self.rows[int(i)])}

    def read_batch(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        indices = np.asarray(indices, np.int64)
        return {"image": self._images(indices), "label": self.labels[indices],
                "index": self.rows[indices].astype(np.int32)}


def device_bytes(path: str, rows: Sequence[int]) -> int:
    """What `image_device_data` uploads for cache rows `rows`: the uint8 pixels and two
    int32 per image. From the cache's metadata; no pixel is read."""
    with h5py.File(path, "r") as f:
        row_bytes = int(np.prod(f["images"].shape[1:]))
    return len(np.unique(np.asarray(rows, np.int64))) * (row_bytes + 8)


def image_device_data(path: str, splits: Mapping[str, np.ndarray], labels: np.ndarray,
                      *, chunk: int = 16 * BLOCK) -> DeviceData:
    """The splits' images as device data, uint8 as cached (the model converts, the train
    step augments): `splits` maps a split to its cache rows in `ImageSource` order, `labels`
    holds every cache row's label. Read `chunk` rows at a time; only the splits' rows kept."""
    used = np.unique(np.concatenate([np.asarray(r, np.int64) for r in splits.values()]))
    with h5py.File(path, "r") as f:
        cached = f["images"]
        images = np.empty((len(used), *cached.shape[1:]), np.uint8)
        for lo in range(0, len(used), chunk):
            block = used[lo:lo + chunk]
            images[lo:lo + len(block)] = cached[block[0]:block[-1] + 1][block - block[0]]
    arrays = {"image": images, "label": np.asarray(labels, np.int32)[used],
              "index": used.astype(np.int32)}
    positions = {s: np.searchsorted(used, np.asarray(r, np.int64)).astype(np.int32)
                 for s, r in splits.items()}
    return DeviceData(arrays, positions, take)

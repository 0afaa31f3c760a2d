"""The ``jaxtrain-debris-v1`` HDF5 layout: its names, its values and its writer.

One row per patch (written by `synthetic.generate` and `marida.convert_marida`)::

    /images      (N, H, W, 11) float32  reflectance, channels-last (NHWC, as flax convs want);
                                        chunks (1, H, W, 11): one patch per chunk
    /masks       (N, H, W) uint8        0 = not debris, 1 = debris, 255 = unlabeled / ignore
    /confidence  (N, H, W) uint8        optional; MARIDA's annotator confidence:
                                        0 = none (unlabeled), 1 = high, 2 = moderate, 3 = low
    /split       (N,) uint8             0 = train, 1 = val, 2 = test
    /names       (N,) str               patch names (MARIDA: ``S2_<date>_<tile>_<crop>``)
    root attrs:  format = "jaxtrain-debris-v1", band_names (B1 B2 B3 B4 B5 B6 B7 B8 B8A B11 B12,
                 MARIDA's order), band_wavelengths_nm, debris_class (what mask value 1 means),
                 source ("synthetic" or "MARIDA"); synthetic files add seed and generator_version
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import Any

import h5py
import numpy as np

from jaxtrain import files

FORMAT = "jaxtrain-debris-v1"
BAND_NAMES: tuple[str, ...] = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")
BAND_WAVELENGTHS_NM: tuple[float, ...] = (443, 490, 560, 665, 705, 740, 783, 842, 865, 1610, 2190)
NUM_BANDS = len(BAND_NAMES)
DEBRIS_CLASS = "Marine Debris (MARIDA class 1)"
NOT_DEBRIS, DEBRIS, UNLABELED = 0, 1, 255  # values in /masks
IGNORE = -1  # value of unlabeled pixels in the int32 masks `reader.DebrisSource` returns
SPLITS: tuple[str, ...] = ("train", "val", "test")  # value i in /split
DATASETS: tuple[str, ...] = ("images", "masks", "split", "names")  # /confidence is optional


class Writer:
    """Fills the datasets of a layout file opened by `create`, patch by patch."""

    def __init__(self, f: h5py.File, n: int, h: int, w: int, confidence: bool):
        self.attrs = f.attrs
        self._f = f
        self._images = f.create_dataset("images", (n, h, w, NUM_BANDS), "f4",
                                        chunks=(1, h, w, NUM_BANDS))
        self._masks = f.create_dataset("masks", (n, h, w), "u1", chunks=(1, h, w))
        self._conf = (f.create_dataset("confidence", (n, h, w), "u1", chunks=(1, h, w))
                      if confidence else None)

    def put(self, i: int, image: np.ndarray, mask: np.ndarray, conf: np.ndarray | None) -> None:
        """Patch `i`: image (H, W, 11), mask (H, W) and confidence (H, W) (kept if the file
        has a /confidence)."""
        self._images[i] = image
        self._masks[i] = mask
        if self._conf is not None and conf is not None:
            self._conf[i] = conf

    def finish(self, split: np.ndarray, names: Sequence[str]) -> None:
        """The per-patch split (0 train, 1 val, 2 test) and names; call once, last."""
        self._f.create_dataset("split", data=np.asarray(split, np.uint8))
        self._f.create_dataset("names", data=list(names), dtype=h5py.string_dtype())


@contextlib.contextmanager
def create(path: str | os.PathLike[str], n: int, h: int, w: int, attrs: dict[str, Any],
           confidence: bool = True) -> Iterator[Writer]:
    """A new layout file of `n` patches of `h` x `w`, with root `attrs` added to the
    layout's own; it appears at `path` only when the block ends without an error."""
    with files.atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["format"] = FORMAT
        f.attrs["band_names"] = list(BAND_NAMES)
        f.attrs["band_wavelengths_nm"] = np.asarray(BAND_WAVELENGTHS_NM, np.float32)
        f.attrs["debris_class"] = DEBRIS_CLASS
        f.attrs["mask_values"] = "0 not debris, 1 debris, 255 unlabeled (ignore)"
        f.attrs["confidence_values"] = "0 none, 1 high, 2 moderate, 3 low"
        f.attrs["split_values"] = "0 train, 1 val, 2 test"
        for k, v in attrs.items():
            f.attrs[k] = v
        yield Writer(f, n, h, w, confidence)

"""Training augmentation of debris patches on the host: a random crop, then a dihedral move."""

from __future__ import annotations

import numpy as np

from jaxtrain.tasks.debris.layout import DEBRIS

Record = dict[str, np.ndarray]


def _dihedral(a: np.ndarray, k: int, flip: bool) -> np.ndarray:
    a = np.rot90(a, k, axes=(0, 1))
    return a[:, ::-1] if flip else a


def _crop_origin(mask: np.ndarray, size: int, rng: np.random.Generator,
                 focus_prob: float) -> tuple[int, int]:
    h, w = mask.shape[:2]
    if size > h or size > w:
        raise ValueError(f"crop size {size} exceeds patch size {h}x{w}")
    if focus_prob > 0 and rng.random() < focus_prob:
        ys, xs = np.nonzero(mask == DEBRIS)
        if ys.size:  # centre the crop near a random debris pixel (rare-class oversampling)
            j = int(rng.integers(ys.size))
            y = int(np.clip(ys[j] - size // 2 + rng.integers(-size // 4, size // 4 + 1), 0,
                            h - size))
            x = int(np.clip(xs[j] - size // 2 + rng.integers(-size // 4, size // 4 + 1), 0,
                            w - size))
            return y, x
    return int(rng.integers(h - size + 1)), int(rng.integers(w - size + 1))


def augment_record(record: Record, rng: np.random.Generator, *, crop_size: int | None = None,
                   focus_prob: float = 0.0) -> Record:
    """Task.random_transform for `reader.DebrisSource` records.

    With `crop_size`, a random `crop_size` x `crop_size` window; with probability
    `focus_prob` it is placed around a debris pixel (mask value 1) when the patch has one.
    Then one of the 8 dihedral transforms (90-degree rotations x horizontal flip; vertical
    flips are rotation + flip), uniformly. Image (H, W, C), mask and confidence (H, W) move
    together. Use ``functools.partial(augment_record, crop_size=128)`` to train on crops.
    """
    out = dict(record)
    spatial = [k for k in ("image", "mask", "confidence") if k in out]
    if crop_size is not None:
        y, x = _crop_origin(out["mask"], crop_size, rng, focus_prob)
        for k in spatial:
            out[k] = out[k][y:y + crop_size, x:x + crop_size]
    k, flip = int(rng.integers(4)), bool(rng.integers(2))
    for key in spatial:
        out[key] = np.ascontiguousarray(_dihedral(out[key], k, flip))
    return out

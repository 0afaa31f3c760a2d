"""Training augmentation of debris patches: a random crop, then a dihedral move; on the host
(`augment_record`) or, for device-resident patches, in the train step (`augment_batch`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
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


def _crop_origin_batch(mask: jax.Array, key: jax.Array, size: int, focus_prob: float
                       ) -> tuple[jax.Array, jax.Array]:
    """`_crop_origin` on the device for one (H, W) mask: a uniform origin, or with
    probability `focus_prob` (when the mask has debris) one near a random debris pixel."""
    h, w = mask.shape
    k_focus, k_pixel, k_jitter, k_uniform = jax.random.split(key, 4)
    debris = (mask == DEBRIS).reshape(-1)
    pixel = jax.random.categorical(k_pixel, jnp.where(debris, 0.0, -jnp.inf))
    jitter = jax.random.randint(k_jitter, (2,), -(size // 4), size // 4 + 1)
    near_y = jnp.clip(pixel // w - size // 2 + jitter[0], 0, h - size)
    near_x = jnp.clip(pixel % w - size // 2 + jitter[1], 0, w - size)
    uniform = jax.random.randint(k_uniform, (2,), 0, jnp.array([h - size + 1, w - size + 1]))
    focus = (jax.random.uniform(k_focus) < focus_prob) & debris.any()
    return jnp.where(focus, near_y, uniform[0]), jnp.where(focus, near_x, uniform[1])


def _dihedral_coords(h: int, w: int, k: jax.Array, flip: jax.Array
                     ) -> tuple[jax.Array, jax.Array]:
    """Source (row, col) of every output pixel of `_dihedral(a, k, flip)` for an (h, w) image
    (h == w; k is 0 or 2 otherwise): one gather instead of eight traced branches."""
    i, j = jnp.meshgrid(jnp.arange(h), jnp.arange(w), indexing="ij")
    j = jnp.where(flip, w - 1 - j, j)  # the flip acts on rot90's output
    rows = jnp.select([k == 0, k == 1, k == 2], [i, j, h - 1 - i], w - 1 - j)
    cols = jnp.select([k == 0, k == 1, k == 2], [j, w - 1 - i, w - 1 - j], i)
    return rows, cols


def augment_batch(batch: dict[str, jax.Array], key: jax.Array, *, crop_size: int | None = None,
                  focus_prob: float = 0.0) -> dict[str, jax.Array]:
    """`augment_record` for a (B, H, W, C) image / (B, H, W) mask batch in the train step,
    drawn from `key`: the same crop placement and the same 8 dihedral moves, uniformly (only
    the 4 that keep the shape, rotations by 0/180 degrees x flip, for non-square images)."""
    image, mask = batch["image"], batch["mask"]
    b, h, w = mask.shape
    k_crop, k_move, k_flip = jax.random.split(key, 3)
    if crop_size is not None:
        if crop_size > h or crop_size > w:
            raise ValueError(f"crop size {crop_size} exceeds patch size {h}x{w}")
        ys, xs = jax.vmap(lambda m, k: _crop_origin_batch(m, k, crop_size, focus_prob))(
            mask, jax.random.split(k_crop, b))

        def cut(a: jax.Array, y: jax.Array, x: jax.Array) -> jax.Array:
            starts = (y, x) + (0,) * (a.ndim - 2)
            return jax.lax.dynamic_slice(a, starts, (crop_size, crop_size, *a.shape[2:]))

        image, mask = jax.vmap(cut)(image, ys, xs), jax.vmap(cut)(mask, ys, xs)
        h = w = crop_size
    turns = jax.random.randint(k_move, (b,), 0, 4)
    if h != w:
        turns = 2 * (turns % 2)
    flips = jax.random.bernoulli(k_flip, 0.5, (b,))

    def move(img: jax.Array, m: jax.Array, k: jax.Array, flip: jax.Array):
        rows, cols = _dihedral_coords(h, w, k, flip)
        return img[rows, cols], m[rows, cols]

    image, mask = jax.vmap(move)(image, mask, turns, flips)
    return {**batch, "image": image, "mask": mask}

"""The reference recipe's augmentation (Keras ImageDataGenerator settings) and 5-pass TTA.

Per training image: horizontal and vertical flips (p 0.5 each), rotation in +-15 degrees,
shift by up to 10% of the side, zoom in [0.9, 1.1], brightness factor in [0.8, 1.2]; one
affine map, bilinear sampling, nearest-edge fill (Keras's default fill_mode; the fundus
surround is black anyway). Pixels stay in 0..255 (the model normalizes inside).

`augment` does one image with numpy in the input pipeline, `augment_batch` a batch with jax
inside the jitted step; both draw the same parameters (`draw`) and share `warp`, which is
written against an array namespace (numpy or jax.numpy). `config.augment.where` picks one:
on a GPU the step takes the warp off the host; on a CPU the host is cheaper (like DAS).
`TTA_PASSES` are the deterministic test-time views averaged by the predict function.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

# (hflip, vflip, rotation degrees) of the test-time views: the image, its two mirrors and
# two small rotations.
TTA_PASSES: tuple[tuple[bool, bool, float], ...] = (
    (False, False, 0.0), (True, False, 0.0), (False, True, 0.0), (False, False, 10.0),
    (False, False, -10.0))


def matrix(xp: ModuleType, size: int, hflip: Any, vflip: Any, degrees: Any, shift_y: Any,
           shift_x: Any, zoom: Any) -> Any:
    """(3, 3) map from output pixel (y, x, 1) to the input pixel it samples."""
    c = (size - 1) / 2.0
    a = degrees * (math.pi / 180.0)
    cos, sin = xp.cos(a) / zoom, xp.sin(a) / zoom
    fy = xp.where(vflip, -1.0, 1.0)
    fx = xp.where(hflip, -1.0, 1.0)
    # src = F R(-a) (dst - c - shift) / zoom + c   (F: the flips, applied last)
    m00, m01 = fy * cos, fy * sin
    m10, m11 = -fx * sin, fx * cos
    ty, tx = c + shift_y * size, c + shift_x * size
    by = c - (m00 * ty + m01 * tx)
    bx = c - (m10 * ty + m11 * tx)
    zero, one = xp.zeros_like(by), xp.ones_like(by)
    return xp.stack([xp.stack([m00, m01, by]), xp.stack([m10, m11, bx]),
                     xp.stack([zero, zero, one])])


def warp(xp: ModuleType, image: Any, m: Any, brightness: Any = 1.0) -> Any:
    """`image` (H, W, C) resampled through `m` (bilinear, nearest-edge fill), times
    `brightness`, clipped to 0..255; float32."""
    h, w = image.shape[:2]
    yy, xx = xp.meshgrid(xp.arange(h, dtype=xp.float32), xp.arange(w, dtype=xp.float32),
                         indexing="ij")
    sy = xp.clip(m[0, 0] * yy + m[0, 1] * xx + m[0, 2], 0, h - 1)
    sx = xp.clip(m[1, 0] * yy + m[1, 1] * xx + m[1, 2], 0, w - 1)
    y0, x0 = xp.floor(sy), xp.floor(sx)
    wy, wx = (sy - y0)[..., None], (sx - x0)[..., None]
    y0, x0 = y0.astype(xp.int32), x0.astype(xp.int32)
    y1, x1 = xp.minimum(y0 + 1, h - 1), xp.minimum(x0 + 1, w - 1)
    img = image.astype(xp.float32)
    out = ((1 - wy) * ((1 - wx) * img[y0, x0] + wx * img[y0, x1])
           + wy * ((1 - wx) * img[y1, x0] + wx * img[y1, x1]))
    return xp.clip(out * brightness, 0, 255).astype(xp.float32)


def _ranges(rotation: float, shift: float, zoom: float, brightness: tuple[float, float]
            ) -> list[tuple[float, float]]:
    return [(-rotation, rotation), (-shift, shift), (-shift, shift), (1 - zoom, 1 + zoom),
            tuple(brightness)]


def augment(image: np.ndarray, rng: np.random.Generator, *, rotation: float = 15.0,
            shift: float = 0.1, zoom: float = 0.1,
            brightness: tuple[float, float] = (0.8, 1.2)) -> np.ndarray:
    """One augmented copy of an (S, S, 3) image (host, numpy)."""
    flips = rng.random(2) < 0.5
    deg, sy, sx, z, b = (rng.uniform(lo, hi) for lo, hi in
                         _ranges(rotation, shift, zoom, brightness))
    m = matrix(np, image.shape[0], flips[0], flips[1], deg, sy, sx, z)
    return warp(np, image, m.astype(np.float32), np.float32(b))


def augment_batch(images: jax.Array, key: jax.Array, *, rotation: float = 15.0,
                  shift: float = 0.1, zoom: float = 0.1,
                  brightness: tuple[float, float] = (0.8, 1.2)) -> jax.Array:
    """`augment` for every image of an (N, S, S, 3) batch (device, in the train step)."""
    n, size = images.shape[0], images.shape[1]
    k_flip, k_par = jax.random.split(key)
    flips = jax.random.uniform(k_flip, (n, 2)) < 0.5
    r = _ranges(rotation, shift, zoom, brightness)
    lo, hi = jnp.array([a for a, _ in r]), jnp.array([b for _, b in r])
    p = jax.random.uniform(k_par, (n, len(r)), minval=lo, maxval=hi)

    def one(img, f, q):
        m = matrix(jnp, size, f[0], f[1], q[0], q[1], q[2], q[3])
        return warp(jnp, img, m, q[4])

    return jax.vmap(one)(images, flips, p)


def tta_views(images: jax.Array) -> list[jax.Array]:
    """The `TTA_PASSES` views of an (N, S, S, 3) batch (jax; flips are exact, rotations
    resampled)."""
    size = images.shape[1]
    views = []
    for hflip, vflip, deg in TTA_PASSES:
        if deg == 0.0:
            v = images[:, :, ::-1] if hflip else images
            views.append(v[:, ::-1] if vflip else v)
        else:
            m = matrix(jnp, size, hflip, vflip, jnp.float32(deg), 0.0, 0.0, 1.0)
            views.append(jax.vmap(lambda img, m=m: warp(jnp, img, m))(images))
    return views

"""The built-in synthetic data: Sentinel-2-like sea patches with labelled debris (`generate`).

Scenes are open-sea patches mixed linearly from per-pixel abundances of
endmember spectra: water (clear or turbid, low and falling into NIR/SWIR), sun glint (bright,
spectrally flat, smooth, with wave speckle), haze (smooth, bluish) and clouds (bright, flat) with
shadows, ships (bright, compact, nearly flat; 3-pixel boats to 25-pixel vessels) with foam
wakes, foam (whitecap specks and lines: bright and flat in VIS-NIR, dark in SWIR), sargassum
(windrows and mats: red-edge/NIR step like land vegetation, low SWIR), natural organic material
(mats several pixels across, spectrum between debris and sargassum) and debris (thin filaments
in windrows and small clusters, 1-3 pixels wide: NIR raised over water with a gentle rise from
blue to NIR, no red-edge step, SWIR raised too).
Debris spectra are jittered per object and mixed with up to 45% organic matter, most debris
pixels are sub-pixel (abundance 0.25-0.8), and the 20 m / 60 m bands are block-averaged as in
real L1C/L2A products resampled to 10 m, so a filament is sharp only in B2/B3/B4/B8. Ship
edges, organic mats, glint speckle and faint sargassum overlap debris pixel by pixel; the
spectral shape and the thin-line/cluster shape together tell them apart.

Default set (80 patches of 256 x 256, seed 0, 230 MiB): debris is 1.47% of all pixels (1 in
68), rims/ignore 0.75%, 36 of 80 patches hold no debris. On its test split a per-pixel logistic
regression on the 11 bands + FDI + NDVI reaches best-F1 0.70 (AUC 0.989), the same with
local-contrast features 0.85, the FDI alone 0.14.

Masks: debris cores (abundance >= 0.25) are 1, their fuzzy rims (0.08-0.25) and debris under
cloud are 255 (ignore, like MARIDA's unlabeled pixels), everything else is 0. Files are in the
``jaxtrain-debris-v1`` layout (layout.py).

This module is the generator and nothing else: the cache of generated data is keyed on its
source (`jaxtrain.data.synthetic.generated_once`), so any change here makes new data.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Sequence

import numpy as np

from jaxtrain.data.splits import split_groups
from jaxtrain.data.synthetic import generator_version
from jaxtrain.tasks.debris.layout import DEBRIS, NUM_BANDS, SPLITS, UNLABELED, create

# ----------------------------------------------------------------------------- spectra
# Reflectance per band (B1..B12). Values sit in the ranges of Sentinel-2 L1C/L2A sea patches
# (MARIDA band means 0.016-0.052); the shapes follow the usual endmember descriptions.
_WATER = np.array([0.050, 0.043, 0.032, 0.018, 0.015, 0.012, 0.011, 0.009, 0.008, 0.005, 0.003])
_TURBID = np.array([0.060, 0.060, 0.068, 0.056, 0.050, 0.030, 0.025, 0.020, 0.017, 0.007, 0.004])
_CLOUD = np.array([0.40, 0.39, 0.38, 0.38, 0.38, 0.38, 0.38, 0.37, 0.37, 0.30, 0.20])
_HAZE = np.array([1.00, 0.94, 0.84, 0.74, 0.71, 0.69, 0.67, 0.64, 0.63, 0.48, 0.38])  # relative
_GLINT = np.array([1.00, 1.00, 0.99, 0.97, 0.96, 0.96, 0.95, 0.94, 0.94, 0.85, 0.80])  # relative
# Painted steel hulls and decks: bright, nearly flat, a little NIR/SWIR like debris, so a ship's
# sub-pixel edge looks like a debris pixel; only the bright compact core next to it differs.
_SHIP = np.array([0.19, 0.19, 0.20, 0.20, 0.21, 0.23, 0.24, 0.26, 0.26, 0.22, 0.16])
_FOAM = np.array([0.16, 0.16, 0.16, 0.155, 0.15, 0.145, 0.14, 0.135, 0.13, 0.06, 0.03])
_SARGASSUM = np.array([0.025, 0.028, 0.045, 0.028, 0.060, 0.110, 0.130, 0.140, 0.140, 0.060,
                       0.025])
_DEBRIS = np.array([0.070, 0.072, 0.078, 0.078, 0.082, 0.090, 0.096, 0.104, 0.104, 0.085, 0.058])
_NOISE = np.array([0.0030, 0.0028, 0.0025, 0.0022, 0.0022, 0.0022, 0.0022, 0.0025, 0.0022,
                   0.0015, 0.0015])  # sensor noise sd at low (sea) radiance
_B20 = (4, 5, 6, 8, 9, 10)  # 20 m bands: B5 B6 B7 B8A B11 B12
_B60 = (0,)  # 60 m band: B1 (B9/B10 are not in MARIDA)
_DEBRIS_CORE, _DEBRIS_RIM = 0.25, 0.08  # abundance thresholds of label 1 and of the ignore rim

# Default data set: 256x256 like MARIDA; 80 patches (56 train) generate in seconds and give a
# small U-Net on random crops plenty of distinct debris in a few CPU-minutes.
DEFAULT_NUM_PATCHES = 80


# ----------------------------------------------------------------------------- spatial helpers
def _upsample(grid: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear upsampling of a coarse (ky, kx) grid to (h, w) (gathers and weighted sums, no
    matrix products: the result does not depend on the BLAS library or its threads)."""
    ky, kx = grid.shape
    y = np.linspace(0.0, ky - 1.0, h)
    i = np.minimum(y.astype(np.int64), ky - 2)
    fy = (y - i)[:, None]
    rows = grid[i] * (1.0 - fy) + grid[i + 1] * fy
    x = np.linspace(0.0, kx - 1.0, w)
    j = np.minimum(x.astype(np.int64), kx - 2)
    fx = x - j
    return rows[:, j] * (1.0 - fx) + rows[:, j + 1] * fx


def smooth_field(rng: np.random.Generator, h: int, w: int, cells: float) -> np.ndarray:
    """Smooth zero-mean, ~unit-sd random field; `cells` = coarse grid size (two octaves)."""
    out = np.zeros((h, w))
    for scale, amp in ((cells, 1.0), (2 * cells, 0.5)):
        k = max(round(scale), 1) + 2
        out += amp * _upsample(rng.standard_normal((k, k)), h, w)
    sd = out.std()
    return out / sd if sd > 0 else out


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of a 2-D array with edge padding (a few shifted adds)."""
    r = max(int(np.ceil(3 * sigma)), 1)
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    h, w = x.shape
    xp = np.pad(x, ((r, r), (0, 0)), mode="edge")
    x = sum(k[i] * xp[i:i + h] for i in range(2 * r + 1))
    xp = np.pad(x, ((0, 0), (r, r)), mode="edge")
    return sum(k[i] * xp[:, i:i + w] for i in range(2 * r + 1))


def _splat(acc: np.ndarray, pts: np.ndarray, weight: np.ndarray) -> None:
    """Adds `weight` at float points (n, 2) = (row, col) with bilinear spreading."""
    h, w = acc.shape
    y0 = np.floor(pts[:, 0]).astype(np.int64)
    x0 = np.floor(pts[:, 1]).astype(np.int64)
    fy, fx = pts[:, 0] - y0, pts[:, 1] - x0
    yy = np.concatenate([y0, y0, y0 + 1, y0 + 1])
    xx = np.concatenate([x0, x0 + 1, x0, x0 + 1])
    ww = np.concatenate([(1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx])
    ww *= np.tile(weight, 4)
    ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
    acc += np.bincount(yy[ok] * w + xx[ok], ww[ok], minlength=h * w).reshape(h, w)


def _curve(rng: np.random.Generator, start: np.ndarray, heading: float, length: float,
           wiggle: float, step: float = 0.5) -> np.ndarray:
    """Points (n, 2) every `step` px along a smoothly bending path."""
    n = max(int(length / step), 2)
    turn = np.cumsum(rng.normal(0.0, wiggle, n))
    turn = np.convolve(turn, np.ones(9) / 9, mode="same")  # bends, not zig-zags
    theta = heading + turn
    d = step * np.stack([np.sin(theta), np.cos(theta)], 1)
    return start + np.cumsum(d, 0)


def _profile(rng: np.random.Generator, n: int, lo: float, hi: float, gaps: float) -> np.ndarray:
    """Patchy amplitude along a curve: smooth values in [lo, hi], zero over `gaps` of it."""
    k = max(n // 40, 2) + 2
    t = np.linspace(0.0, k - 1.0, n)
    amp = lo + (hi - lo) * np.interp(t, np.arange(k), rng.random(k))
    return np.where(np.interp(t, np.arange(k), rng.random(k)) < gaps, 0.0, amp)


def _line(rng: np.random.Generator, start: np.ndarray, heading: float, length: float,
          strands: int, amp: tuple[float, float], gaps: float, wiggle: float = 0.02
          ) -> tuple[np.ndarray, np.ndarray]:
    """Points and weights of a filament of `strands` parallel 1-px strands (unit weight per
    pixel of length = abundance ~1 across one pixel once splatted)."""
    pts = _curve(rng, start, heading, length, wiggle)
    prof = _profile(rng, len(pts), amp[0], amp[1], gaps) * 0.5  # 0.5 = point spacing
    normal = np.array([np.cos(heading), -np.sin(heading)])
    offs = (np.arange(strands) - (strands - 1) / 2) * 0.9
    return (np.concatenate([pts + o * normal for o in offs]), np.tile(prof, strands))


def _draw(acc: np.ndarray, parts: list[tuple[np.ndarray, np.ndarray]]) -> None:
    if parts:
        _splat(acc, np.concatenate([p for p, _ in parts]), np.concatenate([w for _, w in parts]))


def _blob(rng: np.random.Generator, centre: np.ndarray, n: int, spread: float, amp: float
          ) -> tuple[np.ndarray, np.ndarray]:
    pts = centre + rng.normal(0.0, spread, (n, 2))
    return pts, np.full(n, amp)


def _resample_coarse(img: np.ndarray, bands: Sequence[int], f: int) -> None:
    """Block mean over f x f, then back to 10 m: 20 m / 60 m bands resampled to 10 m."""
    h, w, _ = img.shape
    hp, wp = -(-h // f) * f, -(-w // f) * f
    b = np.pad(img[..., list(bands)], ((0, hp - h), (0, wp - w), (0, 0)), mode="edge")
    b = b.reshape(hp // f, f, wp // f, f, len(bands)).mean((1, 3))
    img[..., list(bands)] = np.repeat(np.repeat(b, f, 0), f, 1)[:h, :w]


# ----------------------------------------------------------------------------- one scene
@dataclasses.dataclass
class Scene:
    """One rendered patch and its ground truth."""

    image: np.ndarray  # (H, W, 11) float32
    mask: np.ndarray  # (H, W) uint8: 0 / 1 / 255
    confidence: np.ndarray  # (H, W) uint8: 0..3
    marida: np.ndarray  # (H, W) uint8 MARIDA class of the dominant material, 0 = none


def _mix(img: np.ndarray, a: np.ndarray, spec: np.ndarray) -> None:
    """Linear mixing in place: a fraction `a` of each pixel becomes material `spec` (a
    spectrum (11,) or per-pixel spectra (H, W, 11)); only pixels with a > 0 are touched."""
    on = a > 1e-4
    if spec.ndim == 1 and on.mean() > 0.2:  # dense layer (clouds): whole-array ops are cheaper
        a32 = a[..., None].astype(np.float32)
        img *= 1 - a32
        img += a32 * spec.astype(np.float32)
        return
    idx = np.nonzero(on)
    if idx[0].size:
        av = a[idx][:, None].astype(np.float32)
        sp = spec[idx] if spec.ndim == 3 else spec
        img[idx] = img[idx] * (1 - av) + av * sp


def render(rng: np.random.Generator, size: int, debris_prob: float = 0.6) -> Scene:
    """One `size` x `size` scene drawn from `rng`; it holds debris with `debris_prob`."""
    h = w = size
    area = h * w / 256.0**2  # object counts scale with the patch area
    cls = np.full((h, w), 7, np.uint8)  # Marine Water
    lookalike = np.zeros((h, w))  # abundance of anything that resembles debris

    # Water: clear or turbid, smooth variation in brightness and turbidity.
    turb_level = rng.choice([0.0, 0.0, 0.3, 0.8]) * rng.random()
    turb = np.clip(turb_level + 0.25 * smooth_field(rng, h, w, 3) * (turb_level > 0), 0, 1)
    bright = 1.0 + 0.08 * smooth_field(rng, h, w, 4)
    water = _WATER * rng.uniform(0.85, 1.2)
    img = (water.astype(np.float32) + turb[..., None].astype(np.float32)
           * (_TURBID - water).astype(np.float32)) * bright[..., None].astype(np.float32)
    cls[turb > 0.35] = 10  # Turbid Water
    cls[turb > 0.7] = 8  # Sediment-Laden Water

    # Sargassum: windrows of long bent lines (some 1 px wide, some 3-4) and a few mats.
    sarg = np.zeros((h, w))
    if rng.random() < 0.4:
        heading = rng.uniform(0, np.pi)
        parts = [_line(rng, rng.uniform(0, size, 2), heading + rng.normal(0, 0.15),
                       rng.uniform(30, 200), int(rng.integers(1, 5)), (0.1, 0.8), gaps=0.3)
                 for _ in range(rng.poisson(6 * area) + 1)]
        parts += [_blob(rng, rng.uniform(0, size, 2), int(rng.integers(20, 150)),
                        rng.uniform(1.5, 5), rng.uniform(0.3, 0.9))
                  for _ in range(rng.poisson(1.5 * area))]
        _draw(sarg, parts)
        sarg = np.clip(_blur(sarg, 0.6), 0, 1)
        cls[sarg > 0.15] = 3  # Sparse Sargassum
        cls[sarg > 0.5] = 2  # Dense Sargassum

    # Debris: a windrow of thin filaments (1-2 strands) plus small clusters, each object with
    # its own brightness, spectral tilt and share of organic matter (spectrum per pixel is
    # the abundance-weighted mean of those of the objects covering it).
    deb = np.zeros((h, w))
    deb_spec = None
    if rng.random() < debris_prob:
        heading = rng.uniform(0, np.pi)
        centre = rng.uniform(0.25 * size, 0.75 * size, 2)
        parts, props = [], []
        n_fil, n_blob = rng.poisson(18 * area) + 3, rng.poisson(8 * area)
        for j in range(n_fil + n_blob):
            if j < n_fil:
                start = centre + rng.normal(0, 0.22 * size, 2)
                p = _line(rng, start, heading + rng.normal(0, 0.12), rng.uniform(15, 130),
                          int(rng.integers(1, 3)), (0.35, 1.0), gaps=0.2, wiggle=0.03)
            else:
                p = _blob(rng, centre + rng.normal(0, 0.3 * size, 2), int(rng.integers(3, 14)),
                          rng.uniform(0.5, 1.5), rng.uniform(0.3, 0.8))
            parts.append(p)
            prop = (rng.uniform(0.7, 1.4), rng.normal(0, 0.08), rng.uniform(0, 0.45))
            props.append(np.broadcast_to(prop, (len(p[1]), 3)))
        pts, wts = np.concatenate([p for p, _ in parts]), np.concatenate([w for _, w in parts])
        prop_pts = np.concatenate(props)
        _splat(deb, pts, wts)
        acc = []
        for k in range(3):
            a = np.zeros((h, w))
            _splat(a, pts, wts * prop_pts[:, k])
            acc.append(_blur(a, 0.45))
        deb = _blur(deb, 0.45)
        on = np.nonzero(deb > 1e-4)  # spectra only where there is debris
        bri, tilt, org = (a[on][:, None] / deb[on][:, None] for a in acc)
        deb = np.clip(deb, 0, 0.95)
        spec = _DEBRIS * bri * (1 + tilt * np.linspace(1.0, -1.0, NUM_BANDS))
        deb_spec = np.zeros((h, w, NUM_BANDS), np.float32)
        deb_spec[on] = (spec + org * (_SARGASSUM - spec))

    # Natural organic material: mats several pixels across (wood, leaves, seagrass) with a
    # spectrum between debris and sargassum; only their size and compactness differ from debris.
    nom = np.zeros((h, w))
    if rng.random() < 0.4:
        _draw(nom, [_blob(rng, rng.uniform(0, size, 2), int(rng.integers(30, 200)),
                          rng.uniform(2.5, 7), rng.uniform(0.2, 0.6))
                    for _ in range(rng.poisson(3 * area) + 1)])
        nom = np.clip(_blur(nom, 0.8), 0, 0.9)
        nom_spec = _DEBRIS * rng.uniform(0.6, 1.2)
        nom_spec += rng.uniform(0.3, 0.6) * (_SARGASSUM - nom_spec)
        _mix(img, nom, nom_spec)
        cls[nom > 0.2] = 4

    # Ships (harbour traffic: from small boats of a few pixels to large vessels) with foam
    # wakes; foam lines and whitecap specks.
    ship = np.zeros((h, w))
    foam = np.zeros((h, w))
    ship_parts, foam_parts = [], []
    for _ in range(rng.poisson(2.5 * area) if rng.random() < 0.5 else 0):
        c, hd = rng.uniform(0, size, 2), rng.uniform(0, 2 * np.pi)
        length = rng.uniform(3, 8) if rng.random() < 0.6 else rng.uniform(8, 25)
        width = max(length / rng.uniform(3, 6), 1.0)
        u, v = np.meshgrid(np.arange(0, length, 0.5), np.arange(-width / 2, width / 2, 0.5))
        along, across = np.array([np.sin(hd), np.cos(hd)]), np.array([np.cos(hd), -np.sin(hd)])
        pts = c + u.reshape(-1, 1) * along + v.reshape(-1, 1) * across
        ship_parts.append((pts, np.full(len(pts), 0.25 * rng.uniform(0.8, 1.6))))
        for side in (-1, 1):  # the two arms of the wake, behind the stern
            foam_parts.append(_line(rng, c + side * across, hd + np.pi + side * 0.15,
                                    rng.uniform(20, 100), 2, (0.1, 0.6), gaps=0.1))
    if rng.random() < 0.5:
        foam_parts += [_line(rng, rng.uniform(0, size, 2), rng.uniform(0, 2 * np.pi),
                             rng.uniform(20, 120), 1, (0.05, 0.5), gaps=0.4, wiggle=0.05)
                       for _ in range(rng.poisson(3 * area))]
        n = rng.poisson(rng.uniform(50, 400) * area)
        foam_parts.append((rng.uniform(0, size, (n, 2)), rng.uniform(0.1, 0.7, n)))
    _draw(ship, ship_parts)
    _draw(foam, foam_parts)
    ship = np.clip(_blur(ship, 0.5), 0, 1)
    foam = np.clip(_blur(foam, 0.5), 0, 0.9)

    _mix(img, sarg, _SARGASSUM)
    if deb_spec is not None:
        _mix(img, deb, deb_spec)
    _mix(img, foam, _FOAM)
    _mix(img, ship, _SHIP * rng.uniform(0.7, 1.5))
    cls[foam > 0.2] = 9  # Foam
    cls[ship > 0.3] = 5  # Ship
    lookalike += sarg + foam + ship + nom

    # Sun glint: smooth bright gradient times wave speckle, spectrally flat.
    if rng.random() < 0.3:
        g = rng.uniform(0.01, 0.12) * np.clip(0.6 + 0.4 * smooth_field(rng, h, w, 1.5), 0.1,
                                              None)
        waves = np.exp(0.8 * _blur(rng.standard_normal((h, w)), 0.7) * rng.uniform(1, 3))
        glint = np.minimum(g * waves / waves.mean(), 0.3)  # glint saturates near 0.3
        img += glint[..., None].astype(np.float32) * _GLINT.astype(np.float32)
        lookalike += np.clip(glint / 0.1, 0, 1)
        cls[glint > 2.5 * g.mean()] = 12  # Waves

    # Haze: smooth additive layer.
    haze = np.zeros((h, w))
    if rng.random() < 0.5:
        haze = rng.uniform(0.005, 0.04) * np.clip(1 + 0.5 * smooth_field(rng, h, w, 2), 0, None)
        img += haze[..., None].astype(np.float32) * _HAZE.astype(np.float32)

    # Clouds: thresholded smooth field, opaque cores, shadows shifted from them.
    cloud = np.zeros((h, w))
    if rng.random() < 0.3:
        cloud = np.clip((smooth_field(rng, h, w, 3) - rng.uniform(0.3, 1.5)) * 1.5, 0, 1)
        shift = rng.integers(-12, 13, 2)
        shadow = np.roll(cloud, tuple(shift), (0, 1)) * (1 - cloud)
        img *= (1 - 0.5 * shadow)[..., None].astype(np.float32)
        _mix(img, cloud, _CLOUD * rng.uniform(0.6, 1.3))
        cls[shadow > 0.3] = 13  # Cloud Shadows
        cls[cloud > 0.4] = 6  # Clouds

    # 20 m / 60 m bands lose the detail of thin objects; then sensor noise.
    _resample_coarse(img, _B20, 2)
    _resample_coarse(img, _B60, 6)
    noise = rng.standard_normal(img.shape, dtype=np.float32)
    img += noise * (_NOISE * rng.uniform(0.8, 1.6)).astype(np.float32)
    np.clip(img, 1e-4, None, out=img)  # reflectance stays positive

    mask = np.zeros((h, w), np.uint8)
    core = deb >= _DEBRIS_CORE
    mask[core] = DEBRIS
    mask[(deb >= _DEBRIS_RIM) & ~core] = UNLABELED
    mask[(deb >= _DEBRIS_RIM) & (cloud > 0.4)] = UNLABELED  # annotators cannot see under cloud
    cls[mask == DEBRIS] = 1
    cls[mask == UNLABELED] = 0
    conf = np.ones((h, w), np.uint8)
    conf[lookalike > 0.1] = 2
    conf[(haze > 0.03) | ((cloud > 0.1) & (cloud <= 0.4))] = 3
    d = mask == DEBRIS
    conf[d] = np.where(deb[d] >= 0.5, 1, np.where(deb[d] >= 0.35, 2, 3))
    conf[mask == UNLABELED] = 0
    return Scene(img, mask, conf, cls)


def _split_of(has_debris: np.ndarray, fractions: Sequence[float], seed: int) -> np.ndarray:
    """Split per patch (0 train, 1 val, 2 test), stratified by 'holds debris': patches with
    and without debris are each cut by `fractions`, and each kind reaches every split."""
    groups = split_groups(has_debris.tolist(), fractions, rng=np.random.default_rng([seed, 2]),
                          names=SPLITS, class_names={False: "patch without debris",
                                                     True: "patch with debris"}, what="patches")
    split = np.zeros(len(has_debris), np.uint8)
    for k, name in enumerate(SPLITS):
        split[groups[name]] = k
    return split


def code_version() -> str:
    """Hash of this generator's source, written into every file it makes."""
    return generator_version(sys.modules[__name__], {})


def generate(path: str | os.PathLike[str], *, num_patches: int = DEFAULT_NUM_PATCHES,
             size: int = 256, seed: int = 0,
             split: Sequence[float] = (0.7, 0.15, 0.15)) -> str:
    """Writes `num_patches` synthetic 11-band patches of `size` x `size` to `path` (atomically).

    Deterministic per (seed, patch index). Splits are stratified by whether a patch holds
    debris; ValueError when too few patches hold (or lack) debris for every split to get
    one. Returns the path.
    """
    if num_patches < 1:
        raise ValueError(f"num_patches must be >= 1, got {num_patches}")
    if size < 16:
        raise ValueError(f"size must be >= 16, got {size}")
    if len(split) != 3 or min(split) < 0 or sum(split) <= 0:
        raise ValueError(f"split must be 3 non-negative fractions, got {tuple(split)}")
    path = os.fspath(path)
    attrs = {"source": "synthetic", "seed": int(seed), "generator_version": code_version()}
    with create(path, num_patches, size, size, attrs) as writer:
        has_debris = np.zeros(num_patches, bool)
        for i in range(num_patches):
            s = render(np.random.default_rng([seed, 1, i]), size)
            writer.put(i, s.image, s.mask, s.confidence)
            has_debris[i] = bool((s.mask == DEBRIS).any())
        names = [f"synthetic_{seed}_{i:05d}" for i in range(num_patches)]
        writer.finish(_split_of(has_debris, split, seed), names)
    return path

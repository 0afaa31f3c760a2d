"""Marine-debris segmentation data: synthetic Sentinel-2 patches, MARIDA converter, reader,
grain source, band statistics and augmentation, all in the ``jaxtrain-debris-v1`` HDF5 layout.

Layout (one row per patch; written by `generate` and `convert_marida`)::

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

Synthetic scenes (`generate`) are open-sea patches mixed linearly from per-pixel abundances of
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
cloud are 255 (ignore, like MARIDA's unlabeled pixels), everything else is 0. `DebrisSource`
returns masks as int32 with ignore = -1 (`IGNORE`), MARIDA's training convention.

MARIDA (Kikaki et al. 2022, doi:10.5281/zenodo.5151941): `convert_marida` reads the patches
with tifffile (no GDAL): ``patches/S2_<date>_<tile>/S2_<date>_<tile>_<crop>.tif`` (11 bands),
``..._cl.tif`` (classes 1..15, 0 = unlabeled; 1 = Marine Debris), ``..._conf.tif`` (1 high,
2 moderate, 3 low), and ``splits/{train,val,test}_X.txt`` listing ids ``<date>_<tile>_<crop>``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Iterable, Sequence
from typing import Any

import h5py
import numpy as np

from jaxtrain.data import check_format, one_line, open_hdf5, str_list

Record = dict[str, np.ndarray]

FORMAT = "jaxtrain-debris-v1"
BAND_NAMES: tuple[str, ...] = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")
BAND_WAVELENGTHS_NM: tuple[float, ...] = (443, 490, 560, 665, 705, 740, 783, 842, 865, 1610, 2190)
NUM_BANDS = len(BAND_NAMES)
DEBRIS_CLASS = "Marine Debris (MARIDA class 1)"
NOT_DEBRIS, DEBRIS, UNLABELED = 0, 1, 255  # values in /masks
IGNORE = -1  # value of unlabeled pixels in the int32 masks DebrisSource returns
SPLITS: tuple[str, ...] = ("train", "val", "test")
CONFIDENCE_NAMES: tuple[str, ...] = ("none", "high", "moderate", "low")
DATASETS: tuple[str, ...] = ("images", "masks", "split", "names")  # /confidence is optional

MARIDA_CLASSES: tuple[str, ...] = (
    "Marine Debris", "Dense Sargassum", "Sparse Sargassum", "Natural Organic Material", "Ship",
    "Clouds", "Marine Water", "Sediment-Laden Water", "Foam", "Turbid Water", "Shallow Water",
    "Waves", "Cloud Shadows", "Wakes", "Mixed Water",
)  # value i + 1 in *_cl.tif; 0 = unlabeled
MARIDA_DEBRIS = 1
# MARIDA's per-band means (its U-Net loader), used to fill a band that is NaN in a whole patch.
MARIDA_BAND_MEAN = np.array([0.05197577, 0.04783991, 0.04056812, 0.03163572, 0.02972606,
                             0.03457443, 0.03875053, 0.03436435, 0.0392113, 0.02358126,
                             0.01588816], np.float32)

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
    """Bilinear upsampling of a coarse (ky, kx) grid to (h, w) (gathers, no BLAS: its thread
    pool is erratic on a busy 2-core machine)."""
    ky, kx = grid.shape
    y = np.linspace(0.0, ky - 1.0, h)
    i = np.minimum(y.astype(np.int64), ky - 2)
    fy = (y - i)[:, None]
    rows = grid[i] * (1.0 - fy) + grid[i + 1] * fy
    x = np.linspace(0.0, kx - 1.0, w)
    j = np.minimum(x.astype(np.int64), kx - 2)
    fx = x - j
    return rows[:, j] * (1.0 - fx) + rows[:, j + 1] * fx


def _smooth(rng: np.random.Generator, h: int, w: int, cells: float) -> np.ndarray:
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
class _Scene:
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


def _render(rng: np.random.Generator, size: int, debris_prob: float = 0.6) -> _Scene:
    h = w = size
    area = h * w / 256.0**2  # object counts scale with the patch area
    cls = np.full((h, w), 7, np.uint8)  # Marine Water
    lookalike = np.zeros((h, w))  # abundance of anything that resembles debris

    # Water: clear or turbid, smooth variation in brightness and turbidity.
    turb_level = rng.choice([0.0, 0.0, 0.3, 0.8]) * rng.random()
    turb = np.clip(turb_level + 0.25 * _smooth(rng, h, w, 3) * (turb_level > 0), 0, 1)
    bright = 1.0 + 0.08 * _smooth(rng, h, w, 4)
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
        g = rng.uniform(0.01, 0.12) * np.clip(0.6 + 0.4 * _smooth(rng, h, w, 1.5), 0.1, None)
        waves = np.exp(0.8 * _blur(rng.standard_normal((h, w)), 0.7) * rng.uniform(1, 3))
        glint = np.minimum(g * waves / waves.mean(), 0.3)  # glint saturates near 0.3
        img += glint[..., None].astype(np.float32) * _GLINT.astype(np.float32)
        lookalike += np.clip(glint / 0.1, 0, 1)
        cls[glint > 2.5 * g.mean()] = 12  # Waves

    # Haze: smooth additive layer.
    haze = np.zeros((h, w))
    if rng.random() < 0.5:
        haze = rng.uniform(0.005, 0.04) * np.clip(1 + 0.5 * _smooth(rng, h, w, 2), 0, None)
        img += haze[..., None].astype(np.float32) * _HAZE.astype(np.float32)

    # Clouds: thresholded smooth field, opaque cores, shadows shifted from them.
    cloud = np.zeros((h, w))
    if rng.random() < 0.3:
        cloud = np.clip((_smooth(rng, h, w, 3) - rng.uniform(0.3, 1.5)) * 1.5, 0, 1)
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
    return _Scene(img, mask, conf, cls)


def _split_of(has_debris: np.ndarray, fractions: Sequence[float], seed: int) -> np.ndarray:
    """Split per patch, stratified by 'holds debris', each stratum cut by `fractions`."""
    rng = np.random.default_rng([seed, 2])
    split = np.zeros(len(has_debris), np.uint8)
    fr = np.asarray(fractions, float) / sum(fractions)
    for key in (False, True):
        idx = np.flatnonzero(has_debris == key)
        idx = idx[rng.permutation(len(idx))]
        raw = fr * len(idx)
        counts = np.floor(raw).astype(int)
        for i in np.argsort(raw - counts)[::-1][: len(idx) - counts.sum()]:
            counts[i] += 1
        split[idx] = np.repeat(np.arange(len(fr)), counts).astype(np.uint8)
    return split


# ----------------------------------------------------------------------------- writing
class _Writer:
    """Creates the layout in `path + '.tmp'` and moves it into place on success."""

    def __init__(self, path: str, n: int, h: int, w: int, attrs: dict[str, Any],
                 confidence: bool = True):
        self.path, self.tmp = path, path + ".tmp"
        d = os.path.dirname(os.path.abspath(path))
        os.makedirs(d, exist_ok=True)
        self.f = h5py.File(self.tmp, "w")
        self.f.attrs["format"] = FORMAT
        self.f.attrs["band_names"] = list(BAND_NAMES)
        self.f.attrs["band_wavelengths_nm"] = np.asarray(BAND_WAVELENGTHS_NM, np.float32)
        self.f.attrs["debris_class"] = DEBRIS_CLASS
        self.f.attrs["mask_values"] = "0 not debris, 1 debris, 255 unlabeled (ignore)"
        self.f.attrs["confidence_values"] = "0 none, 1 high, 2 moderate, 3 low"
        self.f.attrs["split_values"] = "0 train, 1 val, 2 test"
        for k, v in attrs.items():
            self.f.attrs[k] = v
        self.images = self.f.create_dataset("images", (n, h, w, NUM_BANDS), "f4",
                                            chunks=(1, h, w, NUM_BANDS))
        self.masks = self.f.create_dataset("masks", (n, h, w), "u1", chunks=(1, h, w))
        self.conf = (self.f.create_dataset("confidence", (n, h, w), "u1", chunks=(1, h, w))
                     if confidence else None)

    def put(self, i: int, image: np.ndarray, mask: np.ndarray, conf: np.ndarray | None) -> None:
        self.images[i] = image
        self.masks[i] = mask
        if self.conf is not None and conf is not None:
            self.conf[i] = conf

    def finish(self, split: np.ndarray, names: Sequence[str]) -> str:
        self.f.create_dataset("split", data=np.asarray(split, np.uint8))
        self.f.create_dataset("names", data=list(names), dtype=h5py.string_dtype())
        self.f.close()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        self.f.close()
        if os.path.exists(self.tmp):
            os.remove(self.tmp)


def generator_version() -> str:
    """Hash of this module's source: part of cache file names, so stale data are never reused."""
    with open(__file__, "rb") as f:
        return hashlib.sha1(f.read()).hexdigest()[:8]


def generate(path: str | os.PathLike[str], *, num_patches: int = DEFAULT_NUM_PATCHES,
             size: int = 256, seed: int = 0,
             split: Sequence[float] = (0.7, 0.15, 0.15)) -> str:
    """Writes `num_patches` synthetic 11-band patches of `size` x `size` to `path` (atomically).

    Deterministic per (seed, patch index). Splits are stratified by whether a patch holds
    debris. Returns the path.
    """
    if num_patches < 1:
        raise ValueError(f"num_patches must be >= 1, got {num_patches}")
    if size < 16:
        raise ValueError(f"size must be >= 16, got {size}")
    if len(split) != 3 or min(split) < 0 or sum(split) <= 0:
        raise ValueError(f"split must be 3 non-negative fractions, got {tuple(split)}")
    path = os.fspath(path)
    attrs = {"source": "synthetic", "seed": int(seed), "generator_version": generator_version()}
    writer = _Writer(path, num_patches, size, size, attrs)
    try:
        has_debris = np.zeros(num_patches, bool)
        for i in range(num_patches):
            s = _render(np.random.default_rng([seed, 1, i]), size)
            writer.put(i, s.image, s.mask, s.confidence)
            has_debris[i] = bool((s.mask == DEBRIS).any())
        names = [f"synthetic_{seed}_{i:05d}" for i in range(num_patches)]
        return writer.finish(_split_of(has_debris, split, seed), names)
    except BaseException:
        writer.abort()
        raise


# ----------------------------------------------------------------------------- reading
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
    path = os.fspath(path)
    f = open_hdf5(path, "debris data")
    try:
        with f:
            return _read_layout(f, path, scan)
    except (OSError, KeyError, RuntimeError, TypeError) as e:
        raise ValueError(f"{path}: damaged HDF5 file ({one_line(e)})") from None


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
        self._f: h5py.File | None = None
        self._pid = -1

    def __len__(self) -> int:
        return len(self.indices)

    def __repr__(self) -> str:  # grain keys checkpoint state on it
        return f"DebrisSource({self.path!r}, n={len(self)})"

    def _file(self) -> h5py.File:
        if self._f is None or self._pid != os.getpid():  # first read in this (worker) process
            self._f = h5py.File(self.path, "r", rdcc_nbytes=8 * 2**20)
            self._pid = os.getpid()
        return self._f

    def __getitem__(self, i: int) -> Record:
        f = self._file()
        row = int(self.indices[i])
        mask = f["masks"][row].astype(np.int32)
        mask[mask == UNLABELED] = IGNORE
        conf = (f["confidence"][row].astype(np.int32) if "confidence" in f
                else np.zeros(mask.shape, np.int32))
        image = np.asarray(f["images"][row], np.float32)
        return {"image": image, "mask": mask, "confidence": conf,
                "index": np.int32(row)}

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_f"], state["_pid"] = None, -1  # h5py handles cannot be pickled
        return state


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


# ----------------------------------------------------------------------------- augmentation
def _dihedral(a: np.ndarray, k: int, flip: bool) -> np.ndarray:
    a = np.rot90(a, k, axes=(0, 1))
    return a[:, ::-1] if flip else a


def augment(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator
            ) -> tuple[np.ndarray, np.ndarray]:
    """One of the 8 dihedral transforms (90-degree rotations x horizontal flip), uniformly;
    image (H, W, C) and mask (H, W) move together. Vertical flips are rotation + flip."""
    k, flip = int(rng.integers(4)), bool(rng.integers(2))
    return (np.ascontiguousarray(_dihedral(image, k, flip)),
            np.ascontiguousarray(_dihedral(mask, k, flip)))


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


def random_crop(image: np.ndarray, mask: np.ndarray, size: int, rng: np.random.Generator,
                *, focus_prob: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """A random `size` x `size` window of image and mask; with probability `focus_prob` it
    is placed around a debris pixel (mask value 1) when the patch has one."""
    y, x = _crop_origin(mask, size, rng, focus_prob)
    return image[y:y + size, x:x + size], mask[y:y + size, x:x + size]


def augment_record(record: Record, rng: np.random.Generator, *, crop_size: int | None = None,
                   focus_prob: float = 0.0) -> Record:
    """Task.random_transform for DebrisSource records: optional crop, then a dihedral
    transform, applied identically to image, mask and confidence. Use
    ``functools.partial(augment_record, crop_size=128)`` to train on crops."""
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


# ----------------------------------------------------------------------------- indices
def _band(image: np.ndarray, name: str) -> np.ndarray:
    return image[..., BAND_NAMES.index(name)].astype(np.float32)


def fdi(image: np.ndarray) -> np.ndarray:
    """Floating Debris Index (Biermann et al. 2020) of (..., 11) reflectance:
    B8 - (B6 + (B11 - B6) * (842 - 665) / (1610 - 665) * 10)."""
    b6, b8, b11 = (_band(image, b) for b in ("B6", "B8", "B11"))
    return b8 - (b6 + (b11 - b6) * (842.0 - 665.0) / (1610.0 - 665.0) * 10.0)


def ndvi(image: np.ndarray) -> np.ndarray:
    """(B8 - B4) / (B8 + B4) of (..., 11) reflectance."""
    b4, b8 = _band(image, "B4"), _band(image, "B8")
    return (b8 - b4) / np.maximum(b8 + b4, 1e-6)


# ----------------------------------------------------------------------------- MARIDA
def _read_tiff(path: str, what: str) -> np.ndarray:
    import tifffile  # imported here: only MARIDA users need it

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such MARIDA {what} file")
    try:
        x = np.asarray(tifffile.imread(path))
    except Exception as e:  # tifffile raises many types for damaged files
        raise ValueError(f"{path}: not a readable TIFF ({one_line(e)})") from None
    if x.size == 0:  # tifffile only warns about some damage and returns nothing
        raise ValueError(f"{path}: not a readable TIFF (no image data)")
    return x


def read_tiff_image(path: str | os.PathLike[str]) -> np.ndarray:
    """An 11-band patch GeoTIFF as (H, W, 11) float32 (NaN kept).

    Accepts band-first (GDAL/MARIDA, planar) or band-last storage."""
    path = os.fspath(path)
    x = _read_tiff(path, "image")
    if x.ndim == 3 and x.shape[0] == NUM_BANDS and x.shape[-1] != NUM_BANDS:
        x = np.moveaxis(x, 0, -1)
    if x.ndim != 3 or x.shape[-1] != NUM_BANDS:
        raise ValueError(f"{path}: image shape {x.shape}, expected {NUM_BANDS} bands "
                         f"as (11, H, W) or (H, W, 11)")
    if x.dtype.kind not in "fiu":
        raise ValueError(f"{path}: image dtype {x.dtype} is not numeric")
    return x.astype(np.float32)


def _read_band_map(path: str, what: str, shape: tuple[int, int], hi: int) -> np.ndarray:
    x = _read_tiff(path, what)
    if x.ndim == 3 and 1 in (x.shape[0], x.shape[-1]):
        x = x.reshape(x.shape[1:] if x.shape[0] == 1 else x.shape[:-1])
    if x.shape != shape:
        raise ValueError(f"{path}: {what} shape {x.shape}, expected {shape} like the image")
    if x.dtype.kind == "f":
        if not np.isfinite(x).all() or (x != np.round(x)).any():
            raise ValueError(f"{path}: {what} values must be whole numbers")
    elif x.dtype.kind not in "iu":
        raise ValueError(f"{path}: {what} dtype {x.dtype} is not numeric")
    x = x.astype(np.int64)
    bad = (x < 0) | (x > hi)
    if bad.any():
        raise ValueError(f"{path}: {what} value {int(x[bad][0])}, expected 0..{hi}")
    return x


def marida_paths(root: str | os.PathLike[str], patch_id: str) -> tuple[str, str, str]:
    """(image, class mask, confidence) paths of id ``<date>_<tile>_<crop>`` (``S2_`` optional)."""
    pid = patch_id[3:] if patch_id.startswith("S2_") else patch_id
    if pid.count("_") < 2:
        raise ValueError(f"MARIDA patch id {patch_id!r} is not <date>_<tile>_<crop>")
    base = os.path.join(os.fspath(root), "patches", "S2_" + pid.rsplit("_", 1)[0], "S2_" + pid)
    return base + ".tif", base + "_cl.tif", base + "_conf.tif"


def _split_ids(root: str) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    seen: dict[str, str] = {}
    for k, s in enumerate(SPLITS):
        p = os.path.join(root, "splits", f"{s}_X.txt")
        if not os.path.isfile(p):
            raise FileNotFoundError(f"{p}: no such MARIDA split list")
        with open(p) as fh:
            ids = [line.strip() for line in fh if line.strip()]
        for i in ids:
            key = i[3:] if i.startswith("S2_") else i
            if key in seen:
                raise ValueError(f"{p}: patch {i} is already listed in {seen[key]}")
            seen[key] = p
            out.append((key, k))
    if not out:
        raise ValueError(f"{os.path.join(root, 'splits')}: the split lists name no patches")
    return out


def convert_marida(root: str | os.PathLike[str], out_path: str | os.PathLike[str]) -> str:
    """Converts a MARIDA tree at `root` to a ``jaxtrain-debris-v1`` file at `out_path`.

    Patches are taken in split-list order (train, val, test). Class 1 (Marine Debris) -> 1,
    classes 2..15 -> 0, unlabeled (0) -> 255. Confidence is copied (0 where unlabeled) when
    every patch has a ``_conf.tif`` and left out when none has. NaN reflectance is filled with
    the patch's band mean (MARIDA's band mean for an all-NaN band) and such pixels are set to
    ignore. Missing or damaged files, a band count other than 11 and size mismatches are
    one-line errors naming the file. Returns the output path.
    """
    root, out_path = os.fspath(root), os.fspath(out_path)
    if not os.path.isdir(os.path.join(root, "patches")):
        raise FileNotFoundError(f"{os.path.join(root, 'patches')}: no such MARIDA directory")
    ids = _split_ids(root)
    paths = [marida_paths(root, i) for i, _ in ids]
    for img_p, cl_p, _ in paths:
        for p in (img_p, cl_p):
            if not os.path.isfile(p):
                raise FileNotFoundError(f"{p}: no such MARIDA file (listed in splits/)")
    has_conf = [os.path.isfile(c) for _, _, c in paths]
    if any(has_conf) and not all(has_conf):
        raise FileNotFoundError(f"{paths[has_conf.index(False)][2]}: no such MARIDA confidence "
                                f"file (other patches have one)")
    first = read_tiff_image(paths[0][0])
    h, w = first.shape[:2]
    writer = _Writer(out_path, len(ids), h, w, {"source": "MARIDA", "marida_root": root},
                     confidence=all(has_conf))
    try:
        nan_pixels = 0
        for i, (img_p, cl_p, conf_p) in enumerate(paths):
            x = first if i == 0 else read_tiff_image(img_p)
            if x.shape[:2] != (h, w):
                raise ValueError(f"{img_p}: patch size {x.shape[:2]}, expected {(h, w)} like "
                                 f"{paths[0][0]}")
            cl = _read_band_map(cl_p, "class mask", (h, w), len(MARIDA_CLASSES))
            mask = np.where(cl == 0, UNLABELED, np.where(cl == MARIDA_DEBRIS, DEBRIS,
                                                         NOT_DEBRIS)).astype(np.uint8)
            conf = None
            if all(has_conf):
                conf = _read_band_map(conf_p, "confidence", (h, w), 3).astype(np.uint8)
                conf[mask == UNLABELED] = 0
            bad = ~np.isfinite(x)
            if bad.any():
                ok = (~bad).sum((0, 1))  # per band; an all-NaN band gets MARIDA's mean
                fill = np.where(ok > 0, np.where(bad, 0, x).sum((0, 1)) / np.maximum(ok, 1),
                                MARIDA_BAND_MEAN)
                x = np.where(bad, fill.astype(np.float32), x)
                px = bad.any(-1)
                mask[px] = UNLABELED
                if conf is not None:
                    conf[px] = 0
                nan_pixels += int(px.sum())
            writer.put(i, x, mask, conf)
        writer.f.attrs["nan_pixels_set_to_ignore"] = nan_pixels
        names = ["S2_" + i for i, _ in ids]
        return writer.finish(np.array([k for _, k in ids], np.uint8), names)
    except BaseException:
        writer.abort()
        raise


def _geotiff_tags(x0: float, y0: float, epsg: int) -> list[tuple]:
    """GeoTIFF tags: 10 m pixels, upper-left corner (x0, y0), projected CRS `epsg`."""
    keys = (1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, epsg)
    return [(33550, "d", 3, (10.0, 10.0, 0.0), True),  # ModelPixelScale
            (33922, "d", 6, (0.0, 0.0, 0.0, x0, y0, 0.0), True),  # ModelTiepoint
            (34735, "H", len(keys), keys, True)]  # GeoKeyDirectory


def write_marida_sample(root: str | os.PathLike[str], *, num_tiles: int = 2,
                        patches_per_tile: int = 3, size: int = 64, seed: int = 0,
                        nan_pixels: int = 0) -> str:
    """Writes a small MARIDA-layout tree (synthetic scenes, tifffile GeoTIFFs) under `root`.

    Images are (11, H, W) float32 band-first like MARIDA's; ``_cl.tif`` holds MARIDA classes
    (uint8) with most non-debris pixels unlabeled (MARIDA is sparsely annotated);
    ``_conf.tif`` the confidence. Patches are dealt round-robin to train, val and test.
    `nan_pixels` NaN pixels are put in the first patch (to exercise NaN handling). Returns root.
    """
    import tifffile

    root = os.fspath(root)
    tiles = ("48MYU", "16PCC", "36JUN", "18QYF", "51RVQ")
    ids: dict[int, list[str]] = {0: [], 1: [], 2: []}
    n = 0
    for t in range(num_tiles):
        date, tile = f"{1 + t}-12-19", tiles[t % len(tiles)] + ("" if t < len(tiles) else str(t))
        folder = os.path.join(root, "patches", f"S2_{date}_{tile}")
        os.makedirs(folder, exist_ok=True)
        for c in range(patches_per_tile):
            rng = np.random.default_rng([seed, 3, n])
            s = _render(rng, size, debris_prob=0.8)
            cl = s.marida.copy()
            keep = _smooth(rng, size, size, 2) > 0.3  # annotated polygons
            cl[(cl != MARIDA_DEBRIS) & ~keep] = 0
            conf = np.where(cl == 0, 0, np.maximum(s.confidence, 1)).astype(np.uint8)
            img = np.moveaxis(s.image, -1, 0).copy()
            if n == 0 and nan_pixels:
                flat = rng.choice(size * size, nan_pixels, replace=False)
                img[:, flat // size, flat % size] = np.nan
            pid = f"{date}_{tile}_{c}"
            base = os.path.join(folder, f"S2_{pid}")
            tags = _geotiff_tags(500_000.0 + 2560.0 * c, 9_300_000.0, 32748)
            tifffile.imwrite(base + ".tif", img, photometric="minisblack",
                             planarconfig="separate", extratags=tags)
            tifffile.imwrite(base + "_cl.tif", cl, photometric="minisblack", extratags=tags)
            tifffile.imwrite(base + "_conf.tif", conf, photometric="minisblack", extratags=tags)
            ids[n % 3].append(pid)
            n += 1
    os.makedirs(os.path.join(root, "splits"), exist_ok=True)
    for k, s in enumerate(SPLITS):
        with open(os.path.join(root, "splits", f"{s}_X.txt"), "w") as fh:
            fh.write("".join(i + "\n" for i in ids[k]))
    return root

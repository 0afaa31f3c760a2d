"""MARIDA (Kikaki et al. 2022, doi:10.5281/zenodo.5151941) to the ``jaxtrain-debris-v1`` layout.

`convert_marida` reads the patches with tifffile (no GDAL):
``patches/S2_<date>_<tile>/S2_<date>_<tile>_<crop>.tif`` (11 bands), ``..._cl.tif`` (classes
1..15, 0 = unlabeled; 1 = Marine Debris), ``..._conf.tif`` (1 high, 2 moderate, 3 low), and
``splits/{train,val,test}_X.txt`` listing ids ``<date>_<tile>_<crop>``. `read_tiff_image` reads
one 11-band GeoTIFF (also for inference); `write_marida_sample` writes a small tree in
MARIDA's layout from synthetic scenes, to try the conversion without the data set.
"""

from __future__ import annotations

import os

import numpy as np

from jaxtrain.cli import one_line
from jaxtrain.tasks.debris import synthetic
from jaxtrain.tasks.debris.layout import DEBRIS, NOT_DEBRIS, NUM_BANDS, SPLITS, UNLABELED, create

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
    attrs = {"source": "MARIDA", "marida_root": root}
    with create(out_path, len(ids), h, w, attrs, confidence=all(has_conf)) as writer:
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
        writer.attrs["nan_pixels_set_to_ignore"] = nan_pixels
        writer.finish(np.array([k for _, k in ids], np.uint8), ["S2_" + i for i, _ in ids])
    return out_path


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
            s = synthetic.render(rng, size, debris_prob=0.8)
            cl = s.marida.copy()
            keep = synthetic.smooth_field(rng, size, size, 2) > 0.3  # annotated polygons
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

"""Inference: `python -m jaxtrain.predict --workdir=RUN --input=IN --output=OUT` (`predict`).

Tiles of any size are cut into overlapping windows (`sliding_window_predict`) whose debris
probabilities are blended with a linear taper; the mask uses the threshold tuned on
validation when the run has one.
"""

from __future__ import annotations

import functools
import glob
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxtrain.data.padding import pad_rows
from jaxtrain.models.se_unet import SEUNet
from jaxtrain.run_files import chosen_threshold
from jaxtrain.tasks.debris.marida import read_tiff_image
from jaxtrain.tasks.debris.model import build_model
from jaxtrain.tasks.debris.reader import read_debris_file


def window_starts(n: int, window: int, stride: int) -> list[int]:
    """Window origins covering [0, n): every `stride`, the last one flush with the end."""
    if n <= window:
        return [0]
    return sorted({*range(0, n - window, stride), n - window})


def taper(window: int, overlap: int) -> np.ndarray:
    """(window, window) blending weights: linear ramps over `overlap` px at each edge, 1 inside.

    Strictly positive, so a pixel seen by one window gets exactly that window's output and
    overlaps get a weighted mean that fades each window out towards its (less reliable) edges.
    """
    i = np.arange(window) + 0.5
    ramp = np.minimum(1.0, np.minimum(i, window - i) / max(overlap, 1))
    return np.outer(ramp, ramp)


def sliding_window_predict(predict_batch: Callable[[np.ndarray], np.ndarray],
                           tiles: Iterable[tuple[Any, np.ndarray]], *, window: int,
                           overlap: int, batch_size: int) -> Iterator[tuple[Any, np.ndarray]]:
    """Yields (key, probability (H, W)) for tiles (key, image (H, W, C)), in input order.

    Windows of all tiles are batched together (`batch_size` at a time; `predict_batch`
    always gets exactly that many, so it compiles once). Tiles smaller than `window` are
    reflect-padded. Overlaps are blended with `taper`.
    """
    weight = taper(window, overlap)
    stride = max(window - overlap, 1)
    pending: list[tuple[int, int, int, np.ndarray]] = []
    open_tiles: dict[int, dict[str, Any]] = {}
    next_out = 0

    def run_pending() -> None:
        crops = np.stack([c for *_, c in pending])
        n = len(crops)
        probs = np.asarray(predict_batch(pad_rows(crops, batch_size)))[:n]
        for (slot, y, x, _), p in zip(pending, probs, strict=True):
            t = open_tiles[slot]
            t["acc"][y:y + window, x:x + window] += p * weight
            t["wsum"][y:y + window, x:x + window] += weight
            t["left"] -= 1
        pending.clear()

    def finished() -> Iterator[tuple[Any, np.ndarray]]:
        nonlocal next_out
        while next_out in open_tiles and open_tiles[next_out]["left"] == 0:
            t = open_tiles.pop(next_out)
            h, w = t["shape"]
            yield t["key"], (t["acc"] / t["wsum"])[:h, :w].astype(np.float32)
            next_out += 1

    for slot, (key, image) in enumerate(tiles):
        h, w = image.shape[:2]
        ph, pw = max(window - h, 0), max(window - w, 0)
        if ph or pw:
            image = np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="reflect")
        ys = window_starts(image.shape[0], window, stride)
        xs = window_starts(image.shape[1], window, stride)
        open_tiles[slot] = {"key": key, "shape": (h, w), "left": len(ys) * len(xs),
                            "acc": np.zeros(image.shape[:2]), "wsum": np.zeros(image.shape[:2])}
        for y in ys:
            for x in xs:
                pending.append((slot, y, x, image[y:y + window, x:x + window]))
                if len(pending) == batch_size:
                    run_pending()
                    yield from finished()
    if pending:
        run_pending()
    yield from finished()


@functools.partial(jax.jit, static_argnums=0)
def _debris_probability(model: SEUNet, variables: dict[str, Any], x: jax.Array) -> jax.Array:
    return jax.nn.softmax(model.apply(variables, x, train=False))[..., 1]


def make_predict_batch(config: ml_collections.ConfigDict, variables: dict[str, Any]
                       ) -> Callable[[np.ndarray], np.ndarray]:
    """Normalised (B, H, W, 11) -> debris probability (B, H, W) of a trained run (compiled
    once per model and batch shape in a process, however many times it is made)."""
    model = build_model(config)
    v = jax.device_put({"params": variables["params"],
                        "batch_stats": variables["model_state"]["batch_stats"]})
    return lambda x: _debris_probability(model, v, jnp.asarray(x))


def _find_inputs(input_path: str) -> list[str]:
    """HDF5 files (our layout) and MARIDA-style image GeoTIFFs (masks/confidence skipped)."""
    def is_image_tif(p: str) -> bool:
        name = os.path.basename(p).lower()
        return name.endswith((".tif", ".tiff")) and not name.endswith(
            ("_cl.tif", "_conf.tif", "_prob.tif", "_mask.tif"))

    if os.path.isfile(input_path):
        return [input_path]
    found = [p for p in sorted(glob.glob(os.path.join(input_path, "**", "*"), recursive=True))
             if os.path.isfile(p) and (p.lower().endswith((".h5", ".hdf5")) or is_image_tif(p))]
    if not found:
        raise FileNotFoundError(f"{input_path}: no .h5/.hdf5 or image .tif tiles found")
    return found


def _georeferencing(path: str) -> list[tuple]:
    """The input's georeferencing tags, to copy onto the outputs (empty if none)."""
    import tifffile

    with tifffile.TiffFile(path) as tf:
        return [(t.code, t.dtype, t.count, t.value, True) for t in tf.pages[0].tags.values()
                if t.code in (33550, 33922, 34264, 34735, 34736, 34737)]


def predict(config: ml_collections.ConfigDict, variables: dict[str, Any], input_path: str,
            output_path: str, batch_size: int, *, threshold: float | None = None,
            workdir: str | None = None) -> dict:
    """Debris probability and mask for every tile under `input_path`, written to `output_path`.

    Inputs: a `jaxtrain-debris-v1` HDF5 file (all its /images patches), an 11-band GeoTIFF
    (MARIDA layout: band-first or band-last), or a directory searched recursively for both
    (`*_cl.tif` / `*_conf.tif` are skipped). Outputs, one pair per input (names keep the
    input's path relative to `input_path`, "/" -> "__"):
      HDF5 `x.h5`  -> `x_prob.npy` (N, H, W) float32 and `x_mask.npy` (N, H, W) uint8;
      GeoTIFF `x.tif` -> `x_prob.tif` float32 and `x_mask.tif` uint8 (georeferencing copied).
    mask = prob >= threshold: the one given, else the operating point tuned on validation
    (`workdir`/results.json `test_report.threshold.chosen`), else `config.predict.threshold`
    (a run without results, e.g. interrupted). NaN reflectance is filled
    with the training band mean. Returns a summary.
    """
    import h5py
    import tifffile

    p = config.predict
    if threshold is None:
        threshold = chosen_threshold(workdir)
        threshold = p.threshold if threshold is None else threshold
    norm = variables["model_state"]["normalization"]
    mean = np.asarray(norm["mean"], np.float32)
    std = np.asarray(norm["std"], np.float32)
    predict_batch = make_predict_batch(config, variables)
    os.makedirs(output_path, exist_ok=True)
    root = input_path if os.path.isdir(input_path) else os.path.dirname(input_path)

    def normalise(x: np.ndarray) -> np.ndarray:
        if x.ndim != 3 or x.shape[-1] != len(mean):
            raise ValueError(f"tile of shape {x.shape}, expected (H, W, {len(mean)})")
        x = np.where(np.isfinite(x), x, mean)
        return ((x - mean) / std).astype(np.float32)

    def tiles(paths: list[str]) -> Iterator[tuple[tuple[str, int], np.ndarray]]:
        for path in paths:
            if path.lower().endswith((".h5", ".hdf5")):
                read_debris_file(path, scan=False)  # layout check, clear errors
                with h5py.File(path, "r") as f:
                    for i in range(f["images"].shape[0]):
                        yield (path, i), normalise(np.asarray(f["images"][i], np.float32))
            else:
                yield (path, 0), normalise(read_tiff_image(path))

    paths = _find_inputs(input_path)
    per_file: dict[str, list[np.ndarray]] = {}
    written, n_tiles, debris_px = [], 0, 0

    def write(path: str, probs: list[np.ndarray]) -> None:
        stem = os.path.splitext(os.path.relpath(path, root))[0].replace(os.sep, "__")
        base = os.path.join(output_path, stem)
        if path.lower().endswith((".h5", ".hdf5")):
            prob = np.stack(probs)
            np.save(base + "_prob.npy", prob)
            np.save(base + "_mask.npy", (prob >= threshold).astype(np.uint8))
            written.extend([base + "_prob.npy", base + "_mask.npy"])
        else:
            tags = _georeferencing(path)
            tifffile.imwrite(base + "_prob.tif", probs[0], extratags=tags)
            tifffile.imwrite(base + "_mask.tif", (probs[0] >= threshold).astype(np.uint8),
                             extratags=tags)
            written.extend([base + "_prob.tif", base + "_mask.tif"])

    for (path, _), prob in sliding_window_predict(predict_batch, tiles(paths),
                                                  window=p.window, overlap=p.overlap,
                                                  batch_size=batch_size):
        # Tiles come back in input order, so a file is complete when the next one starts.
        for done in [q for q in per_file if q != path]:
            write(done, per_file.pop(done))
        per_file.setdefault(path, []).append(prob)
        n_tiles += 1
        debris_px += int((prob >= threshold).sum())
    for done in list(per_file):
        write(done, per_file.pop(done))
    return {"inputs": len(paths), "tiles": n_tiles, "threshold": threshold,
            "window": p.window, "overlap": p.overlap, "debris_pixels": debris_px,
            "outputs": written}

"""Marine-debris segmentation: 11-band Sentinel-2 patches -> per-pixel debris probability.

Data: the `jaxtrain-debris-v1` HDF5 layout (debris_data.py); `config.data.path` points at a
converted MARIDA file (or any file in that layout), or, when empty, synthetic patches are
generated once into `config.data.cache_dir` and reused. Model: the seed's SE-U-Net
(models/se_unet.py). Loss: 0.4 Dice + 0.4 focal + 0.2 class-weighted cross-entropy over the
labelled pixels (mask -1 = ignore). Training reads random crops (the net is fully
convolutional); evaluation runs on whole patches.

Metrics are for the debris class with pixels pooled over a split: precision, recall, F1, IoU
at threshold 0.5, the best F1 over a threshold sweep and the max predicted probability. For
the final test report the threshold with the best validation F1 is applied to test
(`Task.evaluate_test`); results.json holds both operating points.

Inference (`python -m jaxtrain.predict --workdir=RUN --input=IN --output=OUT`, see `predict`):
tiles of any size are cut into overlapping windows whose probabilities are blended with a
linear taper.
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
from absl import logging

from jaxtrain import losses, metrics, writers
from jaxtrain.data import configured_or_generated, generated_once, open_hdf5
from jaxtrain.models.se_unet import SEUNet, init_variables
from jaxtrain.task import Task
from jaxtrain.tasks import debris_data
from jaxtrain.train_step import compute_dtype

CLASS_NAMES = ("not_debris", "debris")


# ----------------------------------------------------------------------------- loss
def debris_loss(logits: jax.Array, labels: jax.Array, *, class_weights: jax.Array | None,
                dice_weight: float = 0.4, focal_weight: float = 0.4, ce_weight: float = 0.2,
                focal_alpha: float | None = 0.25, focal_gamma: float = 2.0,
                dice_smooth: float = 1.0) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The seed's combined loss on (B, H, W, 2) logits and (B, H, W) labels (-1 = ignore).

    * Dice of the debris class over the whole batch (smp "binary" Dice, `dice_smooth` = the
      seed's 1.0). With 2 classes softmax(l)[1] = sigmoid(l1 - l0), so the binary Dice of the
      logit difference is exactly the Dice of the softmax debris probability.
    * Focal: `-alpha (1 - p_y)^gamma log p_y` with one scalar alpha for both classes (the
      usual PyTorch `alpha * (1 - pt) ** gamma * ce` form a 2-class softmax head implies),
      mean over labelled pixels.
    * Cross-entropy weighted per class (PyTorch's weighted-mean convention).
    Returns (total, {"dice", "focal", "cross_entropy"}).
    """
    mask = labels >= 0
    z = logits[..., 1].astype(jnp.float32) - logits[..., 0].astype(jnp.float32)
    terms = {
        "dice": losses.binary_dice_loss(z, labels == 1, smooth=dice_smooth, mask=mask),
        "focal": losses.softmax_focal_loss(logits, labels, alpha=focal_alpha,
                                           gamma=focal_gamma, mask=mask),
        "cross_entropy": losses.softmax_cross_entropy(logits, labels,
                                                      class_weights=class_weights, mask=mask),
    }
    total = (dice_weight * terms["dice"] + focal_weight * terms["focal"]
             + ce_weight * terms["cross_entropy"])
    return total, terms


# ----------------------------------------------------------------------------- metrics
def split_scores(pos_hist: np.ndarray, neg_hist: np.ndarray, threshold_index: int
                 ) -> dict[str, float]:
    """Debris precision/recall/F1/IoU at threshold `threshold_index / K` from split histograms."""
    sweep = metrics.threshold_sweep(pos_hist, neg_hist)
    return {k: float(sweep[k][threshold_index]) for k in ("precision", "recall", "f1", "iou")}


def evaluate_outputs(outputs: dict[str, np.ndarray], threshold_index: int | None = None
                     ) -> tuple[dict[str, float], dict[str, Any]]:
    """Flat metrics of one split from per-patch histograms (see `predict_fn` in `build`).

    Scores at 0.5 (`debris_*`), the split's own best-F1 threshold (`best_*`) and, when
    `threshold_index` is given (tuned elsewhere, e.g. on validation), at that one (`tuned_*`).
    """
    pos = outputs["pos_hist"].sum(0).astype(np.int64)
    neg = outputs["neg_hist"].sum(0).astype(np.int64)
    k = pos.shape[0]
    sweep = metrics.threshold_sweep(pos, neg)
    best = metrics.best_threshold(sweep, "f1")
    flat = {f"debris_{m}": v for m, v in split_scores(pos, neg, k // 2).items()}
    flat |= {f"best_{m}": v for m, v in split_scores(pos, neg, best).items()}
    flat["best_threshold"] = best / k
    flat["max_prob"] = float(outputs["max_prob"].max()) if len(outputs["max_prob"]) else 0.0
    if threshold_index is not None:
        flat |= {f"tuned_{m}": v for m, v in split_scores(pos, neg, threshold_index).items()}
        flat["tuned_threshold"] = threshold_index / k
    report = {"pixels": {"debris": int(pos.sum()), "not_debris": int(neg.sum())},
              "patches": len(outputs["max_prob"]),
              "sweep": {m: np.asarray(sweep[m]).tolist()
                        for m in ("thresholds", "precision", "recall", "f1", "iou")}}
    return flat, report


def evaluate_test(val_outputs: dict[str, np.ndarray], test_outputs: dict[str, np.ndarray]
                  ) -> tuple[dict[str, float], dict[str, Any]]:
    """Test metrics at 0.5 and at the threshold with the best validation F1."""
    val_flat, _ = evaluate_outputs(val_outputs)
    k = val_outputs["pos_hist"].shape[-1]
    chosen = round(val_flat["best_threshold"] * k)
    flat, report = evaluate_outputs(test_outputs, chosen)
    report["threshold"] = {"chosen": chosen / k, "chosen_on": "validation best F1",
                           "val_f1_at_chosen": val_flat["best_f1"],
                           "val_f1_at_0.5": val_flat["debris_f1"]}
    return flat, report


# ----------------------------------------------------------------------------- data
def data_path(config: ml_collections.ConfigDict) -> str:
    """The configured file, or the synthetic one (generated on first use, then reused)."""
    d = config.data

    def make(path: str) -> None:
        debris_data.generate(path, num_patches=d.num_patches, size=d.size, seed=d.seed)

    return configured_or_generated(d.path, "data file", lambda: generated_once(
        f"debris-{d.num_patches}x{d.size}-seed{d.seed}-{{version}}.h5", cache_dir=d.cache_dir,
        generator_file=debris_data.__file__, make=make))


class RepeatedSource:
    """Each record `times` times: an epoch then holds `times` random crops of every patch."""

    def __init__(self, source: Any, times: int):
        self.source, self.times = source, max(int(times), 1)

    def __len__(self) -> int:
        return len(self.source) * self.times

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        return self.source[i % len(self.source)]

    def __repr__(self) -> str:  # grain keys checkpoint state on it
        return f"RepeatedSource({self.source!r}, times={self.times})"


def _train_pixel_counts(path: str, indices: np.ndarray) -> np.ndarray:
    """(not debris, debris) pixel counts over the training patches (ignore excluded)."""
    counts = np.zeros(2, np.int64)
    with open_hdf5(path, "debris data") as f:
        for i in np.sort(indices):
            m = f["masks"][int(i)]
            counts += [np.count_nonzero(m == debris_data.NOT_DEBRIS),
                       np.count_nonzero(m == debris_data.DEBRIS)]
    return counts


def make_model(config: ml_collections.ConfigDict) -> SEUNet:
    m = config.model
    return SEUNet(num_classes=2, base_width=m.base_width, dropout=m.dropout,
                  bottleneck_dropout=m.bottleneck_dropout, se_ratio=m.se_ratio,
                  dtype=compute_dtype(config.train.compute_dtype))


# ----------------------------------------------------------------------------- task
def build(config: ml_collections.ConfigDict, workdir: str) -> Task:
    d, lc = config.data, config.loss
    path = data_path(config)
    info = debris_data.read_debris_file(path)  # validates the layout; one-line errors
    idx = info.splits
    for s in debris_data.SPLITS:
        if not len(idx[s]):
            raise ValueError(f"{path}: the {s} split is empty")
    counts = _train_pixel_counts(path, idx["train"])
    class_weights = losses.class_weights_from_counts(counts, power=lc.class_weight_power)
    mean, std = debris_data.band_stats(path, idx["train"])
    std = np.maximum(std, 1e-6)
    sizes = {s: len(v) for s, v in idx.items()}
    logging.info("debris data %s: patches per split %s, train pixels (not debris, debris) %s, "
                 "class weights %s", path, sizes, counts.tolist(), class_weights.tolist())
    if jax.process_index() == 0:
        writers.write_json_atomic(os.path.join(workdir, "normalization.json"),
                                  {"bands": list(info.bands), "mean": mean, "std": std})
    crop = d.crop_size if 0 < d.crop_size < min(info.height, info.width) else None
    train_src = RepeatedSource(debris_data.DebrisSource(path, idx["train"]),
                               d.crops_per_patch if crop else 1)
    val_src, test_src = (debris_data.DebrisSource(path, idx[s]) for s in ("val", "test"))

    model = make_model(config)
    cw = jnp.asarray(class_weights)
    bins = config.eval.threshold_bins
    loss = functools.partial(debris_loss, class_weights=cw, dice_weight=lc.dice_weight,
                             focal_weight=lc.focal_weight, ce_weight=lc.ce_weight,
                             focal_alpha=lc.focal_alpha, focal_gamma=lc.focal_gamma,
                             dice_smooth=lc.dice_smooth)

    def transform(r: dict) -> dict:  # per-band standardisation with training-split stats
        return {"image": ((r["image"] - mean) / std).astype(np.float32),
                "mask": r["mask"].astype(np.int32)}

    random_transform = functools.partial(debris_data.augment_record, crop_size=crop,
                                         focus_prob=d.focus_prob)

    def init_fn(rng):
        variables = init_variables(model, rng, (1, 32, 32, info.num_bands))
        # The band statistics travel in the checkpoint, so inference needs nothing else.
        return variables["params"], {"batch_stats": variables["batch_stats"],
                                     "normalization": {"mean": jnp.asarray(mean),
                                                       "std": jnp.asarray(std)}}

    def loss_fn(params, model_state, batch, rng):
        logits, updates = model.apply(
            {"params": params, "batch_stats": model_state["batch_stats"]}, batch["image"],
            train=True, rngs={"dropout": rng}, mutable=["batch_stats"])
        total, terms = loss(logits, batch["mask"])
        valid = batch["mask"] >= 0
        pred = logits.argmax(-1) == 1
        truth = batch["mask"] == 1
        tp = jnp.sum(pred & truth & valid)
        f1 = 2 * tp / jnp.maximum(jnp.sum(pred & valid) + jnp.sum(truth & valid), 1)
        return total, ({**terms, "debris_f1": f1},
                       {**model_state, "batch_stats": updates["batch_stats"]})

    def predict_fn(params, model_state, batch):
        logits = model.apply({"params": params, "batch_stats": model_state["batch_stats"]},
                             batch["image"], train=False)
        prob = jax.nn.softmax(logits)[..., 1]
        labels = batch["mask"]
        # Per-patch histograms instead of pixels: a split's outputs stay small, and every
        # threshold k / bins is still scored exactly (metrics.threshold_sweep).
        pos, neg = jax.vmap(lambda p, y: metrics.threshold_histograms(p, y == 1, bins, y >= 0)
                            )(prob, labels)
        return {"pos_hist": pos, "neg_hist": neg, "max_prob": prob.max(axis=(1, 2))}

    return Task(train_source=train_src, val_source=val_src, test_source=test_src,
                init_fn=init_fn, loss_fn=loss_fn, predict_fn=predict_fn,
                evaluate=evaluate_outputs, evaluate_test=evaluate_test, transform=transform,
                random_transform=random_transform,
                info={"headline": ["debris_f1", "debris_iou", "tuned_threshold", "tuned_f1",
                                   "tuned_iou", "max_prob"],
                      "data": {"path": path, "source": info.source, "patches": sizes,
                               "patch_size": [info.height, info.width],
                               "train_crop": crop, "train_pixel_counts": counts.tolist(),
                               "class_weights": class_weights.tolist()}})


# ----------------------------------------------------------------------------- inference
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
        if n < batch_size:
            crops = np.concatenate([crops, np.repeat(crops[-1:], batch_size - n, 0)])
        probs = np.asarray(predict_batch(crops))[:n]
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


def make_predict_batch(config: ml_collections.ConfigDict, variables: dict[str, Any]
                       ) -> Callable[[np.ndarray], np.ndarray]:
    """Jitted normalised (B, H, W, 11) -> debris probability (B, H, W) of a trained run."""
    model = make_model(config)
    v = {"params": variables["params"],
         "batch_stats": variables["model_state"]["batch_stats"]}
    v = jax.device_put(v)

    @jax.jit
    def run(v, x):
        return jax.nn.softmax(model.apply(v, x, train=False))[..., 1]

    return lambda x: run(v, jnp.asarray(x))


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


def _geotiff_tags(path: str) -> list[tuple]:
    """The input's georeferencing tags, to copy onto the outputs (empty if none)."""
    import tifffile

    with tifffile.TiffFile(path) as tf:
        return [(t.code, t.dtype, t.count, t.value, True) for t in tf.pages[0].tags.values()
                if t.code in (33550, 33922, 34264, 34735, 34736, 34737)]


def tuned_threshold(workdir: str) -> float | None:
    """The validation-chosen threshold of a finished run, or None."""
    import json

    try:
        with open(os.path.join(workdir, "results.json")) as f:
            return float(json.load(f)["test_report"]["threshold"]["chosen"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


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
        threshold = tuned_threshold(workdir) if workdir else None
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
                debris_data.read_debris_file(path, scan=False)  # layout check, clear errors
                with h5py.File(path, "r") as f:
                    for i in range(f["images"].shape[0]):
                        yield (path, i), normalise(np.asarray(f["images"][i], np.float32))
            else:
                yield (path, 0), normalise(debris_data.read_tiff_image(path))

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
            tags = _geotiff_tags(path)
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

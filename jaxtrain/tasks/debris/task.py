"""The debris `Task`: 11-band Sentinel-2 patches -> per-pixel debris probability.

Data: a ``jaxtrain-debris-v1`` file (layout.py): `config.data.path` (e.g. converted MARIDA,
marida.py), or, when empty, synthetic patches generated once into `config.data.cache_dir`
and reused (synthetic.py). Model: the SE-U-Net (models/se_unet.py). Loss: 0.4 Dice + 0.4
focal + 0.2 class-weighted cross-entropy over the labelled pixels (loss.py). Training reads
random crops (the net is fully convolutional, augment.py); evaluation runs on whole patches
and scores per-patch probability histograms (evaluation.py). When the file fits device memory
(`data.on_device`), it is uploaded once as float16, and crops and dihedral moves are drawn in
the train step.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from jaxtrain import files, losses, metrics
from jaxtrain.data import device
from jaxtrain.data.synthetic import configured_or_generated, generated_once
from jaxtrain.models.se_unet import init_variables
from jaxtrain.task import Task
from jaxtrain.tasks.debris import evaluation, synthetic
from jaxtrain.tasks.debris.augment import augment_batch, augment_record
from jaxtrain.tasks.debris.loss import debris_loss
from jaxtrain.tasks.debris.model import build_model
from jaxtrain.tasks.debris.reader import (
    DebrisSource,
    band_stats,
    device_bytes,
    patch_device_data,
    pixel_counts,
    read_debris_file,
)

HEADLINE = ("debris_f1", "debris_iou", "tuned_threshold", "tuned_f1", "tuned_iou", "max_prob")


def data_path(config: ml_collections.ConfigDict) -> str:
    """The configured file, or the synthetic one (generated on first use, then reused)."""
    d = config.data
    params = {"num_patches": d.num_patches, "size": d.size, "seed": d.seed}
    return configured_or_generated(d.path, "data file", lambda: generated_once(
        f"debris-{d.num_patches}x{d.size}-seed{d.seed}-{{version}}.h5", cache_dir=d.cache_dir,
        generator=synthetic, params=params,
        make=lambda path: synthetic.generate(path, **params)))


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


def build(config: ml_collections.ConfigDict, workdir: str) -> Task:
    d, lc = config.data, config.loss
    path = data_path(config)
    info = read_debris_file(path)  # validates the layout; one-line errors
    idx = info.splits
    for s, indices in idx.items():
        if not len(indices):
            raise ValueError(f"{path}: the {s} split is empty")
    counts = pixel_counts(path, idx["train"])
    class_weights = losses.class_weights_from_counts(counts, power=lc.class_weight_power)
    mean, std = band_stats(path, idx["train"])
    std = np.maximum(std, 1e-6)
    sizes = {s: len(v) for s, v in idx.items()}
    logging.info("debris data %s: patches per split %s, train pixels (not debris, debris) %s, "
                 "class weights %s", path, sizes, counts.tolist(), class_weights.tolist())
    if jax.process_index() == 0:
        files.write_json_atomic(os.path.join(workdir, "normalization.json"),
                                {"bands": list(info.bands), "mean": mean, "std": std})
    crop = d.crop_size if 0 < d.crop_size < min(info.height, info.width) else None
    times = d.crops_per_patch if crop else 1
    train_src = RepeatedSource(DebrisSource(path, idx["train"]), times)
    resident = device.on_device(config, device_bytes(info))
    crop_args = dict(crop_size=crop, focus_prob=d.focus_prob)
    val_src, test_src = (DebrisSource(path, idx[s]) for s in ("val", "test"))

    def device_data() -> device.DeviceData:  # train rows repeated as RepeatedSource does
        rows = {"train": np.tile(idx["train"], times), "val": idx["val"], "test": idx["test"]}
        return patch_device_data(path, rows, mean, std)

    model = build_model(config)
    bins = config.eval.threshold_bins
    loss = functools.partial(debris_loss, class_weights=jnp.asarray(class_weights),
                             dice_weight=lc.dice_weight, focal_weight=lc.focal_weight,
                             ce_weight=lc.ce_weight, focal_alpha=lc.focal_alpha,
                             focal_gamma=lc.focal_gamma, dice_smooth=lc.dice_smooth)

    def transform(r: dict) -> dict:  # per-band standardisation with training-split stats
        return {"image": ((r["image"] - mean) / std).astype(np.float32),
                "mask": r["mask"].astype(np.int32)}

    def init_fn(rng):
        variables = init_variables(model, rng, (1, 32, 32, info.num_bands))
        # The band statistics travel in the checkpoint, so inference needs nothing else.
        return variables["params"], {"batch_stats": variables["batch_stats"],
                                     "normalization": {"mean": jnp.asarray(mean),
                                                       "std": jnp.asarray(std)}}

    def loss_fn(params, model_state, batch, rng):
        if resident:  # whole patches gathered on the device: crop and move them here
            aug_rng, rng = jax.random.split(rng)
            batch = augment_batch(batch, aug_rng, **crop_args)
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
        # Per-patch histograms: every threshold k / bins is scored exactly
        # (metrics.threshold_sweep) without pooling float pixels on the host.
        pos, neg = jax.vmap(lambda p, y: metrics.threshold_histograms(p, y == 1, bins, y >= 0)
                            )(prob, labels)
        # The probability map too, as uint8 (prob * 255, 1/4 of float32): the run report
        # draws predicted vs true masks of test patches from it (predictions/test.npz, in the
        # test split's patch order), without rerunning the model.
        return {"pos_hist": pos, "neg_hist": neg, "max_prob": prob.max(axis=(1, 2)),
                "prob_u8": jnp.round(prob * 255).astype(jnp.uint8)}

    return Task(train_source=train_src, val_source=val_src, test_source=test_src,
                init_fn=init_fn, loss_fn=loss_fn, predict_fn=predict_fn,
                evaluators=[evaluation.score], headline=HEADLINE, transform=transform,
                random_transform=None if resident else functools.partial(augment_record,
                                                                         **crop_args),
                data={"path": path, "source": info.source, "patches": sizes,
                      "patch_size": [info.height, info.width], "train_crop": crop,
                      "train_pixel_counts": counts.tolist(),
                      "class_weights": class_weights.tolist()},
                choices={"augment.where": "step" if resident else "host"},
                device_data=device_data if resident else None)

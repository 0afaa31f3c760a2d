"""The glaucoma `Task`: fundus photographs -> referable-glaucoma probability (AIROGS).

Data: an AIROGS tree (`config.data.path`: labels CSV + JPEGs, airogs.py) or, when empty, a
synthetic one generated once into `config.data.cache_dir` (synthetic.py). Images are decoded
once into a uint8 HDF5 cache at the training resolution (images.py). Splits: stratified by
class, grouped by patient when the CSV names one. Model: EfficientNet-B0 + the reference
head (model.py); loss: binary focal, alpha_t 0.75 on RG, gamma 1.5, plus L2 5e-4 on the
first head layer. Training from scratch trains every layer; over Keras ImageNet weights
(`model.weights`) it goes in two phases (`config.finetune`): the head alone over a frozen
backbone (BatchNorm in inference mode, no backward pass through it), then from
`finetune.unfreeze_epoch` also Keras's last 50 layers at `finetune.learning_rate`.
The cached images train device-resident when they fit (`data.on_device`: uint8, augmented in
the step). Evaluation: 5-view test-time augmentation, AUC, AIROGS pAUC and sensitivity at 95%
specificity, and the validation-chosen 95%-specificity threshold (evaluation.py).
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

from jaxtrain import losses
from jaxtrain.data import device
from jaxtrain.data.splits import split_groups
from jaxtrain.data.synthetic import configured_or_generated, generated_once
from jaxtrain.phases import Phase, count_trainable
from jaxtrain.task import Task
from jaxtrain.tasks.glaucoma import augment, evaluation, images, keras_port, synthetic
from jaxtrain.tasks.glaucoma.airogs import CLASSES, Dataset, read_airogs
from jaxtrain.tasks.glaucoma.baseline import logistic_regression_baseline
from jaxtrain.tasks.glaucoma.model import (
    BACKBONE,
    GlaucomaNet,
    build_model,
    referable_probability,
    trainable_mask,
)
from jaxtrain.train_step import runs_in_step

HEADLINE = ("auc", "pauc", "sens_at_95_spec", "tuned_threshold", "tuned_sensitivity",
            "tuned_specificity")


# ----------------------------------------------------------------------------- data
def data_root(config: ml_collections.ConfigDict) -> str:
    """The configured AIROGS tree, or the synthetic one (generated on first use, reused)."""
    d, s = config.data, config.data.synthetic
    params = dict(num_images=s.num_images, size=s.size, rg_fraction=s.rg_fraction,
                  ungradable=s.ungradable, per_folder=s.per_folder, seed=d.seed)
    return configured_or_generated(d.path, "AIROGS image directory", lambda: generated_once(
        f"glaucoma-{s.num_images}x{s.size}-seed{d.seed}", cache_dir=d.cache_dir,
        generator=synthetic, params=params,
        make=lambda path: synthetic.generate(path, **params), done=synthetic.LABELS_FILE))


def image_cache(config: ml_collections.ConfigDict, ds: Dataset) -> str:
    """The uint8 HDF5 cache of `ds` at the training size (built on first use, resumable)."""
    d = config.data
    key = images.cache_key(ds.paths, d.image_size, d.clahe, d.disc_crop)
    return generated_once(f"glaucoma-images-{d.image_size}px-{key}-{{version}}.h5",
                          cache_dir=d.cache_dir,
                          generator=images, params={"key": key},
                          make=lambda path: images.build_cache(path, ds.paths, d.image_size,
                                                               d.clahe, disc_crop=d.disc_crop))


def usable_rows(ds: Dataset, cache: str, on_unreadable: str) -> np.ndarray:
    """Rows whose image decoded; unreadable ones are one error line or skipped (logged)."""
    errors = images.read_errors(cache)
    bad = [i for i, e in enumerate(errors) if e]
    if bad and on_unreadable == "error":
        shown = "; ".join(f"{ds.paths[i]}: {errors[i]}" for i in bad[:3])
        raise ValueError(f"{len(bad)} unreadable image(s): {shown}"
                         + (" ..." if len(bad) > 3 else "")
                         + "; set config.data.on_unreadable='skip' to leave them out")
    if bad:
        logging.warning("skipping %d unreadable image(s), e.g. %s", len(bad), ds.paths[bad[0]])
    return np.setdiff1d(np.arange(len(ds.ids)), bad)


def split_rows(ds: Dataset, rows: np.ndarray, fractions: tuple[float, ...], seed: int
               ) -> dict[str, np.ndarray]:
    """Rows per split: whole patients to one split, stratified by whether a patient has an
    RG image (every split gets both classes, or one line says why not)."""
    labels = np.asarray(ds.labels)
    group_names = sorted({ds.groups[r] for r in rows})
    gid = {g: k for k, g in enumerate(group_names)}
    of_row = np.array([gid[ds.groups[r]] for r in rows])
    stratum = np.zeros(len(group_names), np.int64)
    np.maximum.at(stratum, of_row, labels[rows])
    held = [set() for _ in group_names]
    for r, g in zip(rows, of_row, strict=True):
        held[g].add(int(labels[r]))
    groups = split_groups(stratum.tolist(), fractions, rng=np.random.default_rng(seed),
                          classes=held, class_names=dict(enumerate(CLASSES)),
                          what="patients" if len(group_names) < len(rows) else "images")
    return {s: np.sort(rows[np.isin(of_row, g)]) for s, g in groups.items()}


# ----------------------------------------------------------------------------- model
def init_variables(model: GlaucomaNet, rng: jax.Array, size: int, weights: str = ""
                   ) -> dict[str, Any]:
    """Variables of `model` at `size`; the backbone from a Keras weights file if given."""
    # lazy_init: initializers only, no forward pass to compile (init runs under jit).
    variables = model.lazy_init({"params": rng, "dropout": rng},
                                jax.ShapeDtypeStruct((2, size, size, 3), jnp.float32),
                                train=False)
    variables = dict(variables)
    if weights:
        variables = keras_port.load_into(variables, keras_port.read_keras_efficientnet(weights),
                                         BACKBONE)
    return variables


def focal_loss(logits: jax.Array, labels: jax.Array, alpha: float, gamma: float) -> jax.Array:
    """Binary focal loss, alpha_t = alpha on RG and 1 - alpha on NRG (class balancing)."""
    return losses.sigmoid_focal_loss(logits, labels.astype(jnp.float32), alpha=alpha,
                                     gamma=gamma)


def make_phases(config: ml_collections.ConfigDict, loss_for: Any, params_shape: Any
                ) -> list[Phase]:
    """Frozen backbone until `finetune.unfreeze_epoch`, then head + `finetune.unfreeze`."""
    f = config.finetune
    head = trainable_mask(params_shape, "head")
    top = trainable_mask(params_shape, "top", prefixes=tuple(f.unfreeze))
    first = _first_unfrozen_layer(tuple(f.unfreeze))
    return [Phase(0, loss_for(frozen=True), head, 1.0, "head"),
            Phase(f.unfreeze_epoch, loss_for(grad_from=first), top,
                  f.learning_rate / config.optim.learning_rate, "top")]


def _first_unfrozen_layer(prefixes: tuple[str, ...]) -> str:
    """The Keras layer the backward pass of the unfrozen phase starts at."""
    from jaxtrain.models.efficientnet import GRAD_CUTS, keras_layer_names, param_path

    for name in keras_layer_names():
        path = "/".join(param_path(name))
        if name in GRAD_CUTS and any(path == p or path.startswith(p + "/") for p in prefixes):
            return name
    raise ValueError(f"finetune.unfreeze={prefixes}: names no backbone layer")


# ----------------------------------------------------------------------------- task
def build(config: ml_collections.ConfigDict, workdir: str) -> Task:
    """The glaucoma task of `config`."""
    d, m, lc, aug, f = config.data, config.model, config.loss, config.augment, config.finetune
    root = data_root(config)
    ds = read_airogs(root, d.labels_csv, d.on_missing)
    cache = image_cache(config, ds)
    rows = usable_rows(ds, cache, d.on_unreadable)
    split = split_rows(ds, rows, tuple(d.split), d.seed)
    labels = np.asarray(ds.labels, np.int32)
    budget = int(d.in_memory_gib * 2**30)
    src = {s: images.ImageSource(cache, r, labels[r], budget) for s, r in split.items()}
    sizes = {s: {"images": len(r), "RG": int(labels[r].sum())} for s, r in split.items()}
    logging.info("glaucoma data %s: %s; per split %s", root, ds.counts(), sizes)

    # The cached uint8 images in device memory when they fit (data.on_device); then the
    # train step augments (the host ships positions only).
    resident = device.on_device(config, images.device_bytes(cache, np.concatenate(
        list(split.values()))))
    model = build_model(config)
    size = d.image_size
    in_step = aug.enabled and (runs_in_step(aug.where, "augment.where") or resident)
    aug_args = dict(rotation=aug.rotation, shift=aug.shift, zoom=aug.zoom,
                    brightness=tuple(aug.brightness))

    def init_fn(rng):
        v = init_variables(model, rng, size, m.weights)
        return v["params"], {"batch_stats": v["batch_stats"], "input_norm": v["input_norm"]}

    def loss_for(frozen: bool = False, grad_from: str | None = None):
        """A loss_fn; `frozen`/`grad_from` freeze the backbone (BN in inference mode)."""
        finetuning = frozen or grad_from is not None

        def loss_fn(params, model_state, batch, rng):
            aug_rng, dropout_rng = jax.random.split(rng)
            x = batch["image"]
            if in_step:
                x = augment.augment_batch(x, aug_rng, **aug_args)
            logits, updates = model.apply(
                {"params": params, **model_state}, x, train=True,
                backbone_train=not finetuning, grad_from=grad_from, frozen_backbone=frozen,
                rngs={"dropout": dropout_rng}, mutable=["batch_stats"])
            focal = focal_loss(logits, batch["label"], lc.focal_alpha, lc.focal_gamma)
            l2 = lc.head_l2 * jnp.sum(params["dense1"]["kernel"] ** 2)
            acc = jnp.mean((logits > 0) == (batch["label"] > 0))
            return focal + l2, ({"focal": focal, "head_l2": l2, "accuracy": acc},
                                {**model_state, "batch_stats": updates["batch_stats"]})

        return loss_fn

    def predict_fn(params, model_state, batch):
        p = referable_probability(model, {"params": params, **model_state},
                                  batch["image"].astype(jnp.float32), config.eval.tta_passes)
        return {"probs": jnp.stack([1 - p, p], -1), "label": batch["label"],
                "index": batch["index"]}

    phases: list[Phase] = []
    if f.enabled:
        shapes = jax.eval_shape(lambda: init_variables(model, jax.random.key(0), size))[
            "params"]
        phases = make_phases(config, loss_for, shapes)
        trained = {p.name: count_trainable(shapes, p.trainable) for p in phases}
        logging.info("fine-tuning phases: %s (trainable parameters %s)",
                     [(p.name, p.start_epoch, p.lr_scale) for p in phases], trained)
    choices = {"augment.where": ("step" if in_step else "host") if aug.enabled else "off",
               "training": "two phases over " + os.path.basename(m.weights) if f.enabled
               else "from scratch, every layer" + (" (from " + m.weights + ")"
                                                   if m.weights else "")}
    return Task(
        train_source=src["train"], val_source=src["val"], test_source=src["test"],
        init_fn=init_fn, loss_fn=loss_for(), predict_fn=predict_fn,
        evaluators=[evaluation.score], headline=HEADLINE,
        random_transform=(functools.partial(_augment_record, aug_args=aug_args)
                          if aug.enabled and not in_step else None),
        baseline=(lambda: logistic_regression_baseline(src["train"], src["test"]))
        if config.eval.baseline else None,
        phases=phases,
        data={"path": root, "cache": cache, "image_size": size, "clahe": d.clahe,
              "disc_crop": d.disc_crop,
              "counts": ds.counts(), "splits": sizes, "class_names": list(CLASSES),
              "train_label_counts": np.bincount(labels[split["train"]], minlength=2).tolist()},
        choices=choices,
        device_data=(lambda: images.image_device_data(cache, split, labels)) if resident
        else None)


def _augment_record(r: dict, rng: np.random.Generator, aug_args: dict) -> dict:
    return {**r, "image": augment.augment(r["image"], rng, **aug_args)}

"""DAS seismic events: earthquake / quarry blast / noise, per window and per recording.

Data: a directory of DAS HDF5 recordings in `config.data.layout` plus a ``labels.json``
(`labels`); `config.data.path` names it, or, when empty, synthetic recordings (`synthetic`)
are generated once into `config.data.cache_dir` and reused. Whole files go to train/val/test
(stratified by file label), then each file is cut into sliding windows.

Window labels (`labels.window_labels`): a window overlapping one of its file's events by at
least `data.min_event_overlap_s` gets the file's class, every other window is "noise"; an event
file whose entry has no event times gives all its windows its class. So the model is a 3-class
window classifier: "is there an event in these 4 s, and which kind". Files are scored too, by
aggregating their windows (`evaluation.file_decision`, threshold `data.event_threshold`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
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
from jaxtrain.task import Task
from jaxtrain.tasks.das import synthetic
from jaxtrain.tasks.das.augment import augment, augment_batch
from jaxtrain.tasks.das.evaluation import file_evaluator, window_metrics
from jaxtrain.tasks.das.labels import entry_label, labelled_files, load_labels, window_labels
from jaxtrain.tasks.das.model import build_model, class_probabilities
from jaxtrain.tasks.das.reader import Recording, open_recording
from jaxtrain.tasks.das.schema import CLASS_NAMES, LABELS_FILE
from jaxtrain.tasks.das.stream import BlockCache, decode_windows, stream_source
from jaxtrain.tasks.das.windows import (
    DASWindowSource,
    build_window_index,
    device_bytes,
    window_device_data,
)
from jaxtrain.train_step import runs_in_step

HEADLINE = ("file_accuracy", "file_macro_f1", "accuracy", "macro_f1", "roc_auc_ovr")


# ----------------------------------------------------------------------------- data
def data_dir(config: ml_collections.ConfigDict) -> str:
    """The configured directory, or the synthetic one (generated on first use, then reused)."""
    d = config.data
    params = dict(num_files=d.num_files, duration_s=d.duration_s,
                  sampling_rate=d.sampling_rate, num_channels=d.num_channels, seed=d.seed)
    directory = configured_or_generated(d.path, "DAS data directory", lambda: generated_once(
        f"das-{d.num_files}x{d.duration_s:g}s-{d.num_channels}ch-{d.sampling_rate:g}hz-"
        f"seed{d.seed}", cache_dir=d.cache_dir, generator=synthetic, params=params,
        make=lambda path: synthetic.generate(path, **params), done=LABELS_FILE))
    if not os.path.isdir(directory):
        raise NotADirectoryError(f"{d.path}: not a directory (config.data.path)")
    return directory


def check_recording(rec: Recording, config: ml_collections.ConfigDict) -> None:
    """Raises ValueError naming the file unless it matches the configured channels and rate."""
    d = config.data
    if rec.num_channels != d.num_channels:
        raise ValueError(f"{rec.path}: {rec.num_channels} channels, but the model takes "
                         f"{d.num_channels} (config.data.num_channels)")
    if abs(rec.sampling_rate - d.sampling_rate) > 1e-6 * d.sampling_rate:
        raise ValueError(f"{rec.path}: sampled at {rec.sampling_rate:g} Hz, but the model was "
                         f"built for {d.sampling_rate:g} Hz (config.data.sampling_rate)")
    if rec.num_samples < d.window:
        raise ValueError(f"{rec.path}: {rec.num_samples} samples, shorter than one window "
                         f"({d.window})")


def split_files(file_labels: Sequence[str], fractions: Sequence[float], seed: int
                ) -> dict[str, np.ndarray]:
    """Indices of whole files per split, each label's files divided by `fractions` on its
    own; every label must reach every split. Windows of one file never reach two splits (they
    overlap and share the event). Labels are drawn in sorted order and files in the given
    (sorted by name) order, so the split depends only on the seed and the labels."""
    return split_groups(list(file_labels), fractions, rng=np.random.default_rng(seed),
                        what="files")


def _index(files: list[str], config: ml_collections.ConfigDict, stride: int, directory: str
           ) -> np.ndarray:
    """Every window of `files`, cached under `data.cache_dir` per directory and layout."""
    d = config.data
    key = hashlib.sha1(f"{directory}|{d.layout}".encode()).hexdigest()[:12]
    cache = os.path.join(os.path.abspath(os.path.expanduser(d.cache_dir)), "das-index",
                         f"{key}-w{d.window}-s{stride}.npz")
    return build_window_index(files, d.layout, d.window, stride, cache_path=cache)


# ----------------------------------------------------------------------------- task
def build(config: ml_collections.ConfigDict, workdir: str) -> Task:
    """The DAS task of `config`: file splits, window sources, model, loss and evaluators."""
    d, t, aug = config.data, config.train, config.augment
    directory = data_dir(config)
    labels = load_labels(directory)
    files = labelled_files(directory, labels)
    for path in files:  # metadata only: clear errors before any window is read
        check_recording(open_recording(path, d.layout), config)
    names = [os.path.basename(p) for p in files]  # sorted
    file_labels = [entry_label(labels[n]) for n in names]
    file_class = np.array([CLASS_NAMES.index(label) for label in file_labels], np.int32)
    split_ids = split_files(file_labels, d.split, d.seed)
    splits = {s: [names[i] for i in ids] for s, ids in split_ids.items()}
    indexes = {stride: _index(files, config, stride, directory)
               for stride in {d.stride, d.eval_stride}}

    def source(split: str, stride: int) -> DASWindowSource:
        index = indexes[stride][np.isin(indexes[stride][:, 0], split_ids[split])]
        wl = window_labels(index, files, labels, d.window, d.sampling_rate,
                           min_overlap_s=d.min_event_overlap_s)
        return DASWindowSource(files, index, d.layout, d.window, labels=wl,
                               max_open_files=d.max_open_files)

    train_src = source("train", d.stride)
    val_src, test_src = source("val", d.eval_stride), source("test", d.eval_stride)
    counts = np.bincount(train_src.labels, minlength=len(CLASS_NAMES))
    class_weights = losses.class_weights_from_counts(counts, power=t.class_weight_power)
    sizes = {"files": {s: len(v) for s, v in splits.items()},
             "windows": {"train": len(train_src), "val": len(val_src), "test": len(test_src)}}
    logging.info("DAS data %s: %s; train window labels %s", directory, sizes,
                 dict(zip(CLASS_NAMES, counts.tolist(), strict=True)))

    # Every recording in device memory when it fits (data.on_device): 2 bytes a sample, the
    # host ships window positions, windows are cut and normalized in the step.
    sources = {"train": train_src, "val": val_src, "test": test_src}
    resident = device.on_device(
        config, device_bytes(train_src, sum(len(s) for s in sources.values())))
    # Otherwise streamed by blocks (one h5py read per block, RAM bounded by
    # data.stream_memory_mb, windows scaled and normalized in the step) unless per-window
    # reads were asked for, or host augmentation (which needs single records).
    host_aug = aug.enabled and aug.where == "host"
    blocks = not resident and (d.stream == "blocks" or (d.stream == "auto" and not host_aug))
    if blocks:
        cache = BlockCache(d.stream_memory_mb * 2**20)
        train_src, val_src, test_src = (
            stream_source(src, cache, d.stream_block_samples, d.stream_shuffle_blocks)
            for src in (train_src, val_src, test_src))

    model = build_model(config)
    cw = jnp.asarray(class_weights, jnp.float32)
    # In the step on GPU/TPU (frees the input pipeline), on the host on CPU (XLA's Gaussian
    # draws cost more there than numpy's); always in the step when the data are resident or
    # streamed by blocks (both ship compact raw windows, which the step decodes first).
    in_step = runs_in_step(aug.where, "augment.where") or resident or blocks
    in_step = aug.enabled and in_step
    aug_args = dict(noise=aug.noise, scale=tuple(aug.scale), max_shift=aug.max_shift)

    def transform(r: dict) -> dict:  # "start" (int64) is for inference output, not the model
        return {"x": r["x"], "label": r["label"], "file": r["file"]}

    def random_transform(r: dict, rng: np.random.Generator) -> dict:
        return {**r, "x": augment(r["x"], rng, **aug_args)}

    def init_fn(rng: jax.Array) -> tuple[Any, Any]:
        x = jnp.zeros((1, d.num_channels, d.window), jnp.float32)
        return model.init({"params": rng}, x)["params"], {}

    def loss_fn(params, model_state, batch, rng):
        aug_rng, dropout_rng = jax.random.split(rng)
        x = decode_windows(batch["x"], batch["scale"]) if blocks else batch["x"]
        if in_step:
            x = augment_batch(x, aug_rng, **aug_args)
        logits = model.apply({"params": params}, x, train=True, rngs={"dropout": dropout_rng})
        ce = losses.softmax_cross_entropy(logits, batch["label"], class_weights=cw,
                                          label_smoothing=t.label_smoothing)
        acc = jnp.mean(logits.argmax(-1) == batch["label"])
        return ce, ({"cross_entropy": ce, "accuracy": acc}, model_state)

    def predict_fn(params, model_state, batch):
        x = decode_windows(batch["x"], batch["scale"]) if blocks else batch["x"]
        # "file_id", not "file": saved predictions are .npz, where "file" is a reserved name.
        return {"probs": class_probabilities(model, params, x), "label": batch["label"],
                "file_id": batch["file"]}

    return Task(
        train_source=train_src, val_source=val_src, test_source=test_src,
        init_fn=init_fn, loss_fn=loss_fn, predict_fn=predict_fn,
        evaluators=[window_metrics, file_evaluator(file_class, names, d.event_threshold)],
        headline=HEADLINE, transform=None if blocks else transform,
        random_transform=random_transform if aug.enabled and not in_step else None,
        data={"path": directory, **sizes, "splits": splits,
              "train_window_label_counts": counts.tolist(), "class_names": list(CLASS_NAMES),
              "class_weights": np.asarray(class_weights).tolist()},
        choices={"model": config.model.name,
                 "augment.where": ("step" if in_step else "host") if aug.enabled else "off",
                 "data.stream": "off" if resident else "blocks" if blocks else "windows"},
        device_data=(lambda: window_device_data(sources)) if resident else None)

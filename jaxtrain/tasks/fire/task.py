"""`build(config, workdir) -> Task`: fire data, splits, model, loss and evaluation.

Data: `config.data.path` points at a log in the `jaxtrain-fire-v1` layout (layout.py), or,
when empty, synthetic data are generated once into `config.data.cache_dir` and reused.
Windows of `data.seq_len` minutes are labelled by their last minute; whole time blocks of
each area go to one split, stratified so that every split holds every class.
Model: a transformer with a class head and a risk head; loss = class-weighted
cross-entropy + `train.risk_weight` * risk MSE.
After training (`Task.after_training`, when `ensemble.enabled`): the ML ensemble of
ensemble.py over the saved predictions.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import h5py
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from jaxtrain import losses
from jaxtrain.data import device
from jaxtrain.data.hdf5 import HDF5WindowSource, window_device_data
from jaxtrain.data.padding import pad_rows
from jaxtrain.data.splits import split_windows
from jaxtrain.data.synthetic import configured_or_generated, generated_once
from jaxtrain.task import Task
from jaxtrain.tasks.fire import ensemble, evaluation, normalize, synthetic
from jaxtrain.tasks.fire.baseline import logistic_regression_baseline
from jaxtrain.tasks.fire.model import build_model
from jaxtrain.tasks.fire.reader import read_fire_file
from jaxtrain.train_step import runs_in_step

HEADLINE = ("accuracy", "macro_f1", "fire_recall")  # the test metrics printed and reported


def data_path(config: ml_collections.ConfigDict) -> str:
    """The configured file, or the synthetic one (generated on first use, then reused)."""
    d = config.data
    params = {"samples_per_area": d.samples_per_area, "num_areas": d.num_areas, "seed": d.seed}
    return configured_or_generated(d.path, "data file", lambda: generated_once(
        f"fire-{d.num_areas}x{d.samples_per_area}-seed{d.seed}-{{version}}.h5",
        cache_dir=d.cache_dir, generator=synthetic, params=params,
        make=lambda path: synthetic.generate(path, **params)))


def window_source(path: str, area_names: Sequence[str], windows: np.ndarray, seq_len: int,
                  in_memory_gib: float) -> HDF5WindowSource:
    """Windows (area index, end row) of the log at `path`: raw readings "x", the end row's
    "label" and "risk", and the area index "area"."""
    return HDF5WindowSource([(path, f"areas/{name}") for name in area_names], windows,
                            length=seq_len, in_memory_bytes=int(in_memory_gib * 2**30),
                            window_fields={"x": "readings"},
                            point_fields={"label": "label", "risk": "risk"},
                            stream_field="area")


def build(config: ml_collections.ConfigDict, workdir: str) -> Task:
    d, t = config.data, config.train
    path = data_path(config)
    info = read_fire_file(path)  # validates the layout; clear errors otherwise
    with h5py.File(path, "r") as f:
        labels = [f["areas"][name]["label"][...] for name in info.area_names]
    splits = split_windows(info.lengths, d.seq_len, blocks_per_stream=d.blocks_per_area,
                           fractions=d.split, seed=d.seed,
                           strides=(d.train_stride, d.eval_stride, d.eval_stride),
                           block_keys=labels, key_names=dict(enumerate(info.class_names)))
    source = functools.partial(window_source, path, info.area_names, seq_len=d.seq_len,
                               in_memory_gib=d.in_memory_gib)
    train_src, val_src, test_src = (source(splits[s]) for s in ("train", "val", "test"))
    train_ends = splits["train"]
    counts = np.bincount(np.concatenate([labels[s][train_ends[train_ends[:, 0] == s, 1]]
                                         for s in range(len(labels))]),
                         minlength=len(info.class_names))
    class_weights = losses.class_weights_from_counts(counts, power=t.class_weight_power)
    center, scale = normalize.channel_stats(path, info.area_names, train_ends, d.seq_len,
                                            d.normalization)
    split_sizes = {k: len(v) for k, v in splits.items()}
    logging.info("fire data %s: windows per split %s, train label counts %s", path,
                 split_sizes, counts.tolist())
    if jax.process_index() == 0:
        normalize.save(workdir, method=d.normalization, center=center, scale=scale,
                       channel_names=info.channel_names, area_names=info.area_names)

    net = build_model(config, len(info.area_names), len(info.class_names))
    cw = jnp.asarray(class_weights, jnp.float32)
    # The whole log in device memory when it fits (data.on_device): windows are cut and
    # normalized in the step and the host ships positions only.
    resident = device.on_device(config, device_bytes(info, splits))
    # Else normalize inside the step on GPU/TPU (the host then only gathers raw windows), on
    # the host on CPU, where both would share the same cores anyway.
    in_step = resident or runs_in_step(d.normalize_in, "data.normalize_in")

    def model_input(x: np.ndarray | jax.Array) -> np.ndarray | jax.Array:
        return normalize.normalize(x, center, scale, d.normalization, tuple(d.diff_lags))

    def batch_transform(b: dict) -> dict:  # whole batches: ~20x cheaper than per window
        return {**b, "x": b["x"] if in_step else model_input(b["x"]),
                "label": b["label"].astype(np.int32), "risk": b["risk"].astype(np.float32)}

    def device_data() -> device.DeviceData:
        data = window_device_data({"train": train_src, "val": val_src, "test": test_src})
        gather = data.gather
        return dataclasses.replace(data, gather=lambda arrays, positions: {
            **(b := gather(arrays, positions)), "label": b["label"].astype(jnp.int32)})

    def step_input(x: jax.Array) -> jax.Array:
        return model_input(x) if in_step else x

    def init_fn(rng):
        x = jnp.zeros((1, d.seq_len, len(info.channel_names) * (1 + len(d.diff_lags))))
        return net.init({"params": rng}, x, jnp.zeros((1,), jnp.int32))["params"], {}

    def loss_fn(params, model_state, batch, rng):
        out = net.apply({"params": params}, step_input(batch["x"]), batch["area"],
                        train=True, rngs={"dropout": rng})
        ce = losses.softmax_cross_entropy(out["logits"], batch["label"], class_weights=cw,
                                          label_smoothing=t.label_smoothing)
        risk_mse = losses.mse(jax.nn.sigmoid(out["risk_logit"]), batch["risk"])
        acc = jnp.mean(out["logits"].argmax(-1) == batch["label"])
        loss = ce + t.risk_weight * risk_mse
        return loss, ({"cross_entropy": ce, "risk_mse": risk_mse, "accuracy": acc},
                      model_state)

    def predict_fn(params, model_state, batch):
        out = net.apply({"params": params}, step_input(batch["x"]), batch["area"],
                        train=False)
        return {"probs": jax.nn.softmax(out["logits"]), "risk": jax.nn.sigmoid(out["risk_logit"]),
                "label": batch["label"], "area": batch["area"], "risk_target": batch["risk"]}

    class_evaluators = [evaluation.classification(info.class_names),
                        evaluation.per_area(info.area_names, len(info.class_names))]
    after_training = None
    if config.get("ensemble") is not None and config.ensemble.enabled:
        after_training = functools.partial(
            ensemble.after_training, config=config,
            sources={"train": train_src, "val": val_src, "test": test_src},
            channel_names=info.channel_names, area_names=info.area_names,
            class_names=info.class_names, class_weights=np.asarray(class_weights).tolist(),
            evaluators=class_evaluators,
            transformer_probs=raw_window_predictor(predict_fn, batch_transform,
                                                   t.eval_batch_size))

    return Task(
        train_source=train_src, val_source=val_src, test_source=test_src,
        init_fn=init_fn, loss_fn=loss_fn, predict_fn=predict_fn,
        evaluators=[*class_evaluators, evaluation.risk_mae],
        headline=HEADLINE,
        batch_transform=batch_transform,
        baseline=lambda: logistic_regression_baseline(train_src, test_src, info.class_names,
                                                      class_weights),
        data={"path": path, "windows": split_sizes, "train_label_counts": counts.tolist(),
              "class_names": list(info.class_names), "area_names": list(info.area_names),
              "class_weights": np.asarray(class_weights).tolist()},
        choices={"data.normalize_in": "step" if in_step else "host"},
        after_training=after_training, device_data=device_data if resident else None)


def device_bytes(info: Any, splits: dict[str, np.ndarray]) -> int:
    """What `window_device_data` uploads: float32 readings, int8 label and float32 risk per
    row, two int32 per window."""
    rows = int(sum(info.lengths))
    return rows * (4 * len(info.channel_names) + 1 + 4) + 8 * sum(map(len, splits.values()))


def raw_window_predictor(predict_fn: Any, batch_transform: Any, batch_size: int
                         ) -> Callable[[dict[str, Any], np.ndarray, np.ndarray], np.ndarray]:
    """`probs(variables, raw_windows, area)` through the jitted predict step, in fixed-size
    (padded) batches on the default device: one compilation for any number of windows."""
    step = jax.jit(predict_fn)

    def probs(variables: dict[str, Any], x: np.ndarray, area: np.ndarray) -> np.ndarray:
        out = []
        for start in range(0, len(x), batch_size):
            n = min(batch_size, len(x) - start)
            batch = batch_transform({
                **pad_rows({"x": x[start:start + n],
                            "area": np.asarray(area[start:start + n], np.int32)}, batch_size),
                "label": np.zeros(batch_size, np.int32), "risk": np.zeros(batch_size)})
            p = step(variables["params"], variables["model_state"], batch)["probs"]
            out.append(np.asarray(p)[:n])
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

    return probs

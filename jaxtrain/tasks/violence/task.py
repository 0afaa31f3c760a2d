"""`build(config, workdir) -> Task`: violence clips -> cached frame features -> LSTM-attention.

Data: `config.data.path` is a folder in RWF-2000's layout (`train|val/Fight|NonFight/*.avi`)
or the seed's (`train|val|test/violent|nonviolent`, `data.layout="seed"`); when empty,
synthetic clips are generated once into `data.cache_dir` (synthetic.py). Features are
extracted once per dataset and encoder (features.py) and held in RAM as float16. With the
RWF-2000 layout its `val` folder is the test split (as the published results use it) and
validation is a stratified share of `train` (`data.val_fraction`).
Model: LSTM-attention (model.py) on the size of the features' frame-to-frame changes (or
the signed changes, the centred or the raw features: `data.frame_inputs`), standardised
with training-split statistics (inside the step; the statistics travel in the
checkpoint); training clips are reversed in time at random (`data.reverse_prob`).
Loss: focal + label smoothing + class weights (loss.py).
"""

from __future__ import annotations

import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from jaxtrain.data import device
from jaxtrain.data.splits import split_groups
from jaxtrain.data.synthetic import configured_or_generated, generated_once
from jaxtrain.task import Task
from jaxtrain.tasks.violence import evaluation, synthetic
from jaxtrain.tasks.violence.baseline import motion_baseline
from jaxtrain.tasks.violence.clips import CLASS_NAMES
from jaxtrain.tasks.violence.features import Features, ensure_features
from jaxtrain.tasks.violence.loss import balanced_class_weights, violence_loss
from jaxtrain.tasks.violence.model import LSTMAttention, build_model

HEADLINE = ("accuracy", "violent_f1", "roc_auc", "violent_recall", "violent_precision")


def dataset_root(config: ml_collections.ConfigDict) -> str:
    """The configured dataset folder, or the synthetic one (generated on first use)."""
    d, s = config.data, config.data.synthetic
    params = {"clips": tuple(s.clips), "fight_fraction": s.fight_fraction, "size": s.size,
              "frames": tuple(s.frames), "fps": s.fps, "seed": s.seed, "layout": d.layout,
              "bit_rate": s.bit_rate}
    name = f"violence-{d.layout}-{'x'.join(map(str, s.clips))}-{s.size}px-seed{s.seed}"
    return configured_or_generated(d.path, "dataset folder", lambda: generated_once(
        name, cache_dir=d.cache_dir, generator=synthetic, params=params, done="DONE",
        make=lambda root: synthetic.generate(root, **params, workers=s.workers)))


class FeatureSource:
    """Clips `rows` of the in-RAM features: "x" (T, D) float16, "label", "index" (the row in
    the task's name list, kept with the predictions so each maps back to its clip)."""

    def __init__(self, feats: Features, rows: np.ndarray):
        self.feats, self.rows = feats, np.asarray(rows, np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:  # grain keys checkpoint state on it
        return f"FeatureSource(n={len(self)}, cache={os.path.basename(self.feats.path)})"

    def read_batch(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        rows = self.rows[np.asarray(indices, np.int64)]
        return {"x": self.feats.features[rows], "label": self.feats.labels[rows],
                "index": rows.astype(np.int32)}

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        return {k: v[0] for k, v in self.read_batch(np.array([i])).items()}


def split_rows(config: ml_collections.ConfigDict, feats: Features) -> dict[str, np.ndarray]:
    """Row indices of the usable clips per split (see the module doc)."""
    d = config.data
    if d.layout == "seed":
        return {s: np.flatnonzero(feats.splits == s) for s in ("train", "val", "test")}
    train = np.flatnonzero(feats.splits == "train")
    cut = split_groups(feats.labels[train], (1 - d.val_fraction, d.val_fraction, 0.0),
                       rng=np.random.default_rng(d.split_seed),
                       class_names=dict(enumerate(CLASS_NAMES)), what="training clips")
    return {"train": train[cut["train"]], "val": train[cut["val"]],
            "test": np.flatnonzero(feats.splits == "val")}


FRAME_INPUTS = ("features", "centred", "differences", "motion", "motion_and_differences")


def frame_inputs(x: Any, kind: str) -> Any:
    """What the LSTM reads of a clip's features x (B, T, D) (numpy or jax), by `kind` (one of
    FRAME_INPUTS): the features; each clip's features minus their mean over its frames; the
    change from the previous frame (zero at the first); the size of that change,
    |x_t - x_{t-1}| (the first frame repeats the second's); or the size and the change side
    by side (B, T, 2D).

    Why not the features: with a fixed camera and random encoder weights the static scene
    dominates every frame and lets a few hundred clips be memorised by their background;
    centring removes it, differences keep only what moved, and their size is the motion
    energy per feature that an LSTM would otherwise have to learn to rectify. Measured on
    the synthetic default (BUILD_NOTES): test accuracy 0.79 / 0.86 / 0.89 after centring /
    differences / motion (1,360 training clips); both side by side 0.9125 / 0.9075 / 0.925
    for seeds 0-2 where motion alone gave 0.9025 / 0.895 / 0.9025: the sign tells which way
    a feature's activity moved (a brawl's back and forth, a pass), which the size drops.
    """
    xp = jnp if isinstance(x, jax.Array) else np
    if kind == "features":
        return x
    if kind == "centred":
        return x - x.mean(axis=1, keepdims=True)
    change = x[:, 1:] - x[:, :-1]
    differences = xp.concatenate([xp.zeros_like(x[:, :1]), change], axis=1)
    if kind == "differences":
        return differences
    motion = xp.abs(xp.concatenate([change[:, :1], change], axis=1))
    if kind == "motion":
        return motion
    if kind == "motion_and_differences":
        return xp.concatenate([motion, differences], axis=-1)
    raise ValueError(f"data.frame_inputs must be one of {', '.join(FRAME_INPUTS)}, got {kind!r}")


def reverse_time(x: jax.Array, rng: jax.Array, prob: float) -> jax.Array:
    """Each clip of x (B, T, D) played backwards with probability `prob` (augmentation: a
    fight run backwards is still a fight, a walk still a walk)."""
    flip = jax.random.bernoulli(rng, prob, (x.shape[0],))
    return jnp.where(flip[:, None, None], x[:, ::-1], x)


def apply_model(model: LSTMAttention, params: Any, model_state: dict[str, Any], x: jax.Array,
                inputs: str, **kwargs: Any) -> Any:
    """The model on raw cached features: turned into the frame `inputs` (the run's
    data.frame_inputs), then standardised with the checkpoint's statistics (`model_state`)."""
    norm = model_state["normalization"]
    x = frame_inputs(x.astype(jnp.float32), inputs)
    x = (x - norm["mean"]) / norm["std"]
    return model.apply({"params": params, "batch_stats": model_state["batch_stats"]}, x,
                       **kwargs)


def clip_scores(model: LSTMAttention, params: Any, model_state: dict[str, Any], x: jax.Array,
                inputs: str, reverse_view: bool) -> dict[str, jax.Array]:
    """Evaluation outputs for raw cached features x: "probs" (B, 2) and "attention" (B, T).
    With `reverse_view` the logits of each clip played forwards and backwards are averaged
    (test-time augmentation matching `data.reverse_prob`); attention is the forward view's."""
    out = apply_model(model, params, model_state, x, inputs, train=False)
    logits = out["logits"]
    if reverse_view:
        backwards = apply_model(model, params, model_state, x[:, ::-1], inputs, train=False)
        logits = (logits + backwards["logits"]) / 2
    return {"probs": jax.nn.softmax(logits), "attention": out["attention"]}


def feature_stats(features: np.ndarray, kind: str, chunk: int = 256
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and std over every frame of `frame_inputs(features, kind)`
    (features (N, T, D)), in chunks."""
    d = frame_inputs(features[:1].astype(np.float64), kind).shape[-1]
    s, s2, n = np.zeros(d), np.zeros(d), 0
    for i in range(0, len(features), chunk):
        x = frame_inputs(features[i:i + chunk].astype(np.float64), kind).reshape(-1, d)
        s, s2, n = s + x.sum(0), s2 + (x * x).sum(0), n + len(x)
    mean = s / max(n, 1)
    std = np.sqrt(np.maximum(s2 / max(n, 1) - mean ** 2, 0.0))
    return mean.astype(np.float32), np.maximum(std, 1e-3).astype(np.float32)


def build(config: ml_collections.ConfigDict, workdir: str) -> Task:
    d, lc = config.data, config.loss
    t0 = time.monotonic()
    root = dataset_root(config)
    t1 = time.monotonic()
    feats = ensure_features(config, root)
    t2 = time.monotonic()
    rows = split_rows(config, feats)
    for s, r in rows.items():
        if not len(r):
            raise ValueError(f"{root}: the {s} split has no usable clips")
    train_labels = feats.labels[rows["train"]]
    class_weights = (balanced_class_weights(train_labels) if lc.class_weights == "balanced"
                     else np.ones(2, np.float32))
    inputs = d.frame_inputs
    mean, std = feature_stats(feats.features[rows["train"]], inputs)
    sizes = {s: len(r) for s, r in rows.items()}
    logging.info("violence data %s: clips per split %s, %d videos left out, class weights %s",
                 root, sizes, len(feats.errors), class_weights.tolist())

    model = build_model(config)
    cw = jnp.asarray(class_weights)
    loss_args = {"alpha": lc.focal_alpha, "gamma": lc.focal_gamma,
                 "label_smoothing": lc.label_smoothing}

    def init_fn(rng):
        v = model.init(rng, jnp.zeros((1, d.num_frames, len(mean))))
        return v["params"], {"batch_stats": v["batch_stats"],
                             "normalization": {"mean": jnp.asarray(mean),
                                               "std": jnp.asarray(std)}}

    def loss_fn(params, model_state, batch, rng):
        rng, reverse_rng = jax.random.split(rng)
        x = batch["x"]
        if d.reverse_prob:
            x = reverse_time(x, reverse_rng, d.reverse_prob)
        out, updates = apply_model(model, params, model_state, x, inputs, train=True,
                                   rngs={"dropout": rng}, mutable=["batch_stats"])
        loss = violence_loss(out["logits"], batch["label"], cw, **loss_args)
        acc = jnp.mean(out["logits"].argmax(-1) == batch["label"])
        return loss, ({"accuracy": acc}, {**model_state, "batch_stats": updates["batch_stats"]})

    def predict_fn(params, model_state, batch):
        out = clip_scores(model, params, model_state, batch["x"], inputs,
                          config.eval.reverse_view)
        return {**out, "label": batch["label"], "index": batch["index"]}

    def baseline() -> dict[str, Any]:
        tr, te = rows["train"], rows["test"]
        return motion_baseline(feats.motion[tr], feats.labels[tr], feats.motion[te],
                               feats.labels[te], class_weights)

    def device_data() -> device.DeviceData:  # the cache as it is (float16), rows by position
        arrays = {"x": feats.features, "label": feats.labels,
                  "index": np.arange(len(feats.labels), dtype=np.int32)}
        return device.DeviceData(arrays, rows, device.take)

    resident = device.on_device(config, feats.features.nbytes + 8 * len(feats.labels))
    return Task(
        train_source=FeatureSource(feats, rows["train"]),
        val_source=FeatureSource(feats, rows["val"]),
        test_source=FeatureSource(feats, rows["test"]),
        init_fn=init_fn, loss_fn=loss_fn, predict_fn=predict_fn,
        evaluators=[evaluation.classification(class_weights, **loss_args)],
        headline=HEADLINE, baseline=baseline,
        after_training=evaluation.clip_table_stage(feats.names),
        data={"root": root, "feature_cache": feats.path, "clips": sizes,
              "train_label_counts": np.bincount(train_labels, minlength=2).tolist(),
              "class_weights": class_weights.tolist(), "videos_left_out": feats.errors,
              "feature_dim": int(feats.features.shape[-1]),
              "seconds": {"dataset": round(t1 - t0, 1), "features": round(t2 - t1, 1)}},
        device_data=device_data if resident else None)

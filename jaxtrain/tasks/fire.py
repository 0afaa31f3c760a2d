"""Fire detection: 60-minute windows of 6 sensor channels in 5 areas -> normal/warning/fire.

Data: the `jaxtrain-fire-v1` HDF5 layout (see fire_data.py); `config.data.path` points at a
real log in that layout, or, when empty, synthetic data are generated once into
`config.data.cache_dir` and reused. Model: the seed's transformer with a class head and a
risk head; loss = class-weighted cross-entropy + `risk_weight` * risk MSE.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from jaxtrain import baseline, losses, metrics, writers
from jaxtrain.data import HDF5WindowSource, configured_or_generated, generated_once, split_windows
from jaxtrain.models.fire_transformer import FireTransformer
from jaxtrain.task import Task
from jaxtrain.tasks import fire_data
from jaxtrain.train_step import compute_dtype, runs_in_step


def data_path(config: ml_collections.ConfigDict) -> str:
    """The configured file, or the synthetic one (generated on first use, then reused)."""
    d = config.data

    def make(path: str) -> None:
        fire_data.generate(path, samples_per_area=d.samples_per_area, num_areas=d.num_areas,
                           seed=d.seed)

    return configured_or_generated(d.path, "data file", lambda: generated_once(
        f"fire-{d.num_areas}x{d.samples_per_area}-seed{d.seed}-{{version}}.h5",
        cache_dir=d.cache_dir, generator_file=fire_data.__file__, make=make))


def _channel_stats(path: str, streams: list[tuple[str, str]], windows: np.ndarray,
                   seq_len: int, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (center, scale) over every reading inside the training windows only.

    "zscore": mean/std. "robust": median and IQR/1.349 (= std for Gaussian data): fire
    readings are orders of magnitude above normal ones and would otherwise set the scale,
    squashing the small sustained rises that tell a smoulder from normal operation.
    """
    import h5py

    parts = []
    with h5py.File(path, "r") as f:
        for s, (_, group) in enumerate(streams):
            ends = windows[windows[:, 0] == s, 1]
            if not len(ends):
                continue
            covered = np.zeros(f[group]["readings"].shape[0], bool)
            for offset in range(seq_len):  # mark rows [end - seq_len + 1, end]
                covered[ends - offset] = True
            parts.append(f[group]["readings"][...][covered].astype(np.float64))
    x = np.concatenate(parts)
    if method == "zscore":
        center, scale = x.mean(0), x.std(0)
    elif method == "robust":
        q25, center, q75 = np.percentile(x, [25, 50, 75], axis=0)
        scale = (q75 - q25) / 1.349
    else:
        raise ValueError(f"data.normalization must be 'robust' or 'zscore', got {method!r}")
    return center.astype(np.float32), np.maximum(scale, 1e-6).astype(np.float32)


def normalize(x: np.ndarray | jax.Array, center: np.ndarray, scale: np.ndarray, method: str,
              diff_lags: tuple[int, ...] = ()) -> np.ndarray | jax.Array:
    """Model inputs of (..., T, C) windows: scaled readings, then one change-over-`lag` block
    per lag (minutes; zero where the window has no reading that far back).

    "robust" compresses the tails with asinh (linear near 0, log-like beyond a few units), so
    fires stay large but bounded. The change channels hand the model the sustained rise that
    tells a smoulder from a nuisance plateau instead of making it learn differencing first.
    numpy in, numpy out (host); a jax array in, jax out (inside the jitted step).
    """
    xp = jnp if isinstance(x, jax.Array) else np
    z = (x - center) / scale
    squash = xp.arcsinh if method == "robust" else (lambda v: v)
    parts = [squash(z)]
    for lag in diff_lags:
        lag = min(lag, z.shape[-2])
        change = z[..., lag:, :] - z[..., : z.shape[-2] - lag, :]
        parts.append(squash(xp.concatenate([xp.zeros_like(z[..., :lag, :]), change], axis=-2)))
    return xp.concatenate(parts, axis=-1).astype(xp.float32)


def build(config: ml_collections.ConfigDict, workdir: str) -> Task:
    d, m, t = config.data, config.model, config.train
    path = data_path(config)
    info = fire_data.read_fire_file(path)  # validates the layout; clear errors otherwise
    streams = [(path, f"areas/{name}") for name in info.area_names]
    import h5py

    with h5py.File(path, "r") as f:
        labels = [f[g]["label"][...] for _, g in streams]
    splits = split_windows(info.lengths, d.seq_len, blocks_per_stream=d.blocks_per_area,
                           fractions=d.split, seed=d.seed,
                           strides=(d.train_stride, d.eval_stride, d.eval_stride),
                           block_keys=labels)
    source = functools.partial(HDF5WindowSource, streams, length=d.seq_len,
                               in_memory_bytes=int(d.get("in_memory_gib", 1.0) * 2**30),
                               window_fields={"x": "readings"},
                               point_fields={"label": "label", "risk": "risk"},
                               stream_field="area")
    train_src, val_src, test_src = (source(splits[s]) for s in ("train", "val", "test"))
    train_labels = np.concatenate([labels[s][e] for s, e in [
        (s, splits["train"][splits["train"][:, 0] == s, 1]) for s in range(len(streams))]])
    counts = np.bincount(train_labels, minlength=len(info.class_names))
    class_weights = losses.class_weights_from_counts(counts, power=t.class_weight_power)
    center, scale = _channel_stats(path, streams, splits["train"], d.seq_len, d.normalization)
    split_sizes = {k: len(v) for k, v in splits.items()}
    logging.info("fire data %s: windows per split %s, train label counts %s", path,
                 split_sizes, counts.tolist())
    if jax.process_index() == 0:
        writers.write_json_atomic(os.path.join(workdir, "normalization.json"),
                                  {"channels": info.channel_names, "method": d.normalization,
                                   "center": center, "scale": scale})

    model = FireTransformer(seq_len=d.seq_len, num_areas=len(info.area_names),
                            num_classes=len(info.class_names), d_model=m.d_model,
                            num_heads=m.num_heads, num_layers=m.num_layers, d_ff=m.d_ff,
                            dropout=m.dropout, dtype=compute_dtype(t.compute_dtype))
    cw = jnp.asarray(class_weights, jnp.float32)

    # Normalize inside the step on GPU/TPU (the host then only gathers raw windows), on the
    # host on CPU, where both would share the same two cores anyway (BUILD_NOTES).
    in_step = runs_in_step(d.get("normalize_in", "auto"), "data.normalize_in")

    def model_input(x: np.ndarray | jax.Array) -> np.ndarray | jax.Array:
        return normalize(x, center, scale, d.normalization, tuple(d.diff_lags))

    def batch_transform(b: dict) -> dict:  # whole batches: ~20x cheaper than per window
        return {**b, "x": b["x"] if in_step else model_input(b["x"]),
                "label": b["label"].astype(np.int32), "risk": b["risk"].astype(np.float32)}

    def step_input(x: jax.Array) -> jax.Array:
        return model_input(x) if in_step else x

    def init_fn(rng):
        x = jnp.zeros((1, d.seq_len, len(info.channel_names) * (1 + len(d.diff_lags))))
        return model.init({"params": rng}, x, jnp.zeros((1,), jnp.int32))["params"], {}

    def loss_fn(params, model_state, batch, rng):
        out = model.apply({"params": params}, step_input(batch["x"]), batch["area"],
                          train=True, rngs={"dropout": rng})
        ce = losses.softmax_cross_entropy(out["logits"], batch["label"], class_weights=cw,
                                          label_smoothing=t.label_smoothing)
        risk_mse = losses.mse(jax.nn.sigmoid(out["risk_logit"]), batch["risk"])
        acc = jnp.mean(out["logits"].argmax(-1) == batch["label"])
        loss = ce + t.risk_weight * risk_mse
        return loss, ({"cross_entropy": ce, "risk_mse": risk_mse, "accuracy": acc},
                      model_state)

    def predict_fn(params, model_state, batch):
        out = model.apply({"params": params}, step_input(batch["x"]), batch["area"],
                          train=False)
        return {"probs": jax.nn.softmax(out["logits"]), "risk": jax.nn.sigmoid(out["risk_logit"]),
                "label": batch["label"], "area": batch["area"], "risk_target": batch["risk"]}

    def evaluate(outputs: dict[str, np.ndarray]):
        return evaluate_outputs(outputs, info.class_names, info.area_names)

    def run_baseline() -> dict:
        def windows(src):
            recs = [src[i] for i in range(len(src))]
            return (np.stack([r["x"] for r in recs]), np.array([r["label"] for r in recs]))

        xtr, ytr = windows(train_src)
        xte, yte = windows(test_src)
        predict = baseline.fit_logistic_regression(
            fire_data.summary_features(xtr), ytr, len(info.class_names),
            class_weights=class_weights)
        preds = predict(fire_data.summary_features(xte)).argmax(-1)
        report = metrics.classification_report(yte, preds, len(info.class_names),
                                               class_names=info.class_names)
        return {"model": "logistic regression on per-window summary features "
                         "(mean, std, min, max, last per channel)",
                "accuracy": report["accuracy"], "macro_f1": report["macro_f1"],
                "report": report}

    return Task(train_source=train_src, val_source=val_src, test_source=test_src,
                init_fn=init_fn, loss_fn=loss_fn, predict_fn=predict_fn, evaluate=evaluate,
                batch_transform=batch_transform, baseline=run_baseline,
                info={"headline": ["accuracy", "macro_f1", "fire_recall"],
                      "data": {"path": path, "windows": split_sizes,
                               "train_label_counts": counts.tolist(),
                               "class_weights": np.asarray(class_weights).tolist()}})


def evaluate_outputs(outputs: dict[str, np.ndarray], class_names, area_names
                     ) -> tuple[dict[str, float], dict]:
    """Flat scalars for logs/early stopping, and the full report for results.json."""
    labels, probs = outputs["label"], outputs["probs"]
    preds = probs.argmax(-1)
    k = len(class_names)
    report = metrics.classification_report(labels, preds, k, class_names=class_names,
                                           probs=probs)
    report["per_area"] = metrics.per_group_report(labels, preds, outputs["area"],
                                                  len(area_names), k, group_names=area_names)
    report["risk_mae"] = float(np.abs(outputs["risk"] - outputs["risk_target"]).mean())
    flat = {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"],
            "risk_mae": report["risk_mae"]}
    for name in class_names:
        for stat in ("precision", "recall", "f1"):
            flat[f"{name}_{stat}"] = report["per_class"][name][stat]
    for name in area_names:
        flat[f"area_accuracy/{name}"] = report["per_area"][name]["accuracy"]
    if "roc_auc" in report and isinstance(report["roc_auc"], dict):
        flat["roc_auc_ovr"] = report["roc_auc"].get("macro", float("nan"))
    return flat, report

"""Fire risk for every window of a new log: `python -m jaxtrain.predict --workdir=RUN
--input=log.h5 --output=predictions.csv` (RUN: a workdir or an exported bundle)."""

from __future__ import annotations

import csv
import os
from typing import Any

import h5py
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxtrain.data.padding import pad_rows
from jaxtrain.files import atomic_path
from jaxtrain.tasks.fire import ensemble, features, normalize
from jaxtrain.tasks.fire.model import build_model
from jaxtrain.tasks.fire.reader import read_fire_file
from jaxtrain.tasks.fire.task import window_source


def predict(config: ml_collections.ConfigDict, variables: dict[str, Any], input_path: str,
            output_path: str, batch_size: int, *, workdir: str) -> dict[str, Any]:
    """Classifies every window of every area of a `jaxtrain-fire-v1` log.

    Windows of `data.seq_len` minutes end every `data.eval_stride` minutes, from the first
    full one (row `data.seq_len - 1`) of each area. Readings are scaled with the run's
    normalization.json; the log's channels must be the run's, and its areas ones the run was
    trained on (the model embeds the area).

    Writes the CSV `output_path`, one row per window: area, row (the window's last row),
    end_timestamp (unix seconds), prediction (class name), p_<class> per class, risk. A run
    with an ML ensemble (ensemble.py) predicts with the combination it chose on validation
    (prediction and p_<class>: a member's probabilities, or the vote's scores) and adds
    every member's probabilities, <member>_p_<class>; risk is the transformer's.
    Returns a summary: areas, windows, predictions per class, max_risk, combination, output.
    Raises a one-line FileNotFoundError/ValueError for an unusable log or run.
    """
    d = config.data
    saved = normalize.load(workdir)
    info = read_fire_file(input_path)
    if info.channel_names != saved["channels"]:
        raise ValueError(f"{input_path}: channels {info.channel_names}, but the run was "
                         f"trained on {saved['channels']}")
    unknown = [a for a in info.area_names if a not in saved["areas"]]
    if unknown:
        raise ValueError(f"{input_path}: area(s) {', '.join(unknown)} not among the run's "
                         f"areas ({', '.join(saved['areas'])}); the model embeds the area")
    windows = np.concatenate([
        np.stack([np.full(len(ends), s), ends], 1)
        for s, n in enumerate(info.lengths)
        for ends in [np.arange(d.seq_len - 1, n, d.eval_stride, dtype=np.int64)]])
    if not len(windows):
        raise ValueError(f"{input_path}: every area is shorter than a window "
                         f"({d.seq_len} rows, data.seq_len)")
    source = window_source(input_path, info.area_names, windows, d.seq_len, d.in_memory_gib)
    run_area = np.array([saved["areas"].index(a) for a in info.area_names], np.int32)
    class_names = info.class_names
    net = build_model(config, len(saved["areas"]), len(class_names))
    params = jax.tree.map(jnp.asarray, variables["params"])

    @jax.jit
    def forward(params: Any, x: jax.Array, area: jax.Array) -> tuple[jax.Array, jax.Array]:
        out = net.apply({"params": params}, x, area, train=False)
        return jax.nn.softmax(out["logits"]), jax.nn.sigmoid(out["risk_logit"])

    batch_size = min(batch_size, len(windows))
    probs, risk = [], []
    for start in range(0, len(windows), batch_size):
        batch = source.read_batch(np.arange(start, min(start + batch_size, len(windows))))
        n = len(batch["area"])
        x = normalize.normalize(batch["x"], saved["center"], saved["scale"], saved["method"],
                                tuple(d.diff_lags))
        p, r = forward(params, *pad_rows((x, run_area[batch["area"]]), batch_size))
        probs.append(np.asarray(p)[:n])
        risk.append(np.asarray(r)[:n])
    probs_a, risk_a = np.concatenate(probs), np.concatenate(risk)
    members = {ensemble.TRANSFORMER: probs_a}
    saved_ensemble = ensemble.load(workdir)
    combination = ensemble.TRANSFORMER
    if saved_ensemble is not None:
        spec, models = saved_ensemble
        names = features.feature_names(info.channel_names, saved["areas"])
        if names != spec["features"]:
            raise ValueError(f"{workdir}: its ensemble was trained on other features than "
                             "this jaxtrain computes; retrain the run")
        x, _ = features.source_features(source, info.channel_names, len(saved["areas"]),
                                        area_map=run_area)
        members |= {m: ensemble.member_probs(model, x, len(class_names))
                    for m, model in models.items()}
        members = {m: members[m] for m in spec["members"]}  # the spec's order, for columns
        combination = spec["chosen"]
        probs_a = ensemble.combine(spec, members)
    extra = list(members) if len(members) > 1 else []
    with h5py.File(input_path, "r") as f:
        stamps = [f["areas"][a]["timestamp"][...] for a in info.area_names]
    preds = probs_a.argmax(-1)
    with atomic_path(output_path) as tmp, open(tmp, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["area", "row", "end_timestamp", "prediction",
                         *(f"p_{c}" for c in class_names), "risk",
                         *(f"{m}_p_{c}" for m in extra for c in class_names)])
        member_cols = (np.concatenate([members[m] for m in extra], axis=1) if extra
                       else np.zeros((len(windows), 0)))
        for (s, row), p, k, r, mp in zip(windows, probs_a, preds, risk_a, member_cols,
                                         strict=True):
            writer.writerow([info.area_names[s], int(row), int(stamps[s][row]), class_names[k],
                             *(f"{v:.5f}" for v in p), f"{r:.5f}", *(f"{v:.5f}" for v in mp)])
    return {"areas": len(info.area_names), "windows": len(windows),
            "predictions": {c: int((preds == k).sum()) for k, c in enumerate(class_names)},
            "max_risk": round(float(risk_a.max()), 5), "combination": combination,
            "output": os.path.abspath(output_path)}

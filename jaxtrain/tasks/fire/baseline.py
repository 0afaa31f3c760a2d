"""The reference model: logistic regression on per-window summary statistics.

Reported next to the transformer (results.json "baseline") so its margin over a cheap model
is visible. The summary features deliberately carry no slope or trend: telling a smoulder
from a nuisance plateau by its sustained rise is what the deep model is for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxtrain import losses, metrics
from jaxtrain.tasks.fire.layout import CHANNEL_NAMES

SUMMARY_STATS: tuple[str, ...] = ("mean", "std", "min", "max", "last")


def logistic_regression_baseline(train_source: Any, test_source: Any, class_names: Sequence[str],
                                 class_weights: np.ndarray) -> dict[str, Any]:
    """Fits on every training window, scores every test window (results.json "baseline")."""
    train = train_source.read_batch(np.arange(len(train_source)))
    test = test_source.read_batch(np.arange(len(test_source)))
    predict = fit_logistic_regression(summary_features(train["x"]), train["label"],
                                      len(class_names), class_weights=class_weights)
    preds = predict(summary_features(test["x"])).argmax(-1)
    report = metrics.classification_report(test["label"], preds, len(class_names),
                                           class_names=list(class_names))
    return {"model": "logistic regression on per-window summary features "
                     "(mean, std, min, max, last per channel)",
            "accuracy": report["accuracy"], "macro_f1": report["macro_f1"], "report": report}


def summary_features(windows: np.ndarray) -> np.ndarray:
    """Per-window, per-channel mean, std, min, max and last value: (N, T, C) -> (N, 5 * C).

    Columns are stat-major (all channels' means first), see summary_feature_names.
    """
    w = np.asarray(windows)
    if w.ndim != 3 or w.shape[1] == 0:
        raise ValueError(f"windows must be (N, T, C) with T >= 1, got shape {w.shape}")
    # No up-front cast: windows is often a strided view, and a copy would be T times the data.
    stats = [w.mean(1), w.std(1), w.min(1), w.max(1), w[:, -1]]
    return np.concatenate([s.astype(np.float32) for s in stats], axis=1)


def summary_feature_names(channel_names: Sequence[str] = CHANNEL_NAMES) -> list[str]:
    """Column names of summary_features, e.g. ``"smoke_max"``."""
    return [f"{c}_{s}" for s in SUMMARY_STATS for c in channel_names]


def fit_logistic_regression(features: np.ndarray, labels: np.ndarray, num_classes: int, *,
                            class_weights: np.ndarray | None = None, l2: float = 1e-3,
                            steps: int = 200
                            ) -> Callable[[np.ndarray], np.ndarray]:
    """Fits on standardised features with L-BFGS; returns `predict(features) -> probs`."""
    mean, std = features.mean(0), features.std(0) + 1e-6
    x = jnp.asarray((features - mean) / std, jnp.float32)
    y = jnp.asarray(labels, jnp.int32)
    w = None if class_weights is None else jnp.asarray(class_weights, jnp.float32)
    params = {"w": jnp.zeros((x.shape[1], num_classes)), "b": jnp.zeros((num_classes,))}

    def objective(p):
        logits = x @ p["w"] + p["b"]
        return losses.softmax_cross_entropy(logits, y, class_weights=w) + l2 * jnp.sum(p["w"] ** 2)

    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(objective)

    @jax.jit
    def run(params):
        def body(carry, _):
            p, s = carry
            value, grad = value_and_grad(p, state=s)
            updates, s = opt.update(grad, s, p, value=value, grad=grad, value_fn=objective)
            return (optax.apply_updates(p, updates), s), None

        (params, _), _ = jax.lax.scan(body, (params, opt.init(params)), None, length=steps)
        return params

    params = jax.device_get(run(params))

    def predict(new_features: np.ndarray) -> np.ndarray:
        z = (new_features - mean) / std
        return np.asarray(jax.nn.softmax(z @ params["w"] + params["b"]))

    return predict

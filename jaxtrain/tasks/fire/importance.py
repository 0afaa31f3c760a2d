"""Which inputs the fire models rely on: importance tables (CSV) and a bar chart (PNG).

- random_forest impurity: mean decrease in impurity over the training fit (sklearn's
  `feature_importances_`; biased towards high-cardinality features, hence also:)
- permutation, every tree member: the drop in validation macro F1 when one feature's column
  is shuffled across windows (`sklearn.inspection.permutation_importance`, `repeats` times);
- permutation, transformer: the same drop when one sensor channel's readings are shuffled
  across windows (whole 60-minute traces swapped, so the derived change channels move with
  them), through the jitted predict step, on `ensemble.importance_windows` validation windows
  (each shuffle costs a forward pass over them: on 2 CPU cores this dominated the stage).

Macro F1, not accuracy, is the score: with ~90% normal windows, accuracy barely moves when
the warning class is lost.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from absl import logging

from jaxtrain import metrics
from jaxtrain.files import atomic_path
from jaxtrain.report.plots import save as save_png

CSV_NAME = "importance.csv"
PNG_NAME = "importance.png"
MAX_WINDOWS = 8192  # validation windows scored per permutation: bounds cost at any data size
TOP = 15  # features drawn per panel


def _macro_f1(labels: np.ndarray, probs: np.ndarray, num_classes: int) -> float:
    return float(metrics.macro_f1(metrics.confusion_matrix(labels, probs.argmax(-1),
                                                           num_classes)))


def channel_permutation(predict: Callable[[np.ndarray, np.ndarray], np.ndarray], x: np.ndarray,
                        area: np.ndarray, labels: np.ndarray, num_classes: int, repeats: int,
                        rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per channel of (N, T, C) raw windows: mean and std over `repeats` of the macro-F1
    drop when that channel is shuffled across windows; and the unshuffled probabilities."""
    base_probs = predict(x, area)
    base = _macro_f1(labels, base_probs, num_classes)
    drops = np.zeros((x.shape[2], repeats))
    for c in range(x.shape[2]):
        for r in range(repeats):
            shuffled = x.copy()
            shuffled[:, :, c] = x[rng.permutation(len(x)), :, c]
            drops[c, r] = base - _macro_f1(labels, predict(shuffled, area), num_classes)
    return drops.mean(1), drops.std(1), base_probs


def explain(directory: str, *, models: dict[str, Any], names: Sequence[str], x_val: np.ndarray,
            y_val: np.ndarray, source_val: Any, area_val: np.ndarray,
            channel_names: Sequence[str],
            transformer: Callable[[np.ndarray, np.ndarray], np.ndarray],
            transformer_val_probs: np.ndarray, num_classes: int, repeats: int,
            transformer_windows: int, seed: int) -> dict[str, Any]:
    """Writes `directory`/importance.csv and importance.png; returns their paths and each
    model's top features. `transformer(raw_windows, area) -> probs`, scored on at most
    `transformer_windows` validation windows (its passes cost a model forward each)."""
    from sklearn.inspection import permutation_importance

    rng = np.random.default_rng(seed)

    def sample(limit: int) -> np.ndarray:  # sorted: reads stay in file order
        n = len(y_val)
        return np.sort(rng.choice(n, limit, replace=False)) if n > limit else np.arange(n)

    idx = sample(MAX_WINDOWS)
    rows: list[tuple[str, str, str, float, float]] = []
    rf = models.get("random_forest")
    if rf is not None:
        rows += [("random_forest", "impurity", n, float(v), 0.0)
                 for n, v in zip(names, rf.feature_importances_, strict=True)]
    for name, model in models.items():
        r = permutation_importance(model, x_val[idx], y_val[idx], scoring="f1_macro",
                                   n_repeats=repeats, random_state=seed)
        rows += [(name, "permutation", n, float(m), float(s))
                 for n, m, s in zip(names, r.importances_mean, r.importances_std, strict=True)]
    t_idx = sample(transformer_windows)
    raw = source_val.read_batch(t_idx)["x"]
    mean, std, base_probs = channel_permutation(transformer, raw, area_val[t_idx],
                                                y_val[t_idx], num_classes, repeats, rng)
    # The permuted passes must start from the transformer the run saved: same predictions.
    gap = float(np.abs(base_probs - transformer_val_probs[t_idx]).max()) if len(t_idx) else 0.0
    if gap > 1e-3:
        logging.warning("transformer importance: unshuffled probabilities differ from the saved "
                        "validation predictions by up to %.2g", gap)
    rows += [("transformer", "permutation", c, float(m), float(s))
             for c, m, s in zip(channel_names, mean, std, strict=True)]
    csv_path = _write_csv(os.path.join(directory, CSV_NAME), rows)
    png_path = _plot(os.path.join(directory, PNG_NAME), rows)
    top: dict[str, list[str]] = {}
    for model, method in sorted({(r[0], r[1]) for r in rows}):
        ranked = sorted((r for r in rows if r[:2] == (model, method)), key=lambda r: -r[3])
        top[f"{model}/{method}"] = [r[2] for r in ranked[:5]]
    return {"csv": csv_path, "png": png_path, "top5": top, "windows": len(idx),
            "transformer_windows": len(t_idx), "repeats": repeats, "score": "macro F1 drop",
            "transformer_check_max_abs": gap}


def _write_csv(path: str, rows: list[tuple[str, str, str, float, float]]) -> str:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "method", "feature", "importance", "std", "rank"])
        for model, method in dict.fromkeys((r[0], r[1]) for r in rows):
            ranked = sorted((r for r in rows if r[:2] == (model, method)), key=lambda r: -r[3])
            for rank, (_, _, feat, v, s) in enumerate(ranked, 1):
                w.writerow([model, method, feat, f"{v:.6g}", f"{s:.6g}", rank])
    return path


def _plot(path: str, rows: list[tuple[str, str, str, float, float]]) -> str:
    """One horizontal bar panel per (model, method), the top features, error bars = std."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = list(dict.fromkeys((r[0], r[1]) for r in rows))
    fig = Figure(figsize=(5.2 * len(panels), 5.0), dpi=100)
    FigureCanvasAgg(fig)
    for i, (model, method) in enumerate(panels):
        ranked = sorted((r for r in rows if r[:2] == (model, method)), key=lambda r: -r[3])[:TOP]
        ax = fig.add_subplot(1, len(panels), i + 1)
        y = np.arange(len(ranked))[::-1]
        ax.barh(y, [r[3] for r in ranked], xerr=[r[4] for r in ranked], color="tab:orange"
                if model == "transformer" else "tab:blue")
        ax.set_yticks(y, labels=[r[2] for r in ranked], fontsize=8)
        ax.set_xlabel("mean decrease in impurity" if method == "impurity"
                      else "validation macro F1 drop")
        ax.set_title(f"{model}: {method}", fontsize=10)
    return save_png(fig, path)

"""Pictures for TensorBoard's Images tab after each epoch (the loop calls
`log_epoch_images`; the report page has the same figures, drawn from the saved files)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from absl import logging

from jaxtrain.report import figures as report
from jaxtrain.report import plots as rp


def epoch_images(step: int, val_report: Mapping[str, Any], history: Sequence[Mapping[str, Any]]
                 ) -> dict[str, np.ndarray]:
    """Pictures for TensorBoard after an epoch: {tag: (H, W, 3) uint8}.

    The validation confusion matrices (the in-memory report keeps its per_class entries in
    class order), the learning-rate and memory curves so far, and the seconds each epoch
    spent in each part of the loop when history holds the cumulative `time/<part>_s`
    columns. `step` names the pictures' step in their titles.
    """
    from jaxtrain import plots

    images = {}
    for where, cm in report.confusion_matrices(val_report):
        names = _report_class_names(val_report, where, len(cm))
        images[f"images/val_confusion{'_' + where if where else ''}"] = rp.rgb_array(
            plots.confusion_matrix_figure(np.asarray(cm), names,
                                          f"validation confusion (step {step})", dpi=80))
    epochs = np.array([float(r.get("epoch", i + 1)) for i, r in enumerate(history)])
    panels = []
    for title, ylabel, keys in (
            ("Learning rate", "learning rate", ("train/learning_rate",)),
            ("Memory", "MB", ("memory/host_peak_mb", "memory/device_mb")),
            ("Time per epoch", "seconds", tuple(sorted({k for r in history for k in r
                                                        if k.startswith("time/")})))):
        series = {k: (epochs, np.array([_num(r.get(k)) for r in history]),
                      {"marker": "o", "markersize": 3}) for k in keys}
        for k in keys:
            if k.startswith("time/"):  # cumulative seconds -> seconds within each epoch
                series[k] = (epochs, np.diff(series[k][1], prepend=0.0), series[k][2])
        series = {k: v for k, v in series.items() if report.finite(v[1])}
        if series:
            panels.append((title, ylabel, series))
    if panels:
        fig = rp.new_figure(4.2 * len(panels), 3.2, dpi=80)
        rp.draw_panels(fig, panels)
        images["images/lr_memory_time"] = rp.rgb_array(fig)
    return images


def log_epoch_images(writer: Any, step: int, val_report: Mapping[str, Any],
                     history: Sequence[Mapping[str, Any]]) -> None:
    """`epoch_images` into TensorBoard (`writers.MetricWriter.images`, process 0 only); a
    picture that fails is a warning: training goes on."""
    if not writer.enabled:
        return
    try:
        writer.images(step, epoch_images(step, val_report, history))
    except Exception as e:  # pictures must never stop a run
        logging.warning("report: TensorBoard images at step %d failed: %s", step, e)


def _num(v: Any) -> float:
    return float(v) if isinstance(v, int | float) else math.nan


def _report_class_names(report: Mapping[str, Any], where: str, k: int) -> list[str]:
    sub = report
    for part in where.split("_") if where else []:
        sub = sub.get(part, sub) if isinstance(sub, Mapping) else sub
    names = list(sub.get("per_class", {})) if isinstance(sub, Mapping) else []
    return names if len(names) == k else [str(i) for i in range(k)]

"""The report's figures: the generic ones drawn for any system from a run's saved files,
and the system's own through its report hook (`jaxtrain.report` says where they come from)."""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from absl import logging

from jaxtrain.report import plots as rp
from jaxtrain.run_files import RunFiles
from jaxtrain.task import ReportHook, load_system

REPORT_FILE = "report.html"
FIGURES_DIR = "report"


@dataclasses.dataclass
class Figure:
    """One picture of the page: a file in the figures directory and/or an interactive chart.

    `file` is relative to the page; `chart` is a spec drawn by the page's inline script
    (page.CHART_SCRIPT); `error` marks a figure that could not be drawn (shown as such).
    """

    title: str
    section: str
    file: str | None = None
    caption: str = ""
    chart: dict[str, Any] | None = None
    error: str | None = None


class Out:
    """Where figures go: `path(name)` inside the figures directory, `rel(path)` for the page."""

    def __init__(self, page_dir: str, figures_dir: str = FIGURES_DIR):
        self.page_dir = page_dir
        self.dir = os.path.join(page_dir, figures_dir)
        os.makedirs(self.dir, exist_ok=True)

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def rel(self, path: str) -> str:
        return os.path.relpath(path, self.page_dir).replace(os.sep, "/")

    def figure(self, title: str, section: str, path: str, caption: str = "") -> Figure:
        return Figure(title=title, section=section, file=self.rel(path), caption=caption)


# ----------------------------------------------------------------------------- system hook
@functools.cache
def hook(system: str) -> ReportHook:
    """The system's part of the report (`System.report`); an empty one for a run of a
    system this installation does not have (its generic figures are still drawn)."""
    try:
        return load_system(system).report
    except ValueError:
        return ReportHook()


def class_names(run: RunFiles, num_classes: int | None = None) -> list[str]:
    """Class names in label order: the system hook's, else results.json data.class_names,
    else "class 0", "class 1", ..."""
    h = hook(run.system)
    names = h.class_names(run) if h.class_names is not None else None
    if names is None and run.results is not None:
        names = run.results.get("data", {}).get("class_names")
    if names is None or (num_classes is not None and len(names) != num_classes):
        names = [f"class {i}" for i in range(num_classes or 0)]
    return list(names)


def sample_unit(run: RunFiles) -> str:
    return hook(run.system).unit


# ----------------------------------------------------------------------------- helpers
def finite(values: Any) -> bool:
    return bool(np.isfinite(np.asarray(values, np.float64)).any())


def step_series(run: RunFiles, name: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-step values of `name` (e.g. "train/loss") from TensorBoard: the per-step tag
    ("train_step/loss") when the run wrote one, else the shared tag without the epoch-mean
    points that older runs wrote into it at each epoch's last step."""
    tag = "train_step/" + name.removeprefix("train/")
    if name.startswith("train/") and tag in run.scalars:
        return run.scalars[tag]
    if name not in run.scalars:
        return None
    steps, values = run.scalars[name]
    epoch_steps = {int(r["step"]) for r in run.history if math.isfinite(r.get("step", math.nan))}
    keep = np.array([int(s) not in epoch_steps for s in steps], bool)
    return (steps[keep], values[keep]) if keep.any() else None


def _steps_per_epoch(run: RunFiles) -> float | None:
    rows = [r for r in run.history if r.get("epoch", 0) > 0 and r.get("step", 0) > 0]
    return rows[0]["step"] / rows[0]["epoch"] if rows else None


def headline(run: RunFiles) -> dict[str, float]:
    """The numbers a page shows first: the headline test metrics of a finished run; while
    training, the last epoch's values of the validation metrics drawn as curves."""
    if run.finished or not run.history:
        return run.headline()
    last = run.history[-1]
    return {k: last[k] for k in _metric_keys(run) if math.isfinite(last.get(k, math.nan))}


def _metric_keys(run: RunFiles) -> list[str]:
    """Validation metrics worth a curve: the headline ones that history holds, else a few."""
    cols = [k for k in (run.history[0] if run.history else {}) if k.startswith("val/")]
    curves = hook(run.system).curves
    if curves:
        return [k for k in curves if k in cols]
    head = run.results.get("headline", []) if run.results else []
    keys = [f"val/{h}" for h in head if f"val/{h}" in cols]
    if not keys:  # a run from before `headline` was recorded: its scores, not its losses
        keys = [k for k in cols if "loss" not in k]
    return (keys or cols)[:5]


# ----------------------------------------------------------------------------- generic figures
def learning_figures(run: RunFiles, out: Out) -> list[Figure]:
    """Learning curves (interactive + PNG, per-step loss with a moving average) and the
    training-progress GIF."""
    figs: list[Figure] = []
    loss = run.column("train/loss")
    metric_keys = _metric_keys(run)
    if loss is None and not metric_keys:
        return figs
    loss_series: dict[str, Any] = {}
    per_epoch = _steps_per_epoch(run)
    steps = step_series(run, "train/loss")
    if steps is not None and per_epoch:
        x = steps[0] / per_epoch
        loss_series["train loss, logged steps"] = (x, steps[1], {"alpha": 0.3, "linewidth": 1})
        if len(x) >= 10:  # a handful of points needs no smoothing
            window = max(3, len(x) // 20)
            loss_series[f"moving average ({window} points)"] = (
                x, rp.moving_average(steps[1], window), {"linewidth": 1.5})
    if loss is not None:
        loss_series["train loss, epoch mean"] = (*loss, {"marker": "o", "markersize": 3})
    for key in ("val/loss", "val/cross_entropy"):
        if run.column(key) is not None:
            loss_series[key] = (*run.column(key), {"marker": "o", "markersize": 3})
    metric_series = {k: (*run.column(k), {"marker": "o", "markersize": 3})
                     for k in metric_keys if run.column(k) is not None}
    acc = run.column("train/accuracy")
    if acc is not None:
        metric_series["train/accuracy (epoch mean)"] = (*acc, {"linestyle": "--"})
    panels = [p for p in (("Loss", "loss (training objective)", loss_series),
                          ("Validation metrics", "score (0-1)", metric_series)) if p[2]]
    path = rp.learning_curves_png(out.path("learning_curves.png"), panels,
                                  title=f"{run.name}: learning curves")
    chart = {"type": "lines", "panels": [
        {"title": t, "ylabel": y, "xlabel": "epoch",
         "series": [{"name": n, "x": _list(xy[0]), "y": _list(xy[1]),
                     "faint": xy[2].get("alpha", 1) < 1 if len(xy) > 2 else False}
                    for n, xy in s.items()]} for t, y, s in panels]}
    figs.append(Figure(title="Learning curves", section="Training", file=out.rel(path),
                       chart=chart, caption="Click a legend entry to hide or show a curve; "
                       "hover for values. Per-step loss is what the run logged every "
                       "train.log_every_s seconds; the moving average smooths it."))
    if len(run.history) >= 3:  # fewer epochs are no animation
        epochs = np.array([r["epoch"] for r in run.history])
        gif_panels = [(p[1], {n: _on_epochs(run, xy, epochs) for n, xy in p[2].items()
                              if "logged steps" not in n and "moving" not in n})
                      for p in panels]
        gif = rp.progress_gif(out.path("training_progress.gif"), epochs,
                              [p for p in gif_panels if p[1]],
                              title=f"{run.name}: training progress")
        figs.append(out.figure("Training progress (animation)", "Training", gif,
                               "Loss and validation metrics drawn epoch by epoch."))
    return figs


def _on_epochs(run: RunFiles, xy: tuple, epochs: np.ndarray) -> np.ndarray:
    lookup = dict(zip(np.asarray(xy[0]).tolist(), np.asarray(xy[1]).tolist(), strict=True))
    return np.array([lookup.get(float(e), np.nan) for e in epochs])


def lr_memory_figures(run: RunFiles, out: Out) -> list[Figure]:
    """Learning rate per epoch (and its plateau scale) and memory over the run."""
    lr = run.column("train/learning_rate")
    lr_steps = step_series(run, "train/learning_rate")
    memory: dict[str, Any] = {}
    per_epoch = _steps_per_epoch(run) or 1.0
    for key, name in (("memory/host_peak_mb", "host peak RSS"),
                      ("memory/device_mb", "device memory in use"),
                      ("memory/device_peak_mb", "device peak")):
        col = run.column(key)
        if col is not None:
            memory[f"{name} (epoch)"] = (*col, {"marker": "o", "markersize": 3})
        elif key in run.scalars:
            s, v = run.scalars[key]
            memory[f"{name} (logged steps)"] = (s / per_epoch, v)
    lr_series: dict[str, Any] = {}
    if lr_steps is not None:
        lr_series["learning rate, logged steps"] = (lr_steps[0] / per_epoch, lr_steps[1])
    if lr is not None:  # an epoch's mean belongs to the epoch's middle
        lr_series["learning rate, epoch mean"] = (lr[0] - 0.5, lr[1],
                                                  {"marker": "o", "markersize": 3})
    scale = run.column("lr_scale")
    note = ""
    if scale is not None and np.any(scale[1] != 1.0):
        note = f" Reduce-on-plateau lowered the scale to {scale[1].min():.3g}."
    panels = [p for p in (("Learning rate", "learning rate (per step)", lr_series),
                          ("Memory", "memory (MB)", memory)) if p[2]]
    if not panels:
        return []
    path = rp.learning_curves_png(out.path("lr_memory.png"), panels,
                                  title=f"{run.name}: learning rate and memory")
    return [out.figure("Learning rate and memory", "Training", path,
                       "Host memory is the process's peak resident set size." + note)]


TIME_NAMES = {"setup_s": "set-up", "input_wait_s": "input wait", "compile_s": "compile",
              "train_steps_s": "train steps", "evaluation_s": "evaluation",
              "checkpoint_s": "checkpoint"}


def time_parts(run: RunFiles) -> tuple[dict[str, float], float | None] | None:
    """The measured time breakdown (results.json `time_breakdown`): {part: seconds}, total."""
    tb = (run.results or {}).get("time_breakdown")
    if not isinstance(tb, Mapping):
        return None
    order = [k for k in TIME_NAMES if k in tb] + sorted(k for k in tb if k not in TIME_NAMES)
    parts = {TIME_NAMES.get(k, k.removesuffix("_s")): float(tb[k]) for k in order
             if k != "total_s" and isinstance(tb[k], int | float)}
    total = tb.get("total_s")
    if total is not None:
        other = float(total) - sum(parts.values())
        if other > 0.005 * float(total):
            parts["other"] = other
    return parts, total


def time_figures(run: RunFiles, out: Out) -> list[Figure]:
    """The measured time breakdown as pie and bars."""
    measured = time_parts(run)
    if measured is None:
        return []
    parts, total = measured
    path = rp.time_breakdown_png(out.path("time_breakdown.png"), parts, total=total,
                                 title=f"{run.name}: where the time went")
    return [out.figure("Time breakdown", "Training", path,
                       "Measured by the training loop (results.json time_breakdown).")]


def _train_counts(run: RunFiles, k: int) -> np.ndarray | None:
    data = (run.results or {}).get("data", {})
    for key, value in data.items():
        if key.startswith("train") and key.endswith("label_counts") and isinstance(value, list) \
                and len(value) == k:
            return np.asarray(value)
    return None


def classification_figures(run: RunFiles, out: Out) -> list[Figure]:
    """From `probs`/`label` predictions: class distribution, confusion matrices, ROC and
    precision-recall with the operating point, threshold sweep (binary), attention."""
    from jaxtrain import plots

    test = run.predictions("test")
    if test is None or "probs" not in test or "label" not in test or test["probs"].ndim != 2:
        return []
    probs, labels = test["probs"], test["label"].astype(np.int64)
    k = probs.shape[1]
    names = class_names(run, k)
    figs = []
    counts = {}
    train = _train_counts(run, k)
    if train is not None:
        counts["train"] = train
    for split in ("val", "test"):
        pred = run.predictions(split) if split == "val" else test
        if pred is not None and "label" in pred:
            counts[split] = np.bincount(pred["label"].astype(np.int64).reshape(-1), minlength=k)
    unit = sample_unit(run)
    path = rp.class_distribution_png(out.path("class_distribution.png"), counts, names,
                                     title=f"{run.name}: classes per split", unit=unit)
    figs.append(out.figure("Class distribution per split", "Data", path,
                           f"Counts of {unit} per true class (val/test from the saved "
                           "predictions, train from results.json)."))
    report = run.results.get("test_report", {}) if run.results else {}
    for where, cm in confusion_matrices(report):
        if np.asarray(cm).shape != (k, k):
            continue
        label = f"model, {where}" if where else "model"
        path = plots.confusion_matrix_png(out.path(f"confusion{'_' + where if where else ''}.png"),
                                          np.asarray(cm), names,
                                          f"{run.name}: test confusion ({label})")
        figs.append(out.figure(f"Confusion matrix, test ({label})", "Test results", path,
                               "Counts and % of each true class (row)."))
    base = (run.results or {}).get("baseline", {})
    cm = base.get("report", {}).get("confusion_matrix") if isinstance(base, Mapping) else None
    if cm is not None and np.asarray(cm).shape == (k, k):
        path = plots.confusion_matrix_png(out.path("confusion_baseline.png"), np.asarray(cm),
                                          names, f"{run.name}: test confusion (baseline)")
        figs.append(out.figure("Confusion matrix, test (baseline)", "Test results", path,
                               base.get("model", "")))
    threshold = _chosen_threshold(report)
    path = rp.roc_pr_png(out.path("roc_pr.png"), probs, labels, names, threshold=threshold,
                         title=f"{run.name}: test ROC and precision-recall")
    figs.append(out.figure("ROC and precision-recall, test", "Test results", path,
                           "Markers: the operating point of the decisions the run reports."))
    if k == 2:
        sweeps = {}
        for split, pred in (("val", run.predictions("val")), ("test", test)):
            if pred is not None and "probs" in pred:
                sw = rp.binary_sweep(pred["probs"][:, 1], pred["label"] == 1)
                sweeps |= {f"{n} ({split})": v for n, v in sw.items() if n != "thresholds"}
        path = rp.threshold_sweep_png(
            out.path("threshold_sweep.png"), np.arange(101) / 100, sweeps,
            chosen=0.5 if threshold is None else threshold,
            chosen_label="operating threshold", title=f"{run.name}: threshold sweep "
            f"(positive class {names[1]})")
        figs.append(out.figure("Threshold sweep", "Test results", path))
    if "attention" in test and test["attention"].ndim == 2:
        path = rp.attention_png(out.path("attention.png"), test["attention"], labels, names,
                                title=f"{run.name}: attention over frames (test)")
        figs.append(out.figure("Attention over frames", "Test results", path))
    return figs


def confusion_matrices(report: Mapping[str, Any], where: str = "") -> list[tuple[str, Any]]:
    """Every confusion matrix in a test report (top level and nested reports)."""
    found = []
    if "confusion_matrix" in report:
        found.append((where, report["confusion_matrix"]))
    for key, value in report.items():
        if isinstance(value, Mapping) and not key.startswith("per_"):
            found += confusion_matrices(value, f"{where}_{key}" if where else key)
    return found


def _chosen_threshold(report: Mapping[str, Any]) -> float | None:
    t = report.get("threshold")
    if isinstance(t, Mapping):
        t = t.get("chosen")
    return float(t) if isinstance(t, int | float) else None


def group_figures(run: RunFiles, out: Out) -> list[Figure]:
    """Bars per group for every `per_<group>` entry of the test report ({group: {metric}})."""
    report = (run.results or {}).get("test_report", {})
    figs = []
    for key, groups in report.items():
        if not (key.startswith("per_") and key != "per_class" and isinstance(groups, Mapping)
                and groups) or \
                not all(isinstance(g, Mapping) for g in groups.values()):
            continue
        first = next(iter(groups.values()))
        metrics = [m for m, v in first.items() if isinstance(v, float) and
                   m not in ("count", "support")]
        counts = {n: g["count"] for n, g in groups.items() if isinstance(g.get("count"), int)}
        what = key.removeprefix("per_").replace("_", " ")
        path = rp.group_bars_png(out.path(f"{key}.png"), groups, metrics,
                                 title=f"{run.name}: test scores per {what}",
                                 ylabel="score (0-1)", counts=counts)
        figs.append(out.figure(f"Performance per {what}", "Test results", path,
                               "n: test " + sample_unit(run) + " per group."))
    return figs


def comparison_values(runs: Sequence[RunFiles]) -> tuple[dict[str, dict[str, float]], dict]:
    """{metric: {model: test value}} over the runs and their baselines, and the targets."""
    values: dict[str, dict[str, float]] = {}
    targets: dict[str, float] = {}
    for run in runs:
        if run.results is None:
            continue
        model = _model_name(run) if len(runs) == 1 else f"{run.name} ({_model_name(run)})"
        for metric, v in headline(run).items():
            values.setdefault(metric, {})[model] = v
        base = run.results.get("baseline")
        if isinstance(base, Mapping):
            label = "baseline: " + str(base.get("model", "baseline")).split(" on ")[0]
            if len(runs) > 1:
                label = f"{run.name} {label}"
            for metric in list(values):
                if isinstance(base.get(metric), int | float):
                    values[metric][label] = base[metric]
        h = hook(run.system)
        targets |= h.targets
        extra = h.models(run) if h.models is not None else {}
        for name, scores in extra.items():
            label = name if len(runs) == 1 else f"{run.name} {name}"
            for metric in list(values):
                if isinstance(scores.get(metric), int | float):
                    values[metric][label] = scores[metric]
    return {m: v for m, v in values.items() if v}, targets


def _model_name(run: RunFiles) -> str:
    """config.model.name (DAS: tcn, bilstm, ...), else the hook's model_name."""
    model = run.config.get("model", {})
    name = model.get("name") if isinstance(model, Mapping) else None
    return str(name or hook(run.system).model_name or f"{run.system} model")


def comparison_figures(runs: Sequence[RunFiles], out: Out, title: str) -> list[Figure]:
    """The interactive model comparison (every headline metric) and a PNG of the first."""
    values, targets = comparison_values(runs)
    if not values:
        return []
    metric = next((m for m in values if len(values[m]) > 1), next(iter(values)))
    path = rp.model_comparison_png(out.path("model_comparison.png"), values[metric],
                                   metric=metric, target=targets.get(metric),
                                   title=f"{title}: model comparison ({metric})")
    chart = {"type": "bars", "metrics": values, "targets": targets, "selected": metric}
    return [Figure(title="Model comparison", section="Model comparison", file=out.rel(path),
                   chart=chart, caption="Choose the metric; hover a bar for its value. The "
                   "best model is green" + (", the dashed line is the system's target."
                                            if targets else "."))]


GENERIC: tuple[Callable[[RunFiles, Out], list[Figure]], ...] = (
    learning_figures, lr_memory_figures, time_figures, classification_figures, group_figures)


# ----------------------------------------------------------------------------- building
def safely(make: Callable[[], list[Figure]], what: str, section: str) -> list[Figure]:
    """A figure that fails is shown as failed (and logged); the rest of the page is made."""
    try:
        return make()
    except Exception as e:
        logging.warning("report: %s failed: %s\n%s", what, e, traceback.format_exc())
        return [Figure(title=what, section=section, error=f"{type(e).__name__}: {e}")]


def run_figures(run: RunFiles, out: Out) -> list[Figure]:
    """Generic figures, the model comparison, then the system hook's own."""
    figs: list[Figure] = []
    for make in GENERIC:
        figs += safely(lambda m=make: m(run, out), make.__name__, "Other")
    figs += safely(lambda: comparison_figures([run], out, run.name), "model comparison",
                    "Model comparison")
    h = hook(run.system)
    if h.figures is not None:
        figs += safely(lambda: h.figures(run, out), f"{run.system} figures", run.system)
    return figs


def overlay_figures(runs: Sequence[RunFiles], out: Out) -> list[Figure]:
    """Every run's time breakdown, loss and validation metrics on shared axes."""
    keys = list(dict.fromkeys(k for r in runs for k in _metric_keys(r)))
    panels = []
    for key, title, ylabel in [("train/loss", "Train loss (epoch mean)", "loss")] + \
            [(k, k, "score (0-1)") for k in keys[:3]]:
        series = {r.name: (*r.column(key), {"marker": "o", "markersize": 3})
                  for r in runs if r.column(key) is not None}
        if series:
            panels.append((title, ylabel, series))
    figs = []
    if panels:
        path = rp.learning_curves_png(out.path("learning_curves.png"), panels,
                                      title="learning curves, all runs")
        chart = {"type": "lines", "panels": [
            {"title": t, "ylabel": y, "xlabel": "epoch",
             "series": [{"name": n, "x": _list(xy[0]), "y": _list(xy[1])}
                        for n, xy in s.items()]} for t, y, s in panels]}
        figs.append(Figure(title="Learning curves, all runs", section="Training",
                           file=out.rel(path), chart=chart,
                           caption="Click a run in a legend to hide it; hover for values."))
    times = {r.name: m[0] for r in runs if (m := time_parts(r)) is not None}
    if times:
        path = rp.stacked_time_png(out.path("time_breakdown.png"), times,
                                   title="where the time went, per run")
        figs.append(out.figure("Time breakdown, all runs", "Training", path,
                               "Measured by each run's training loop."))
    return figs


def _list(a: Any) -> list[float | None]:
    """JSON-able floats (NaN -> null), rounded to keep the page small."""
    return [float(f"{v:.6g}") if math.isfinite(v) else None
            for v in np.asarray(a, np.float64).tolist()]

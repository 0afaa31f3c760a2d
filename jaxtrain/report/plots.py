"""The report's static figures (PNG, GIF), drawn with matplotlib's Agg canvas from saved data.

Each function takes plain arrays and a path, writes the picture atomically and returns the
path; nothing here reads a workdir (report.py does) or imports matplotlib at module import.
Curves that need to be computed from predictions (ROC, precision-recall, a threshold sweep)
are computed here with numpy, exactly, over every distinct score.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxtrain.files import atomic_path

COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
          "#7f7f7f", "#bcbd22", "#17becf")


# ----------------------------------------------------------------------------- canvas
def new_figure(width: float, height: float, dpi: int = 100) -> Any:
    """A matplotlib Figure on its own Agg canvas (no pyplot: no global state, no GUI)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def save(fig: Any, path: str, *, layout: bool = True) -> str:
    if layout:
        fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def rgb_array(fig: Any) -> np.ndarray:
    """The figure rendered as an (H, W, 3) uint8 array (TensorBoard images)."""
    fig.tight_layout()
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over up to `window` points (the first points average what exists)."""
    v = np.asarray(values, np.float64)
    c = np.cumsum(np.insert(v, 0, 0.0))
    n = np.arange(1, len(v) + 1)
    lo = np.maximum(n - window, 0)
    return (c[n] - c[lo]) / (n - lo)


# ----------------------------------------------------------------------------- curves
def binary_curves(scores: np.ndarray, positive: np.ndarray) -> dict[str, np.ndarray]:
    """Exact ROC and precision-recall points at every distinct score (predict positive if
    score >= threshold), thresholds descending: fpr, tpr, precision, recall, thresholds."""
    s = np.asarray(scores, np.float64).reshape(-1)
    y = np.asarray(positive, bool).reshape(-1)
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last index of each distinct score
    tp = np.cumsum(y)[last].astype(np.float64)
    fp = (last + 1) - tp
    pos, neg = max(y.sum(), 1), max((~y).sum(), 1)
    return {"thresholds": s[last], "tpr": tp / pos, "fpr": fp / neg, "recall": tp / pos,
            "precision": tp / np.maximum(tp + fp, 1)}


def auc(x: np.ndarray, y: np.ndarray) -> float:
    """Trapezoid area under (x, y) with (0, 0) prepended (ROC from the origin)."""
    return float(np.trapezoid(np.r_[0.0, y], np.r_[0.0, x]))


def roc_pr_png(path: str, probs: np.ndarray, labels: np.ndarray, class_names: Sequence[str], *,
               threshold: float | None = None, title: str) -> str:
    """ROC and precision-recall curves with the operating point of the decisions made.

    Binary (two columns): curves of the positive class (column 1), operating point at
    `threshold` (default 0.5). Three or more classes: one-vs-rest curves per class, each
    with the operating point of the argmax decision for that class.
    """
    probs = np.asarray(probs, np.float64)
    labels = np.asarray(labels).reshape(-1)
    k = probs.shape[1]
    classes = [1] if k == 2 else list(range(k))
    fig = new_figure(11, 4.6)
    roc_ax, pr_ax = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    pred = probs.argmax(-1)
    drawn = []  # (fpr, tpr, operating fpr, operating tpr, colour) for a zoomed inset
    for n, c in enumerate(classes):
        color = COLORS[n % len(COLORS)]
        truth = labels == c
        curves = binary_curves(probs[:, c], truth)
        if k == 2:
            t = 0.5 if threshold is None else threshold
            decided = probs[:, 1] >= t
            point = f"threshold {t:.2f}"
        else:
            decided = pred == c
            point = "argmax"
        tp = float(np.sum(decided & truth))
        op_tpr = tp / max(truth.sum(), 1)
        op_fpr = float(np.sum(decided & ~truth)) / max((~truth).sum(), 1)
        op_prec = tp / max(decided.sum(), 1)
        name = class_names[c] if c < len(class_names) else str(c)
        roc_ax.plot(curves["fpr"], curves["tpr"], color=color,
                    label=f"{name} (AUC {auc(curves['fpr'], curves['tpr']):.3f})")
        roc_ax.plot([op_fpr], [op_tpr], "o", color=color, markeredgecolor="black")
        drawn.append((curves["fpr"], curves["tpr"], op_fpr, op_tpr, color))
        ap = float(np.sum(np.diff(np.r_[0.0, curves["recall"]]) * curves["precision"]))
        pr_ax.plot(curves["recall"], curves["precision"], color=color,
                   label=f"{name} (AP {ap:.3f})")
        pr_ax.plot([op_tpr], [op_prec], "o", color=color, markeredgecolor="black")
    roc_ax.plot([0, 1], [0, 1], ":", color="gray", label="chance")
    if all(auc(f, t) > 0.95 for f, t, *_ in drawn):  # curves hug the corner: zoom in
        inset = roc_ax.inset_axes([0.35, 0.45, 0.5, 0.34])  # above the legend
        for f, t, of, ot, color in drawn:
            inset.plot(f, t, color=color)
            inset.plot([of], [ot], "o", color=color, markeredgecolor="black")
        inset.set(xlim=(0, 0.1), ylim=(0.8, 1.0), title="zoom: FPR 0-0.1, TPR 0.8-1")
        inset.title.set_fontsize(7)
        inset.tick_params(labelsize=6)
        inset.grid(alpha=0.3)
    roc_ax.set(xlabel="false positive rate (fraction of negatives)",
               ylabel="true positive rate (recall)",
               title="ROC, one-vs-rest" if k > 2 else "ROC, positive class",
               xlim=(-0.01, 1.01), ylim=(-0.01, 1.01))
    pr_ax.set(xlabel="recall (fraction of positives found)",
              ylabel="precision (fraction of alarms correct)", title="Precision-recall",
              xlim=(-0.01, 1.01), ylim=(-0.01, 1.01))
    from matplotlib.lines import Line2D

    marker = Line2D([], [], marker="o", linestyle="", color="white", markeredgecolor="black",
                    label=f"operating point ({point})")
    for ax in (roc_ax, pr_ax):
        handles, _ = ax.get_legend_handles_labels()
        # PR curves of rare classes run along the bottom: let matplotlib find the free corner.
        ax.legend(handles=[*handles, marker], fontsize=8, loc="best" if ax is pr_ax
                  else "lower right")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    return save(fig, path)


def threshold_sweep_png(path: str, thresholds: np.ndarray, curves: Mapping[str, np.ndarray], *,
                        chosen: float | None, chosen_label: str, title: str) -> str:
    """Scores (precision, recall, F1, IoU, ...) against the decision threshold, with the
    chosen operating threshold marked. A curve named "<score> (val)" is drawn dashed in the
    colour of "<score> (test)", so one colour is one score."""
    fig = new_figure(9, 4.4)
    ax = fig.add_subplot()
    bases = list(dict.fromkeys(name.split(" (")[0] for name in curves))
    for name, values in curves.items():
        color = COLORS[bases.index(name.split(" (")[0]) % len(COLORS)]
        ax.plot(thresholds, values, color=color, label=name,
                linestyle="--" if name.endswith("(val)") else "-")
    if chosen is not None:
        ax.axvline(chosen, color="black", linestyle="--", label=f"{chosen_label} = {chosen:.2f}")
    ax.set(xlabel="decision threshold (probability)", ylabel="score (0-1)", title=title,
           xlim=(0, 1), ylim=(-0.01, 1.01))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # off the curves
    return save(fig, path)


def binary_sweep(scores: np.ndarray, positive: np.ndarray, bins: int = 100
                 ) -> dict[str, np.ndarray]:
    """precision, recall (sensitivity), specificity and F1 at thresholds k / bins."""
    s = np.asarray(scores, np.float64).reshape(-1)
    y = np.asarray(positive, bool).reshape(-1)
    t = np.arange(bins + 1) / bins
    decided = s[None, :] >= t[:, None]
    tp = (decided & y).sum(1).astype(np.float64)
    fp = (decided & ~y).sum(1).astype(np.float64)
    fn = y.sum() - tp
    tn = (~y).sum() - fp
    precision = np.divide(tp, tp + fp, out=np.ones_like(tp), where=tp + fp > 0)
    recall = tp / max(y.sum(), 1)
    return {"thresholds": t, "precision": precision, "recall (sensitivity)": recall,
            "specificity": tn / np.maximum(tn + fp, 1),
            "F1": np.divide(2 * tp, 2 * tp + fp + fn, out=np.zeros_like(tp),
                            where=2 * tp + fp + fn > 0)}


# ----------------------------------------------------------------------------- training
def learning_curves_png(path: str, panels: Sequence[tuple[str, str, dict[str, Any]]], *,
                        title: str, xlabel: str = "epoch") -> str:
    """One panel per (title, y label, {series name: (x, y) or (x, y, style)}) side by side."""
    fig = new_figure(5.2 * len(panels), 4.2)
    draw_panels(fig, panels, xlabel=xlabel)
    fig.suptitle(title)
    return save(fig, path)


def draw_panels(fig: Any, panels: Sequence[tuple[str, str, dict[str, Any]]], *,
                xlabel: str = "epoch") -> None:
    """Line panels side by side on `fig` (see `learning_curves_png`)."""
    from matplotlib.ticker import MaxNLocator

    for i, (panel_title, ylabel, series) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs: no 1.2, 1.4, ...
        for n, (name, xy) in enumerate(series.items()):
            style = xy[2] if len(xy) > 2 else {}
            ax.plot(xy[0], xy[1], **({"color": COLORS[n % len(COLORS)], "label": name}
                                     | style))
        lo, hi = ax.get_xlim()
        if hi - lo < 2:  # one epoch so far: a readable axis around it
            ax.set_xlim((lo + hi) / 2 - 1, (lo + hi) / 2 + 1)
        ax.set(xlabel=xlabel, ylabel=ylabel, title=panel_title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")


def time_breakdown_png(path: str, seconds: Mapping[str, float], *, total: float | None,
                       title: str) -> str:
    """Where the run's wall time went: a pie of the shares and a bar chart of the seconds."""
    names = [k for k, v in seconds.items() if v > 0]
    values = np.array([seconds[k] for k in names])
    fig = new_figure(11, 4.4)
    pie, bar = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    colors = [COLORS[i % len(COLORS)] for i in range(len(names))]
    pie.pie(values, colors=colors, startangle=90, counterclock=False,
            autopct=lambda p: f"{p:.0f}%" if p >= 4 else "", pctdistance=0.75)
    pie.legend([f"{n} ({v:.1f} s)" for n, v in zip(names, values, strict=True)], fontsize=8,
               loc="center left", bbox_to_anchor=(-0.45, 0.5))
    pie.set_title("share of the measured time")
    y = np.arange(len(names))
    bar.barh(y, values, color=colors)
    bar.set_yticks(y, labels=names)
    bar.invert_yaxis()
    for i, v in enumerate(values):
        bar.text(v, i, f" {v:.1f} s", va="center", fontsize=8)
    bar.set_xlim(0, values.max() * 1.25 if len(values) else 1)
    bar.set(xlabel="wall time (s)", title="seconds per component"
            + (f" (run total {total:.0f} s)" if total else ""))
    bar.grid(axis="x", alpha=0.3)
    fig.suptitle(title)
    return save(fig, path)


def progress_gif(path: str, epochs: np.ndarray, panels: Sequence[tuple[str, dict[str, Any]]], *,
                 title: str, max_frames: int = 40) -> str:
    """An animated GIF of the learning curves drawn up to each epoch in turn (the training
    run replayed), at most `max_frames` frames; the last frame shows the whole run."""
    from matplotlib.ticker import MaxNLocator
    from PIL import Image

    epochs = np.asarray(epochs)
    ends = np.unique(np.linspace(1, len(epochs), min(max_frames, len(epochs))).astype(int))
    frames = []
    for end in ends:
        fig = new_figure(4.2 * len(panels), 4.0, dpi=80)
        for i, (ylabel, series) in enumerate(panels):
            ax = fig.add_subplot(1, len(panels), i + 1)
            for n, (name, values) in enumerate(series.items()):
                ax.plot(epochs[:end], np.asarray(values)[:end], color=COLORS[n % len(COLORS)],
                        label=name, marker="o" if len(epochs) < 30 else None, markersize=3)
                finite = np.asarray(values)[np.isfinite(values)]
                if len(finite):
                    pad = 0.05 * (finite.max() - finite.min() or 1.0)
                    ax.set_ylim(min(ax.get_ylim()[0], finite.min() - pad),
                                finite.max() + pad)
            ax.set_xlim(epochs[0] - 0.5, epochs[-1] + 0.5)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs: no 2.5, 7.5
            ax.set(xlabel="epoch", ylabel=ylabel)
            ax.grid(alpha=0.3)
            # Below the axes: a legend inside would cover the curves it names.
            ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
        fig.suptitle(f"{title}: epoch {int(epochs[end - 1])} of {int(epochs[-1])}")
        frames.append(Image.fromarray(rgb_array(fig)).convert("P", palette=Image.ADAPTIVE))
    durations = [400] * (len(frames) - 1) + [2500]  # hold the final picture
    with atomic_path(path) as tmp:
        frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:],
                       duration=durations, loop=0)
    return path


# ----------------------------------------------------------------------------- data, groups
def class_distribution_png(path: str, counts: Mapping[str, np.ndarray],
                           class_names: Sequence[str], *, title: str, unit: str) -> str:
    """Per split: counts (grouped bars) and percentages of each class (stacked bars)."""
    splits = list(counts)
    fig = new_figure(11, 4.2)
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    k = len(class_names)
    width = 0.8 / k
    x = np.arange(len(splits))
    bottom = np.zeros(len(splits))
    for c, name in enumerate(class_names):
        n = np.array([counts[s][c] for s in splits], np.float64)
        share = 100 * n / np.maximum([counts[s].sum() for s in splits], 1)
        color = COLORS[c % len(COLORS)]
        bars = left.bar(x + (c - (k - 1) / 2) * width, n, width, color=color, label=name)
        left.bar_label(bars, labels=[f"{int(v)}" for v in n], fontsize=7)
        right.bar(x, share, 0.6, bottom=bottom, color=color, label=name)
        for i, p in enumerate(share):
            if p >= 4:
                right.text(x[i], bottom[i] + p / 2, f"{p:.1f}%", ha="center", va="center",
                           fontsize=8)
        bottom += share
    left.set_xticks(x, labels=splits)
    all_counts = np.concatenate([np.asarray(v, np.float64) for v in counts.values()])
    if all_counts.min(initial=np.inf) > 0 and all_counts.max() / all_counts.min() > 20:
        left.set_yscale("log")  # rare classes stay visible beside common ones
        left.set(ylabel=f"{unit} (log scale)", title="counts")
    else:
        left.set(ylabel=unit, title="counts")
    left.margins(y=0.15)  # room for the count labels above the bars
    right.set_xticks(x, labels=splits)
    right.set(ylabel=f"% of the split's {unit}", title="percentages", ylim=(0, 100))
    right.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # one for both
    fig.suptitle(title)
    return save(fig, path)


def group_bars_png(path: str, groups: Mapping[str, Mapping[str, float]], metrics: Sequence[str],
                   *, title: str, ylabel: str, counts: Mapping[str, int] | None = None) -> str:
    """Grouped bars: one group per name (area, file, ...), one bar per metric."""
    names = list(groups)
    fig = new_figure(max(7.0, 0.9 * len(names) * max(len(metrics), 1) ** 0.5 + 3), 4.4)
    ax = fig.add_subplot()
    x = np.arange(len(names))
    width = 0.8 / max(len(metrics), 1)
    for m, metric in enumerate(metrics):
        values = np.array([groups[n].get(metric, np.nan) for n in names], np.float64)
        ax.bar(x + (m - (len(metrics) - 1) / 2) * width, np.nan_to_num(values), width,
               color=COLORS[m % len(COLORS)], label=metric)
    labels = [f"{n}\n(n={counts[n]})" if counts and n in counts else n for n in names]
    ax.set_xticks(x, labels=labels, rotation=30 if len(names) > 6 else 0,
                  ha="right" if len(names) > 6 else "center", fontsize=8)
    finite = [groups[n].get(m) for n in names for m in metrics]
    low = min([v for v in finite if v is not None and np.isfinite(v)] or [0.0])
    ax.set_ylim(max(0.0, low - 0.1), 1.02)
    ax.set(ylabel=ylabel, title=title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # clear of the bars
    return save(fig, path)


def model_comparison_png(path: str, values: Mapping[str, float], *, metric: str,
                         target: float | None, title: str) -> str:
    """Horizontal bars of one metric for every model, the best highlighted, the target line."""
    names = list(values)
    v = np.array([values[n] for n in names], np.float64)
    fig = new_figure(8, 1.2 + 0.55 * len(names))
    ax = fig.add_subplot()
    best = int(np.nanargmax(v)) if np.isfinite(v).any() else -1
    colors = ["#2ca02c" if i == best else "#9fb7d0" for i in range(len(names))]
    y = np.arange(len(names))
    ax.barh(y, v, color=colors)  # bars start at 0, left of a raised axis start
    for i, value in enumerate(v):
        ax.text(value, i, f" {value:.4f}", va="center", fontsize=9)
    ax.set_yticks(y, labels=names)
    ax.invert_yaxis()
    if target is not None:
        ax.axvline(target, color="#d62728", linestyle="--", label=f"target {target:g}")
        ax.legend(fontsize=8, loc="lower right")
    shown = np.r_[v, [] if target is None else [target]]
    hi, lo = np.nanmax(shown), np.nanmin(shown)
    # High scores (0.95 vs 0.98) differ invisibly on a 0-1 axis: start below the lowest.
    x0 = max(0.0, np.floor((lo - 0.05) * 20) / 20) if len(v) > 1 and lo > 0.5 and hi <= 1 \
        else 0.0
    ax.set_xlim(x0, x0 + (hi - x0) * 1.15 if hi > 0 else 1)
    ax.set(xlabel=f"{metric} (test)" + (f", axis starts at {x0:g}" if x0 else ""),
           title=title)
    ax.grid(axis="x", alpha=0.3)
    return save(fig, path)


def attention_png(path: str, attention: np.ndarray, labels: np.ndarray,
                  class_names: Sequence[str], *, title: str, rows: int = 24) -> str:
    """Attention over frames: a heat map of a few test clips (grouped by true class) and
    the mean attention per frame of each class."""
    a = np.asarray(attention, np.float64)
    labels = np.asarray(labels).reshape(-1)
    picked = np.concatenate([np.flatnonzero(labels == c)[:max(rows // len(class_names), 1)]
                             for c in range(len(class_names))])
    fig = new_figure(11, 4.6)
    heat, mean = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    image = heat.imshow(a[picked], aspect="auto", cmap="viridis", interpolation="nearest")
    fig.colorbar(image, ax=heat, label="attention weight")
    heat.set_yticks(range(len(picked)), labels=[class_names[labels[i]] for i in picked],
                    fontsize=7)
    heat.set(xlabel="frame index", ylabel="test clip (true class)",
             title="per clip")
    from matplotlib.ticker import MaxNLocator

    for ax in (heat, mean):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    frames = np.arange(a.shape[1])
    for c, name in enumerate(class_names):
        if np.any(labels == c):
            mean.plot(frames, a[labels == c].mean(0), color=COLORS[c % len(COLORS)],
                      marker="o", markersize=3, label=f"{name} (n={int(np.sum(labels == c))})")
    mean.axhline(1.0 / a.shape[1], color="gray", linestyle=":", label="uniform")
    mean.set(xlabel="frame index", ylabel="mean attention weight", title="mean per class")
    mean.grid(alpha=0.3)
    mean.legend(fontsize=8)
    fig.suptitle(title)
    return save(fig, path)


def importance_png(path: str, importance: Mapping[str, float], *, title: str, xlabel: str,
                   top: int = 15) -> str:
    """Horizontal bars of the `top` most important features, largest first."""
    items = sorted(importance.items(), key=lambda kv: -kv[1])[:top]
    fig = new_figure(8, 1.0 + 0.32 * len(items))
    ax = fig.add_subplot()
    y = np.arange(len(items))
    ax.barh(y, [v for _, v in items], color=COLORS[0])
    ax.set_yticks(y, labels=[k for k, _ in items], fontsize=8)
    ax.invert_yaxis()
    ax.set(xlabel=xlabel, title=title)
    ax.grid(axis="x", alpha=0.3)
    return save(fig, path)


def stacked_time_png(path: str, runs: Mapping[str, Mapping[str, float]], *, title: str) -> str:
    """One horizontal bar per run, split into its time components (seconds)."""
    names = list(runs)
    parts = list(dict.fromkeys(p for r in runs.values() for p in r))
    fig = new_figure(10, 1.4 + 0.5 * len(names))
    ax = fig.add_subplot()
    y = np.arange(len(names))
    left = np.zeros(len(names))
    for i, part in enumerate(parts):
        v = np.array([runs[n].get(part, 0.0) for n in names])
        ax.barh(y, v, left=left, color=COLORS[i % len(COLORS)], label=part)
        left += v
    for i, total in enumerate(left):
        ax.text(total, i, f" {total:.0f} s", va="center", fontsize=8)
    ax.set_yticks(y, labels=names)
    ax.invert_yaxis()
    ax.set_xlim(0, left.max() * 1.12 if len(left) and left.max() > 0 else 1)
    ax.set(xlabel="wall time (s)", title=title)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return save(fig, path)

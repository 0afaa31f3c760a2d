"""DAS pictures in the run report (`jaxtrain.report` hook): per-file decisions, and
waterfalls of a few test recordings with the windows' class probabilities over time.

Predictions hold each window's file id and class probabilities in window-index order, so
window k of a file starts at sample k * data.eval_stride (`windows.build_window_index`); file
ids index the sorted labelled files, which the splits in results.json list. The waterfall
reads the recording from the run's data directory (results.json data.path); when that
directory is gone only the probabilities are drawn.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from jaxtrain.report import Figure, Out
from jaxtrain.report import plots as rp
from jaxtrain.run_files import RunFiles
from jaxtrain.task import ReportHook
from jaxtrain.tasks.das.schema import CLASS_NAMES, LABELS_FILE, NOISE

WATERFALLS = 3  # test recordings drawn: one per true class where possible


def class_names(run: RunFiles) -> list[str]:
    names = (run.results or {}).get("data", {}).get("class_names")
    return list(names) if names else list(CLASS_NAMES)


def figures(run: RunFiles, out: Out) -> list[Figure]:
    report = (run.results or {}).get("test_report", {})
    figs = []
    if report.get("files"):
        figs.append(out.figure("Per-file decisions, test", "DAS", _files_png(run, report, out),
                               report.get("file_rule", "")))
    test = run.predictions("test")
    data = (run.results or {}).get("data", {})
    if test is not None and "file_id" in test and data.get("splits"):
        names = sorted(n for split in data["splits"].values() for n in split)
        predicted = {r["file"]: r["predicted"] for r in report.get("files", [])}
        for file_id in _picked_files(test, report, names):
            path = _waterfall_png(run, test, file_id, names[file_id],
                                  predicted.get(names[file_id], "?"), out)
            figs.append(out.figure(f"Waterfall and window probabilities: {names[file_id]}",
                                   "DAS", path, "Top: strain rate per channel over time "
                                   "(clipped at the 99th percentile of |value|); shaded: the "
                                   "labelled event. Bottom: each window's class probabilities "
                                   "at the window's centre."))
    return figs


def _picked_files(test: dict[str, np.ndarray], report: dict[str, Any], names: list[str]
                  ) -> list[int]:
    """One test file per true class (a misclassified one first, the interesting case)."""
    rows = {r["file"]: r for r in report.get("files", [])}
    ids = [int(i) for i in np.unique(test["file_id"]) if i < len(names)]
    picked = []
    for name in CLASS_NAMES:
        of_class = [i for i in ids if rows.get(names[i], {}).get("true") == name]
        wrong = [i for i in of_class if rows[names[i]]["predicted"] != name]
        if of_class:
            picked.append((wrong or of_class)[0])
    return picked[:WATERFALLS] or ids[:WATERFALLS]


def _files_png(run: RunFiles, report: dict[str, Any], out: Out) -> str:
    rows = report["files"]
    fig = rp.new_figure(9, 1.2 + 0.3 * len(rows))
    ax = fig.add_subplot()
    y = np.arange(len(rows))
    left = np.zeros(len(rows))
    for c, name in enumerate(CLASS_NAMES):
        v = np.array([r["scores"][c] for r in rows])
        ax.barh(y, v, left=left, color=rp.COLORS[c], label=f"score {name}")
        left += v
    labels = [f"{r['file'][:22]}  {r['true']} -> {r['predicted']}" for r in rows]
    ax.set_yticks(y, labels=labels, fontsize=7)
    for tick, r in zip(ax.get_yticklabels(), rows, strict=True):
        tick.set_color("#b00" if r["true"] != r["predicted"] else "black")
    ax.invert_yaxis()
    ax.set(xlabel="file score (sums to 1)", title=f"{run.name}: test files (red: wrong)",
           xlim=(0, 1))
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return rp.save(fig, out.path("das_files.png"))


def _waterfall(run: RunFiles, name: str) -> tuple[np.ndarray, list[tuple[float, float]]] | None:
    """The recording (channels, samples) and its labelled event spans in seconds, or None."""
    from jaxtrain import files
    from jaxtrain.tasks.das.reader import open_recording

    directory = (run.results or {}).get("data", {}).get("path", "")
    path = os.path.join(directory, name)
    if not os.path.exists(path):
        return None
    rec = open_recording(path, run.config.get("data", {}).get("layout", "jaxtrain"))
    x = rec.read(0, rec.num_samples, check_finite=False)
    rec.close()
    labels = files.read_json(os.path.join(directory, LABELS_FILE), default={})
    entry = labels.get(name, {})
    events = entry.get("events", []) if isinstance(entry, dict) else []
    spans = [(float(e.get("first_arrival_s", e.get("t0", 0.0))),
              float(e.get("end_s", e.get("t0", 0.0) + 10.0))) for e in events]
    return x, spans


def _waterfall_png(run: RunFiles, test: dict[str, np.ndarray], file_id: int, name: str,
                   predicted: str, out: Out) -> str:
    d = run.config.get("data", {})
    fs, window, stride = float(d["sampling_rate"]), int(d["window"]), int(d["eval_stride"])
    mask = test["file_id"] == file_id
    probs = test["probs"][mask]
    centres = (np.arange(len(probs)) * stride + window / 2) / fs
    wf = _waterfall(run, name)
    fig = rp.new_figure(10, 6.4 if wf is not None else 3.2)
    # Two columns, the narrow one for the colour bar, so both time axes line up.
    grid = fig.add_gridspec(2 if wf is not None else 1, 2, width_ratios=[60, 1])
    ax = fig.add_subplot(grid[-1, 0])
    # The file's label: the most common event class among its windows, else noise.
    events = test["label"][mask][test["label"][mask] != NOISE]
    truth = CLASS_NAMES[int(np.bincount(events).argmax()) if len(events) else NOISE]
    verdict = f"true: {truth}, file predicted: {predicted}"
    title = f"{name}: window class probabilities ({verdict})"
    if wf is not None:
        x, spans = wf
        top = fig.add_subplot(grid[0, 0], sharex=ax)
        clip = float(np.percentile(np.abs(x), 99)) or 1.0
        image = top.imshow(x, aspect="auto", cmap="seismic", vmin=-clip, vmax=clip,
                           extent=(0, x.shape[1] / fs, x.shape[0] - 0.5, -0.5),
                           interpolation="nearest")
        fig.colorbar(image, cax=fig.add_subplot(grid[0, 1]), label="strain rate (file units)")
        top.set(ylabel="channel", title=f"{name}: waterfall ({verdict})")
        top.tick_params(labelbottom=False)
        title = None
        for a, b in spans:
            top.axvspan(a, b, color="gold", alpha=0.3)
            ax.axvspan(a, b, color="gold", alpha=0.2, label="labelled event")
    for c, cname in enumerate(CLASS_NAMES):
        ax.plot(centres, probs[:, c], marker="o", markersize=3, color=rp.COLORS[c],
                label=f"p({cname})")
    ax.set(xlabel="time from file start (s)", ylabel="window probability", ylim=(-0.02, 1.02),
           xlim=(0, max(centres.max() + window / 2 / fs, 1e-9)) if wf is None else None)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    ax.legend(unique.values(), unique.keys(), fontsize=8, ncol=4, loc="upper center",
              bbox_to_anchor=(0.5, -0.22))
    return rp.save(fig, out.path(f"das_waterfall_{file_id}.png"))


REPORT = ReportHook(
    unit="windows",
    curves=("val/file_accuracy", "val/file_macro_f1", "val/accuracy", "val/macro_f1"),
    class_names=class_names, figures=figures)

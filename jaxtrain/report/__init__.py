"""The run report (`jaxtrain report`): `report.html` in the workdir, its figures in report/.

    python -m jaxtrain.report --workdir=RUN                  # RUN/report.html
    python -m jaxtrain.report --workdir=RUN1 --workdir=RUN2  # one page comparing them
                                                             # (--out; the runs' own pages
                                                             # are left as they are)

Made from the saved files only (`run_files`: config.json, history.csv, results.json,
predictions/{val,test}.npz, TensorBoard events): regenerating a report never retrains or
re-evaluates, and a running workdir gets a page of what exists so far. The page is one
self-contained HTML file (inline CSS and script, no network URL); its pictures are PNG (and
one GIF) files in `report/`, for papers, referenced relatively.

Figures come from two places:
- generic ones (`generic_figures`), drawn for any system from what its files hold: learning
  curves, learning rate and memory, the time breakdown, class distribution, confusion
  matrices, ROC/precision-recall with the operating point and a threshold sweep (any
  `probs`/`label` predictions), attention over frames (an `attention` (N, T) prediction),
  per-group bars (any `per_<group>` entry of the test report), model comparison;
- the system's own, declared by its `System.report` (`task.ReportHook`, conventionally built
  in `jaxtrain/tasks/<name>/report.py`; every field optional): `figures(run, out) ->
  list[Figure]`, `class_names(run)`, `models(run) -> {model: {metric: test value}}` (more
  bars for the model comparison), `targets` ({metric: target} drawn on it), `unit` (what one
  sample is), `curves` (the validation metrics to draw over epochs) and `model_name` (the
  run's bar).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from absl import logging

from jaxtrain import files
from jaxtrain.report import page as pages
from jaxtrain.report.figures import (
    FIGURES_DIR,
    REPORT_FILE,
    Figure,
    Out,
    comparison_figures,
    confusion_matrices,
    finite,
    headline,
    hook,
    overlay_figures,
    run_figures,
    safely,
    step_series,
)
from jaxtrain.run_files import RunFiles, load_run

__all__ = ["FIGURES_DIR", "REPORT_FILE", "Figure", "Out", "build_comparison", "build_report",
           "confusion_matrices", "finite", "headline", "hook", "step_series",
           "write_report_safely"]


def build_report(workdir: str) -> str:
    """Writes `workdir/report.html` (and its figures in workdir/report/); returns its path."""
    run = load_run(workdir)
    out = Out(run.workdir)
    figs = run_figures(run, out)
    page = pages.run_page(run, figs)
    path = os.path.join(run.workdir, REPORT_FILE)
    with files.atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(page)
    return path


def build_comparison(workdirs: Sequence[str | RunFiles], path: str) -> str:
    """One page comparing several runs (workdirs, or runs already loaded) side by side;
    figures in `<page stem>_files/`."""
    runs = [w if isinstance(w, RunFiles) else load_run(w) for w in workdirs]
    page_dir = os.path.dirname(os.path.abspath(path))
    out = Out(page_dir, os.path.splitext(os.path.basename(path))[0] + "_files")
    figs = safely(lambda: comparison_figures(runs, out, "runs"), "model comparison",
                  "Model comparison")
    figs += safely(lambda: overlay_figures(runs, out), "overlaid curves", "Training")
    page = pages.comparison_page(runs, figs, page_dir)
    with files.atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(page)
    return path


def write_report_safely(workdir: str) -> str | None:
    """`build_report` for the end of a training run: a failure is a warning, not a failed run."""
    try:
        path = build_report(workdir)
        logging.info("report: %s", path)
        return path
    except Exception as e:
        logging.warning("report: could not write %s/%s: %s", workdir, REPORT_FILE, e)
        return None

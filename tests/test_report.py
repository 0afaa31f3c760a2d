"""The run report (jaxtrain.report): pages built from a workdir's saved files only.

The workdirs are written by the tests (config.json, history.csv, results.json, predictions,
TensorBoard events) in the layout a run leaves, so the report is checked without training.
"""

from __future__ import annotations

import html.parser
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from jaxtrain import epoch_images, files, report, run_files
from jaxtrain.evaluate import save_predictions

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIRE_CLASSES = ["normal", "warning", "fire"]
AREAS = ["kitchen", "office"]


def _probs(rng: np.random.Generator, labels: np.ndarray, k: int) -> np.ndarray:
    logits = rng.normal(size=(len(labels), k)) + 2.5 * np.eye(k)[labels]
    e = np.exp(logits)
    return (e / e.sum(1, keepdims=True)).astype(np.float32)


def write_fire_workdir(path: str, *, seed: int, epochs: int = 3, finished: bool = True,
                       lr: float = 1e-3) -> str:
    """A fire-like workdir: what a 3-epoch run leaves (or, unfinished, what exists so far)."""
    from tensorboardX import SummaryWriter

    rng = np.random.default_rng(seed)
    os.makedirs(path, exist_ok=True)
    files.write_json_atomic(os.path.join(path, "config.json"), {
        "task": "fire", "train": {"epochs": epochs, "batch_size": 8},
        "optim": {"learning_rate": lr}, "model": {"d_model": 16}})
    rows, per_epoch = [], 10
    tb = SummaryWriter(logdir=os.path.join(path, "tb"))
    for e in range(1, epochs + 1):
        for s in range((e - 1) * per_epoch + 1, e * per_epoch):
            tb.add_scalar("train/loss", 1.0 / s + 0.05 * rng.random(), s)
            tb.add_scalar("memory/host_peak_mb", 900.0 + s, s)
        rows.append({"epoch": e, "step": e * per_epoch, "train/loss": 1.0 / e,
                     "train/accuracy": 0.7 + 0.05 * e, "train/learning_rate": lr / e,
                     "val/accuracy": 0.8 + 0.04 * e, "val/macro_f1": 0.6 + 0.05 * e,
                     "lr_scale": 1.0, "memory/host_peak_mb": 950.0 + e})
        tb.add_scalar("train/loss", rows[-1]["train/loss"], e * per_epoch)  # an epoch mean
    tb.close()
    with open(os.path.join(path, "history.csv"), "w") as f:
        f.write(",".join(rows[0]) + "\n")
        f.writelines(",".join(str(v) for v in r.values()) + "\n" for r in rows)
    if not finished:
        return path
    outputs = {}
    for split, n in (("val", 90), ("test", 120)):
        labels = rng.choice(3, size=n, p=[0.7, 0.2, 0.1]).astype(np.int32)
        outputs[split] = {"probs": _probs(rng, labels, 3), "label": labels,
                          "area": rng.integers(0, 2, n).astype(np.int32),
                          "risk": rng.random(n).astype(np.float32),
                          "risk_target": rng.random(n).astype(np.float32)}
        save_predictions(path, split, outputs[split])
    from jaxtrain import metrics

    t = outputs["test"]
    cls = metrics.classification_report(t["label"], t["probs"].argmax(-1), 3,
                                         class_names=FIRE_CLASSES, probs=t["probs"])
    per_area = metrics.per_group_report(t["label"], t["probs"].argmax(-1), t["area"], 2, 3,
                                        group_names=AREAS)
    test = {"accuracy": cls["accuracy"], "macro_f1": cls["macro_f1"],
            "fire_recall": cls["per_class"]["fire"]["recall"]}
    files.write_json_atomic(os.path.join(path, "results.json"), {
        "test": test, "test_report": {**cls, "per_area": per_area},
        "headline": ["accuracy", "macro_f1", "fire_recall"], "best_step": 30,
        "epochs_trained": epochs, "stopped_early": False,
        "data": {"class_names": FIRE_CLASSES, "train_label_counts": [300, 60, 40]},
        "baseline": {"model": "logistic regression on summary features", "accuracy": 0.75,
                     "macro_f1": 0.5, "report": {"confusion_matrix": cls["confusion_matrix"]}},
        "ensemble": {"chosen": "soft_vote",
                     "summary": {"random_forest": {"accuracy": 0.7, "macro_f1": 0.55},
                                 "soft_vote": {"accuracy": 0.8, "macro_f1": 0.6}},
                     "models": {"soft_vote": {"test_report": {
                         "confusion_matrix": cls["confusion_matrix"]}}}},
        "time_breakdown": {"input_wait_s": 1.5, "compile_s": 4.0, "train_steps_s": 20.0,
                           "evaluation_s": 3.0, "checkpoint_s": 0.5, "total_s": 31.0}})
    return path


class _Links(html.parser.HTMLParser):
    """Every src/href of the page, the headline cells, and whether it parsed to the end."""

    def __init__(self):
        super().__init__()
        self.refs: list[str] = []
        self.headline: list[dict[str, str]] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        self.refs += [a[k] for k in ("src", "href") if a.get(k)]
        if "headline" in (a.get("class") or "").split():
            self.headline.append(a)


def _check_page(page: str) -> _Links:
    """Parses the page; every referenced file exists; nothing points at the network."""
    with open(page) as f:
        text = f.read()
    parser = _Links()
    parser.feed(text)
    parser.close()
    assert parser.tags[0] == "html" and "script" in parser.tags
    assert parser.refs, "the page references no picture"
    base = os.path.dirname(page)
    for ref in parser.refs:
        assert not re.match(r"^[a-z][a-z0-9+.-]*:", ref, re.I), f"absolute/network URL {ref}"
        assert os.path.isfile(os.path.join(base, ref)), f"missing {ref}"
    # No external resources at all: no <link>, no script src, no CSS url()/@import.
    assert "<link" not in text and "url(" not in text and "@import" not in text
    assert not re.search(r"<script[^>]*\bsrc=", text)
    return parser


@pytest.fixture(scope="module")
def fire_runs(tmp_path_factory) -> list[str]:
    root = tmp_path_factory.mktemp("report")
    return [write_fire_workdir(str(root / "fire_a"), seed=0),
            write_fire_workdir(str(root / "fire_b"), seed=1, lr=3e-3)]


def test_report_of_a_finished_run(fire_runs):
    page = report.build_report(fire_runs[0])
    assert page == os.path.join(fire_runs[0], "report.html")
    parser = _check_page(page)
    results = files.read_json(os.path.join(fire_runs[0], "results.json"))
    # Headline numbers are the results.json values, exactly and in the system's order.
    shown = {a["data-metric"]: float(a["data-value"]) for a in parser.headline}
    assert list(shown) == results["headline"]
    assert shown == {k: results["test"][k] for k in results["headline"]}
    with open(page) as f:
        text = f.read()
    assert "could not be drawn" not in text
    pictures = set(os.listdir(os.path.join(fire_runs[0], report.FIGURES_DIR)))
    # The generic figures, fire's own (hook), and the interactive charts' data.
    assert {"learning_curves.png", "training_progress.gif", "lr_memory.png",
            "time_breakdown.png", "class_distribution.png", "confusion.png",
            "confusion_baseline.png", "roc_pr.png", "per_area.png", "model_comparison.png",
            "confusion_ensemble.png", "risk.png"} <= pictures
    charts = json.loads(re.search(r"<script id='chart-data' type='application/json'>(.*?)"
                                  r"</script>", text, re.S).group(1))
    assert {c["type"] for c in charts} == {"lines", "bars"}
    bars = next(c for c in charts if c["type"] == "bars")
    assert bars["metrics"]["accuracy"]["transformer"] == results["test"]["accuracy"]
    assert bars["metrics"]["accuracy"]["ensemble soft_vote (chosen)"] == 0.8
    assert bars["targets"] == {"accuracy": 0.94}


def test_report_of_a_running_run(tmp_path):
    """No results.json or predictions yet: the page shows the epochs done so far."""
    workdir = write_fire_workdir(str(tmp_path / "running"), seed=2, finished=False)
    run = run_files.load_run(workdir)
    assert not run.finished and len(run.history) == 3
    # Per-step values without the epoch means older runs wrote into the same tag.
    steps, _ = report.step_series(run, "train/loss")
    assert 10 not in steps and 11 in steps
    assert report.step_series(run, "train/accuracy") is None
    parser = _check_page(report.build_report(workdir))
    shown = {a["data-metric"]: float(a["data-value"]) for a in parser.headline}
    assert shown["val/accuracy"] == pytest.approx(0.92)
    with open(os.path.join(workdir, "report.html")) as f:
        assert "running: 3 of 3 epochs done" in f.read()


def test_binary_predictions_get_roc_sweep_and_attention(tmp_path):
    """A system without a report hook (here a made-up one) still gets the generic figures
    from `probs`/`label`, and attention over frames from an `attention` prediction."""
    rng = np.random.default_rng(3)
    workdir = str(tmp_path / "binary")
    labels = rng.integers(0, 2, 64).astype(np.int32)
    attention = rng.dirichlet(np.ones(20), size=64).astype(np.float32)
    for split in ("val", "test"):
        save_predictions(workdir, split, {"probs": _probs(rng, labels, 2), "label": labels,
                                          "attention": attention})
    files.write_json_atomic(os.path.join(workdir, "config.json"), {"task": "no_such_system"})
    files.write_json_atomic(os.path.join(workdir, "results.json"), {
        "test": {"auc": 0.9}, "headline": ["auc"], "test_report": {"threshold": 0.3}})
    _check_page(report.build_report(workdir))
    pictures = set(os.listdir(os.path.join(workdir, report.FIGURES_DIR)))
    assert {"roc_pr.png", "threshold_sweep.png", "attention.png"} <= pictures


def test_comparison_of_two_runs_from_the_command_line(fire_runs, tmp_path):
    out = str(tmp_path / "compare.html")
    pages = [os.path.join(w, "report.html") for w in fire_runs]
    missing = [p for p in pages if not os.path.exists(p)]  # other tests may have made some
    done = subprocess.run([sys.executable, "-m", "jaxtrain.report", f"--workdir={fire_runs[0]}",
                           f"--workdir={fire_runs[1]}", f"--out={out}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == [*missing, out]  # the links need a page for every run
    assert "different systems" not in done.stderr
    written = [os.path.getmtime(p) for p in pages]
    again = subprocess.run(done.args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.stdout.split() == [out]  # existing pages are left as they are
    assert [os.path.getmtime(p) for p in pages] == written
    parser = _check_page(out)
    with open(out) as f:
        text = f.read()
    # Both runs' headline numbers, side by side, and the config key that differs.
    for w in fire_runs:
        results = files.read_json(os.path.join(w, "results.json"))
        shown = {a["data-metric"]: float(a["data-value"]) for a in parser.headline
                 if a["data-run"] == os.path.basename(w)}
        assert shown == {k: results["test"][k] for k in results["headline"]}
    assert "optim.learning_rate" in text and "Learning curves, all runs" in text
    assert "Time breakdown, all runs" in text


def test_comparing_runs_of_different_systems_warns(fire_runs, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    files.write_json_atomic(str(other / "config.json"), {"task": "no_such_system"})
    files.write_json_atomic(str(other / "results.json"), {"test": {"auc": 0.9},
                                                          "headline": ["auc"]})
    pages = [os.path.join(w, "report.html") for w in (fire_runs[0], str(other))]
    before = [os.path.getmtime(p) if os.path.exists(p) else None for p in pages]
    done = subprocess.run([sys.executable, "-m", "jaxtrain.report", f"--workdir={fire_runs[0]}",
                           f"--workdir={other}", f"--out={tmp_path / 'c.html'}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "different systems (fire, no_such_system)" in done.stderr
    for page, mtime in zip(pages, before, strict=True):  # an existing page is not rewritten
        assert os.path.getmtime(page) == mtime if mtime is not None else os.path.isfile(page)


def test_no_workdir_is_a_one_line_error(tmp_path):
    done = subprocess.run([sys.executable, "-m", "jaxtrain.report",
                           f"--workdir={tmp_path / 'nothing'}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "not a jaxtrain workdir" in done.stderr and "Traceback" not in done.stderr


def test_epoch_images_for_tensorboard(tmp_path):
    from jaxtrain import metrics, writers

    labels = np.array([0, 1, 2, 2, 1, 0])
    val_report = {"window": metrics.classification_report(labels, labels[::-1], 3,
                                                          class_names=FIRE_CLASSES)}
    history = [{"epoch": 1, "train/learning_rate": 1e-3, "memory/host_peak_mb": 900.0,
                "time/train_steps_s": 3.0}, {"epoch": 2, "train/learning_rate": 5e-4,
                                             "memory/host_peak_mb": 950.0,
                                             "time/train_steps_s": 2.5}]
    images = epoch_images.epoch_images(20, val_report, history)
    assert set(images) == {"images/val_confusion_window", "images/lr_memory_time"}
    for image in images.values():
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert image.min() < 128 < image.max()  # something is drawn
    writer = writers.MetricWriter(str(tmp_path))
    writer.images(20, images)
    writer.close()
    (events,) = os.listdir(tmp_path / "tb")
    data = (tmp_path / "tb" / events).read_bytes()
    assert b"images/val_confusion_window" in data and data.count(b"\x89PNG") == 2


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_page_loads_in_chromium_without_console_errors(fire_runs, tmp_path):
    page = os.path.join(fire_runs[0], "report.html")
    if not os.path.exists(page):
        report.build_report(fire_runs[0])
    done = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr",
         "--v=0", "--virtual-time-budget=3000", "--dump-dom", f"file://{page}"],
        capture_output=True, text=True, timeout=120)
    console = [line for line in done.stderr.splitlines() if "CONSOLE" in line]
    assert not console, console
    # The inline script ran: the interactive charts are SVG in the rendered page.
    assert done.stdout.count("<svg") >= 3, done.stderr[-2000:]


@pytest.mark.parametrize("system", ["fire", "das", "debris", "glaucoma", "violence"])
def test_system_hooks_name_real_metrics(system):
    """A system's report hook draws its targets on headline metrics the system reports: a
    renamed metric would otherwise silently drop the target line."""
    import importlib

    hook = report.hook(system)
    assert hook.curves, system
    headline = importlib.import_module(f"jaxtrain.tasks.{system}.task").HEADLINE
    assert set(hook.targets) <= set(headline), system
    assert all(c.startswith("val/") for c in hook.curves), (system, hook.curves)

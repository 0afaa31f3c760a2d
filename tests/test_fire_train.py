"""End to end on a tiny fire config: learning, exact resume, finished runs, prediction on a
new log, CLI errors."""

import csv
import json
import os
import signal
import subprocess
import sys

import h5py
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jaxtrain import files, main
from jaxtrain.evaluate import load_predictions, rescore
from jaxtrain.predict import predict
from jaxtrain.run_files import load_trained as load_run
from jaxtrain.tasks.fire.normalize import normalize
from jaxtrain.tasks.fire.synthetic import generate
from jaxtrain.tasks.fire.task import build, window_source
from tests.fire_test_config import ROOT, tiny_fire_config


def _final_state(workdir: str) -> dict:
    ckpt = os.path.join(workdir, "checkpoints")
    return _state_at(workdir, max(int(d) for d in os.listdir(ckpt) if d.isdigit()))


def _state_at(workdir: str, step: int) -> dict:
    path = os.path.join(workdir, "checkpoints", str(step), "state")
    return ocp.StandardCheckpointer().restore(path)


def _averaged_config(cache_dir: str, **train):
    """This module's runs keep a moving average of the weights, so resume and predict are
    tested with it too."""
    config = tiny_fire_config(cache_dir, **train)
    config.optim.ema_decay = 0.95
    return config


def _history(workdir: str) -> list[dict]:
    with open(os.path.join(workdir, "history.csv")) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, cache_dir):
    workdir = str(tmp_path_factory.mktemp("fire_full"))
    config = _averaged_config(cache_dir, epochs=2, report=True)
    results = main.run(config, workdir)
    return config, workdir, results


def test_tiny_run_learns_and_writes_outputs(finished_run):
    _, workdir, results = finished_run
    history = _history(workdir)
    assert len(history) == 2
    losses = [float(r["train/loss"]) for r in history]
    assert losses[-1] < losses[0]
    test = results["test"]
    counts = np.array(results["data"]["train_label_counts"])
    majority = counts.max() / counts.sum()
    assert test["accuracy"] > majority  # beats always answering "normal"
    assert test["fire_recall"] > 0.5
    with open(os.path.join(workdir, "results.json")) as f:
        on_disk = json.load(f)
    report = on_disk["test_report"]
    assert set(report["per_class"]) == {"normal", "warning", "fire"}
    assert np.array(report["confusion_matrix"]).shape == (3, 3)
    assert set(report["per_area"]) == {"kitchen", "warehouse", "office", "server_room",
                                       "loading_dock"}
    assert 0.0 <= on_disk["baseline"]["macro_f1"] <= 1.0
    assert on_disk["headline"] == ["accuracy", "macro_f1", "fire_recall"]
    # auto: the tiny log lives in device memory, so windows are normalized in the step
    assert on_disk["setup"]["train_read"] == "device"
    assert on_disk["setup"]["data.normalize_in"] == "step"
    assert os.listdir(os.path.join(workdir, "tb"))
    with open(os.path.join(workdir, "config.json")) as f:
        assert json.load(f)["task"] == "fire"
    # The run's report page (jaxtrain.report; the page itself: tests/test_report.py).
    with open(os.path.join(workdir, "report.html")) as f:
        assert "could not be drawn" not in f.read()
    assert "roc_pr.png" in os.listdir(os.path.join(workdir, "report"))


def test_saved_predictions_rescore_to_the_results(finished_run):
    """Evaluators read only saved predictions: a finished run is re-scored without
    retraining and gives exactly results.json's test metrics."""
    _, workdir, results = finished_run
    test = load_predictions(workdir, "test")
    assert len(test["label"]) == results["data"]["windows"]["test"]
    assert test["probs"].shape == (len(test["label"]), 3)
    assert sorted(results["predictions"]) == ["test", "val"]
    assert rescore(workdir)["test"] == results["test"]


def test_rescoring_a_directory_that_is_no_run_is_one_line(tmp_path):
    for args in ([f"--workdir={tmp_path}"], []):
        r = subprocess.run([sys.executable, "-m", "jaxtrain.evaluate", *args], cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 2
        assert r.stderr.strip().splitlines()[-1].startswith("jaxtrain: error: ")
        assert "Traceback" not in r.stderr


def test_finished_run_is_not_retrained(finished_run):
    config, workdir, results = finished_run
    before = os.path.getmtime(os.path.join(workdir, "results.json"))
    again = main.run(config, workdir)
    assert again["already_finished"]
    assert again["test"] == results["test"]
    assert os.path.getmtime(os.path.join(workdir, "results.json")) == before


def test_a_finished_run_trains_further_when_asked(finished_run, tmp_path):
    """--train_further: a larger train.epochs trains on from the last checkpoint; the old
    results are kept and recorded; without the flag, or without more epochs, nothing moves."""
    import shutil

    from jaxtrain.workdir import WorkdirError

    config, original, results = finished_run
    workdir = str(tmp_path / "run")
    shutil.copytree(original, workdir)
    more = config.copy_and_resolve_references()
    more.train.epochs = 3
    assert main.run(more, workdir)["already_finished"]  # not without the flag
    with pytest.raises(WorkdirError, match=r"train\.epochs=2 is not more than the 2 epochs"):
        main.run(config, workdir, train_further=True)
    further = main.run(more, workdir, train_further=True)
    assert further["epochs_trained"] == 3 and "already_finished" not in further
    assert further["final_step"] == results["final_step"] * 3 // 2
    [record] = further["trained_further"]
    assert record["from_epochs"] == 2 and record["to_epochs"] == 3
    assert files.read_json(os.path.join(workdir, record["previous_results"])) == results
    history = _history(workdir)
    assert [int(row["epoch"]) for row in history] == [1, 2, 3]
    assert history[:2] == _history(original)  # the epochs trained before stay as they were
    assert files.read_json(os.path.join(workdir, "config.json"))["train"]["epochs"] == 2


def test_resume_after_sigterm_matches_uninterrupted(finished_run, tmp_path, cache_dir):
    """Stop mid-epoch with SIGTERM, resume: same params and history as one straight run."""
    config, straight, _ = finished_run
    resumed = str(tmp_path / "resumed")
    config = _averaged_config(cache_dir, epochs=2)

    def stop_at(step):
        if step == 70:  # mid-way through epoch 2 (49 steps per epoch)
            os.kill(os.getpid(), signal.SIGTERM)

    from jaxtrain.train import Interrupted

    with pytest.raises(Interrupted):
        main.run(config, resumed, on_step=stop_at)
    assert not os.path.exists(os.path.join(resumed, "results.json"))
    main.run(config, resumed)
    final, straight_final = _final_state(resumed), _final_state(straight)
    for part in ("params", "ema"):  # the weights and their moving average
        for a, b in zip(jax.tree.leaves(final[part]), jax.tree.leaves(straight_final[part]),
                        strict=True):
            np.testing.assert_array_equal(a, b)
    h1, h2 = _history(resumed), _history(straight)
    for r1, r2 in zip(h1, h2, strict=True):
        assert r1["val/macro_f1"] == r2["val/macro_f1"]
        # train means are float32 sums on device, split at the interruption: equal to rounding
        assert float(r1["train/loss"]) == pytest.approx(float(r2["train/loss"]), rel=1e-6)


def _cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "jaxtrain.main", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_cli_rejects_unknown_config_key(tmp_path):
    r = _cli("--config=configs/fire.py", f"--workdir={tmp_path}", "--config.train.bach_size=4")
    assert r.returncode != 0
    assert "bach_size" in r.stderr and "batch_size" in r.stderr


def test_cli_missing_data_file(tmp_path):
    r = _cli("--config=configs/fire.py", f"--workdir={tmp_path / 'w'}",
             "--config.data.path=/nonexistent/fire.h5")
    assert r.returncode == 2
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("jaxtrain: error:") and "/nonexistent/fire.h5" in last


def test_cli_unwritable_workdir(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    r = _cli("--config=configs/fire.py", f"--workdir={blocker / 'run'}")
    assert r.returncode == 2
    assert "not writable" in r.stderr and str(blocker) in r.stderr


def test_corrupt_data_file_is_reported(tmp_path):
    bad = tmp_path / "fire.h5"
    bad.write_text("this is not HDF5")
    r = _cli("--config=configs/fire.py", f"--workdir={tmp_path / 'w'}",
             f"--config.data.path={bad}")
    assert r.returncode == 2
    assert str(bad) in r.stderr.strip().splitlines()[-1]


def test_early_stopping_and_reduce_on_plateau(tmp_path, cache_dir):
    config = tiny_fire_config(cache_dir, epochs=5)
    config.data.train_stride = 32  # 13 steps per epoch: this test needs epochs, not learning
    config.early_stopping.patience = 2
    config.early_stopping.min_delta = 10.0  # nothing counts as an improvement after epoch 1
    config.reduce_on_plateau.enabled = True
    config.reduce_on_plateau.patience = 1
    results = main.run(config, str(tmp_path))
    history = _history(str(tmp_path))
    assert results["stopped_early"] and len(history) == 3
    assert [float(r["lr_scale"]) for r in history] == [1.0, 1.0, 0.5]
    best = {int(r["step"]): float(r["val/macro_f1"]) for r in history}
    assert best[results["best_step"]] == max(best.values())  # tested: the best, not the last


def test_normalize_a_batch_as_each_window():
    """fire's batch_transform normalizes whole batches; each row must equal its own window."""
    x = (np.random.default_rng(0).normal(size=(5, 60, 6)) * 10).astype(np.float32)
    center, scale = np.ones(6, np.float32), np.full(6, 2.0, np.float32)
    batch = normalize(x, center, scale, "robust", (5, 15))
    assert batch.shape == (5, 60, 18) and batch.dtype == np.float32
    for i in range(5):
        np.testing.assert_array_equal(batch[i], normalize(x[i], center, scale, "robust", (5, 15)))
    z = (x[0] - center) / scale
    np.testing.assert_allclose(batch[0, 20, 6:12], np.arcsinh(z[20] - z[15]), rtol=1e-6)
    assert not batch[0, :5, 6:12].any()  # no reading 5 minutes back yet
    inside_step = jax.jit(lambda v: normalize(v, center, scale, "robust", (5, 15)))(x)
    np.testing.assert_allclose(np.asarray(inside_step), batch, rtol=1e-5, atol=1e-5)


def test_normalizing_in_the_step_equals_on_the_host(cache_dir, tmp_path):
    """data.normalize_in=step (auto on GPU) feeds raw windows and normalizes in the jitted
    step: same loss and predictions as normalizing on the host."""
    out = {}
    for where in ("host", "step"):
        c = tiny_fire_config(cache_dir)
        c.data.normalize_in = where
        c.data.on_device = "never"  # resident data are always normalized in the step
        c.model.dropout = 0.0
        task = build(c, str(tmp_path))
        raw = task.train_source.read_batch(np.arange(16))
        batch = task.batch_transform(raw)
        assert (batch["x"].shape[-1] == raw["x"].shape[-1]) == (where == "step")
        params, model_state = task.init_fn(jax.random.key(0))
        loss = jax.jit(task.loss_fn)(params, model_state, batch, jax.random.key(1))[0]
        probs = jax.jit(task.predict_fn)(params, model_state, batch)["probs"]
        out[where] = (float(loss), np.asarray(probs))
    assert out["step"][0] == pytest.approx(out["host"][0], rel=1e-5)
    np.testing.assert_allclose(out["step"][1], out["host"][1], atol=1e-5)


def _predicted(csv_path) -> list[dict]:
    with open(csv_path) as f:
        return list(csv.DictReader(f))


def test_predict_a_new_log(finished_run, tmp_path):
    """Every window of every area at data.eval_stride, scaled as in training, to a CSV."""
    config, workdir, _ = finished_run
    log = tmp_path / "new.h5"
    generate(log, samples_per_area=300, num_areas=2, seed=11)  # kitchen, warehouse
    out = tmp_path / "out" / "predictions.csv"
    summary = predict(workdir, str(log), str(out))
    ends = list(range(config.data.seq_len - 1, 300, config.data.eval_stride))
    assert summary["windows"] == 2 * len(ends) and summary["areas"] == 2
    assert sum(summary["predictions"].values()) == summary["windows"]
    rows = _predicted(out)
    assert list(rows[0]) == ["area", "row", "end_timestamp", "prediction", "p_normal",
                             "p_warning", "p_fire", "risk"]
    assert [r["area"] for r in rows] == ["kitchen"] * len(ends) + ["warehouse"] * len(ends)
    assert [int(r["row"]) for r in rows[:len(ends)]] == ends
    assert int(rows[1]["end_timestamp"]) - int(rows[0]["end_timestamp"]) == \
        60 * config.data.eval_stride
    for r in rows:
        p = [float(r[f"p_{c}"]) for c in ("normal", "warning", "fire")]
        assert sum(p) == pytest.approx(1.0, abs=1e-4)
        assert r["prediction"] == ("normal", "warning", "fire")[int(np.argmax(p))]
        assert 0.0 <= float(r["risk"]) <= 1.0


def test_predict_matches_the_trained_task(finished_run, tmp_path):
    """On the training log, predict agrees with the run's own Task (its normalization and
    predict_fn); a log of one area (the run's third) gives that area's rows, so areas are
    matched by name, not position."""
    _, workdir, results = finished_run
    path = results["data"]["path"]
    rows = _predicted(predict(workdir, path, str(tmp_path / "all.csv"))["output"])[::7]
    config, variables, _ = load_run(workdir)
    assert config.optim.ema_decay > 0  # predict reads the averaged weights, not the last
    best = _state_at(workdir, results["best_step"])
    for a, b in zip(jax.tree.leaves(variables["params"]), jax.tree.leaves(best["ema"]["params"]),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    task = build(config, str(tmp_path))
    areas = ["kitchen", "warehouse", "office", "server_room", "loading_dock"]
    windows = np.array([(areas.index(r["area"]), int(r["row"])) for r in rows])
    source = window_source(path, areas, windows, config.data.seq_len, 1.0)
    batch = task.batch_transform(source.read_batch(np.arange(len(windows))))
    out = jax.jit(task.predict_fn)(variables["params"], {}, batch)
    np.testing.assert_allclose([[float(r[f"p_{c}"]) for c in ("normal", "warning", "fire")]
                                for r in rows], out["probs"], atol=2e-5)
    np.testing.assert_allclose([float(r["risk"]) for r in rows], out["risk"], atol=2e-5)
    office = tmp_path / "office.h5"
    with h5py.File(path, "r") as src, h5py.File(office, "w") as dst:
        dst.attrs.update(src.attrs)
        dst.attrs["area_names"] = ["office"]
        src.copy("areas/office", dst.require_group("areas"), name="office")
    alone = _predicted(predict(workdir, str(office), str(tmp_path / "office.csv"))["output"])
    assert alone == [r for r in _predicted(tmp_path / "all.csv") if r["area"] == "office"]


def test_predict_rejects_unusable_input(finished_run, tmp_path):
    _, workdir, _ = finished_run
    seven = tmp_path / "seven.h5"
    generate(seven, samples_per_area=100, num_areas=7)
    with pytest.raises(ValueError, match="area_5, area_6 not among the run's areas"):
        predict(workdir, str(seven), str(tmp_path / "a.csv"))
    short = tmp_path / "short.h5"
    generate(short, samples_per_area=30, num_areas=1)
    with pytest.raises(ValueError, match="shorter than a window"):
        predict(workdir, str(short), str(tmp_path / "b.csv"))
    text = tmp_path / "notes.h5"
    text.write_text("not HDF5")
    with pytest.raises(ValueError, match="not a readable HDF5 file"):
        predict(workdir, str(text), str(tmp_path / "c.csv"))
    assert not list(tmp_path.glob("*.csv"))  # nothing half-written

"""Divergence, a signal during the final test, and `train.epochs` changed on a rerun."""

import csv
import dataclasses
import json
import os
import signal
import subprocess
import sys

import numpy as np
import orbax.checkpoint as ocp
import pytest

from jaxtrain import main
from jaxtrain.tasks.fire.task import build
from jaxtrain.train import Interrupted, train_and_evaluate
from tests.fire_test_config import ROOT, tiny_fire_config

FIRE = os.path.join(ROOT, "tests", "fire_test_config.py")


def test_divergence_stops_at_once_and_keeps_the_last_good_checkpoint(tmp_path, cache_dir):
    """A learning rate that blows up: one line naming the step, exit 3; every checkpoint
    holds finite parameters; no history row or result comes from the diverged model."""
    workdir = tmp_path / "diverged"
    r = subprocess.run(
        [sys.executable, "-m", "jaxtrain.main", f"--config={FIRE}", f"--workdir={workdir}",
         f"--config.data.cache_dir={cache_dir}", "--config.optim.learning_rate=1e7",
         "--config.optim.grad_clip_norm=0", "--config.checkpoint.every_steps=3",
         "--config.train.check_finite_every=1"],
        capture_output=True, text=True, timeout=600, cwd=str(tmp_path))
    errors = [line for line in r.stderr.splitlines() if line.startswith("jaxtrain: error:")]
    assert r.returncode == 3, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    assert len(errors) == 1 and "training diverged: non-finite" in errors[0], errors
    assert not os.path.exists(workdir / "results.json")
    if os.path.exists(workdir / "history.csv"):
        with open(workdir / "history.csv") as f:
            for row in csv.DictReader(f):
                assert np.isfinite(float(row["train/loss"])), row
    ckpt = workdir / "checkpoints"
    for step in (d for d in os.listdir(ckpt) if d.isdigit()) if ckpt.exists() else ():
        state = ocp.StandardCheckpointer().restore(str(ckpt / step / "state"))
        for leaf in ocp.tree.to_flat_dict(state["params"]).values():
            assert np.isfinite(leaf).all()


class _SignalOnFirstRead:
    """A data source that sends SIGTERM to this process when it is first read."""

    def __init__(self, source):
        self.source, self.sent = source, False

    def __len__(self):
        return len(self.source)

    def __getitem__(self, i):
        if not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGTERM)
        return self.source[i]


def test_sigterm_during_the_final_test_stops_and_a_rerun_finishes(tmp_path, cache_dir):
    config = tiny_fire_config(cache_dir, epochs=1)
    config.data.on_device = "never"  # the signal comes from a host read of the test split
    workdir = str(tmp_path / "run")
    os.makedirs(workdir)
    task = build(config, workdir)
    stopping = dataclasses.replace(task, test_source=_SignalOnFirstRead(task.test_source))
    with pytest.raises(Interrupted, match="during the final test evaluation"):
        train_and_evaluate(config, workdir, stopping)
    assert not os.path.exists(os.path.join(workdir, "results.json"))
    results = train_and_evaluate(config, workdir, task)  # resumes: only the test is left
    assert results["epochs_trained"] == 1 and "accuracy" in results["test"]


def test_more_epochs_on_a_rerun_keep_the_first_schedule(tmp_path, cache_dir):
    """An interrupted 2-epoch run rerun with train.epochs=3 trains 3 epochs, with the
    learning rate of the 2-epoch schedule (held at its end value after it)."""
    config = tiny_fire_config(cache_dir, epochs=2)
    workdir = str(tmp_path / "run")

    def stop_at(step):
        if step == 10:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(Interrupted):
        main.run(config, workdir, on_step=stop_at)
    longer = tiny_fire_config(cache_dir, epochs=3)
    results = main.run(longer, workdir)
    assert results["epochs_trained"] == 3
    with open(os.path.join(workdir, "config.json")) as f:
        assert json.load(f)["train"]["epochs"] == 2  # config.json is never rewritten
    with open(os.path.join(workdir, "history.csv")) as f:
        lrs = [float(r["train/learning_rate"]) for r in csv.DictReader(f)]
    end_lr = config.optim.learning_rate * config.optim.end_lr_factor
    assert lrs[2] == pytest.approx(end_lr, rel=1e-3)  # epoch 3: past the schedule's end

"""What a person watching a run reads: progress lines, the epoch line, the final summary."""

import jax.numpy as jnp
import pytest

from jaxtrain import main, train, writers
from jaxtrain.train_step import FIRST_NONFINITE_STEP, NO_STEP, NONFINITE


def test_the_epoch_line_is_short_rounded_and_says_when_it_is_the_best():
    row = {"epoch": 3, "step": 300, "train/loss": 0.123456, "val/accuracy": 0.951234,
           "val/macro_f1": 0.90111, "val/fire_recall": 0.5, "val/other": 0.1, "eval_s": 1.0}
    line = train.epoch_line(row, 10, ("accuracy", "macro_f1"), "val/macro_f1",
                            improved=True, seconds=12.34)
    assert line == ("epoch 3/10 (12.3 s): train loss 0.1235; val accuracy 0.9512 "
                    "macro_f1 0.9011; best val/macro_f1 so far")
    line = train.epoch_line(row, 10, ("accuracy",), "val/other", improved=False, seconds=1)
    assert line.endswith("val accuracy 0.9512 other 0.1") and "best" not in line


def test_progress_counts_epochs_from_one_and_leaves_compilation_out_of_the_eta(monkeypatch):
    clock = iter([0.0, 0.0, 100.0, 110.0])  # init, start, start after a 100 s compile, line
    monkeypatch.setattr(writers.time, "monotonic", lambda: next(clock))
    progress = writers.Progress(total_steps=20, batch_size=8, every_s=0, epochs=2)
    progress.start(0)
    progress.start(1)  # after the first (compiling) step, as the loop does
    line = progress.line(11, 1, 0.123456, {"perf/samples_per_s": 8.0})
    # 10 steady steps in 10 s: 9 more steps take 9 s (not 100+ s with the compile counted)
    assert "step 11/20 epoch 1/2 loss 0.1235 (epoch mean)" in line and "ETA 0:00:09" in line


def test_the_progress_loss_is_the_running_mean_of_the_epoch():
    sums = train._DeviceSums()
    loop = train.LoopState(epoch_sums={"loss": 3.0}, epoch_steps=2)  # flushed: 1.0, 2.0
    for loss in (3.0, 6.0):
        sums.add({"loss": jnp.float32(loss), FIRST_NONFINITE_STEP: jnp.int32(NO_STEP),
                  **{k: jnp.int32(0) for k in NONFINITE.values()}})
    assert sums.running_mean(loop, "loss") == pytest.approx((3.0 + 9.0) / 4)


def test_the_summary_shows_the_deployed_model_first_in_four_digits(capsys):
    results = {"headline": ["accuracy", "macro_f1"],
               "test": {"accuracy": 0.97291234, "macro_f1": 0.92381111},
               "deployed": {"model": "soft_vote", "models": ["network", "soft_vote"],
                            "test": {"accuracy": 0.98311111, "macro_f1": 0.94882222}},
               "baseline": {"accuracy": 0.8123456, "model": "logistic"}}
    main.print_summary(results, "/runs/x/results.json")
    lines = capsys.readouterr().out.splitlines()
    assert lines[:3] == ['test (soft_vote): {"accuracy": 0.9831, "macro_f1": 0.9488}',
                         'test (network): {"accuracy": 0.9729, "macro_f1": 0.9238}',
                         'baseline: {"accuracy": 0.8123}']
    del results["deployed"]  # a run from before results.json named its deployed model
    main.print_summary(results, "/runs/x/results.json")
    assert capsys.readouterr().out.startswith('test (network): {"accuracy": 0.9729')

"""Fire's ML ensemble: vectorized window features, deterministic votes, the after-training
stage in a real (tiny) run, its importance files, and predict with the saved combination."""

import csv
import json
import os

import jax
import numpy as np
import pytest

from jaxtrain.evaluate import load_predictions
from jaxtrain.predict import predict
from jaxtrain.run_files import load_trained as load_run
from jaxtrain.tasks.fire import ensemble
from jaxtrain.tasks.fire.features import RATIOS, feature_names, window_features
from jaxtrain.tasks.fire.layout import CHANNEL_NAMES
from jaxtrain.tasks.fire.synthetic import generate
from jaxtrain.tasks.fire.task import build, window_source

AREAS = ["kitchen", "warehouse", "office", "server_room", "loading_dock"]


def test_window_features_equal_a_per_window_loop():
    """The one-pass features equal each window's statistics computed on its own."""
    rng = np.random.default_rng(0)
    x = rng.uniform(1, 50, size=(7, 60, 6)).astype(np.float32)
    area = np.array([0, 1, 2, 3, 4, 0, 1])
    feats = window_features(x, area, CHANNEL_NAMES, 5)
    names = feature_names(CHANNEL_NAMES, AREAS)
    assert feats.shape == (7, len(names)) == (7, 6 * 8 + len(RATIOS) + 5)
    col = {n: i for i, n in enumerate(names)}
    for i in range(7):
        for c, ch in enumerate(CHANNEL_NAMES):
            w = x[i, :, c].astype(np.float64)
            expected = {"level": w.mean(), "spread": w.std(), "min": w.min(), "max": w.max(),
                        "last": w[-1], "slope": np.polyfit(np.arange(60), w, 1)[0],
                        "change_5m": w[-1] - w[-6], "change_15m": w[-1] - w[-16]}
            for stat, v in expected.items():
                assert feats[i, col[f"{ch}_{stat}"]] == pytest.approx(v, rel=1e-4, abs=1e-4)
        assert feats[i, col["co_per_co2"]] == pytest.approx(x[i, -1, 2] / x[i, -1, 3], rel=1e-5)
        onehot = feats[i, -5:]
        assert onehot.sum() == 1 and onehot[area[i]] == 1


def test_hard_vote_plurality_and_deterministic_tie_break():
    def onehot(classes):
        return np.eye(3, dtype=np.float32)[classes]

    # window 0: 2-1 majority for class 1; window 1: a three-way tie; window 2: unanimous 2
    a, b, c = onehot([1, 0, 2]), onehot([1, 1, 2]), onehot([0, 2, 2])
    for order, tie_winner in (([0, 1, 2], 0), ([2, 0, 1], 2), ([1, 2, 0], 1)):
        scores = ensemble.hard_vote([a, b, c], order)
        assert scores.argmax(-1).tolist() == [1, tie_winner, 2]
        np.testing.assert_allclose(scores.sum(-1), 1.0, rtol=1e-6)
    # soft weights: the grid finds the member that is right where the others are wrong
    labels = np.array([0, 1, 2, 2])
    right = onehot([0, 1, 2, 2]) * 0.6 + 0.1
    wrong = onehot([1, 2, 0, 0])
    weights = ensemble.soft_weights([wrong, right, wrong], labels, 0.5)
    assert weights == [0.0, 1.0, 0.0]
    spec = {"members": ["t", "r", "g"], "chosen": ensemble.SOFT,
            "soft_weights": {"t": 0.0, "r": 1.0, "g": 0.0}}
    np.testing.assert_allclose(ensemble.combine(spec, {"t": wrong, "r": right, "g": wrong}),
                               right)


def test_default_run_stage_reports_every_member_and_vote(fire_ensemble_run):
    _, workdir, results = fire_ensemble_run
    e = results["ensemble"]
    candidates = [*ensemble.MEMBERS, ensemble.HARD, ensemble.SOFT]
    assert sorted(e["models"]) == sorted(candidates)
    # the transformer's entry is the loop's own test score, read back from the saved predictions
    assert e["models"]["transformer"]["test"]["accuracy"] == results["test"]["accuracy"]
    assert e["models"]["transformer"]["test"]["macro_f1"] == results["test"]["macro_f1"]
    for c in candidates:
        report = e["models"][c]["test_report"]
        assert np.array(report["confusion_matrix"]).shape == (3, 3)
        assert np.array(report["confusion_matrix"]).sum() == results["data"]["windows"]["test"]
        assert set(report["per_area"]) == set(AREAS)
        assert set(report["per_class"]) == {"normal", "warning", "fire"}
    for name in ("random_forest", "gradient_boosting"):
        assert e["models"][name]["train_s"] > 0
    val = {c: (e["models"][c]["val"]["macro_f1"], e["models"][c]["val"]["accuracy"])
           for c in candidates}
    assert val[e["chosen"]] == max(val.values())
    assert sum(e["soft_weights"].values()) == pytest.approx(1.0)
    for vote in (ensemble.HARD, ensemble.SOFT):
        for k in ("accuracy", "macro_f1"):
            best = max(e["models"][m]["test"][k] for m in ensemble.MEMBERS)
            assert e["gain_over_best_member"][vote][k] == pytest.approx(
                e["models"][vote]["test"][k] - best)
    with open(os.path.join(workdir, "results.json")) as f:
        assert json.load(f)["ensemble"]["chosen"] == e["chosen"]


def test_importance_files(fire_ensemble_run):
    *_, results = fire_ensemble_run
    imp = results["ensemble"]["importance"]
    with open(imp["csv"]) as f:
        rows = list(csv.DictReader(f))
    names = feature_names(CHANNEL_NAMES, AREAS)
    groups = {(r["model"], r["method"]) for r in rows}
    assert groups == {("random_forest", "impurity"), ("random_forest", "permutation"),
                      ("gradient_boosting", "permutation"), ("transformer", "permutation")}
    for model, method in groups:
        feats = [r["feature"] for r in rows if (r["model"], r["method"]) == (model, method)]
        assert sorted(feats) == sorted(CHANNEL_NAMES if model == "transformer" else names)
    impurity = [float(r["importance"]) for r in rows if r["method"] == "impurity"]
    assert sum(impurity) == pytest.approx(1.0, abs=1e-4)
    with open(imp["png"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    # the shuffled passes start from the run's own transformer: unshuffled = saved predictions
    assert imp["transformer_check_max_abs"] < 1e-4


def test_stage_refuses_predictions_of_other_windows(fire_ensemble_run, tmp_path):
    """The stage pairs saved predictions with re-read windows by position: predictions that
    are not the split's windows in order (another data file) stop it before any fitting."""
    config, workdir, _ = fire_ensemble_run
    task = build(config, str(tmp_path))
    _, variables, _ = load_run(workdir)
    other = tmp_path / "other" / "predictions"
    other.mkdir(parents=True)
    for split in ("val", "test"):
        saved = load_predictions(workdir, split)
        if split == "val":
            saved["label"] = np.roll(saved["label"], 1)
        np.savez(other / f"{split}.npz", **saved)
    with pytest.raises(ValueError, match="does not match the val split"):
        task.after_training(str(other.parent), variables)
    assert not (other.parent / "ensemble").exists()


def test_predict_uses_the_saved_combination(fire_ensemble_run, tmp_path):
    config, workdir, results = fire_ensemble_run
    log = tmp_path / "new.h5"
    generate(log, samples_per_area=400, num_areas=2, seed=5)
    summary = predict(workdir, str(log), str(tmp_path / "p.csv"))
    spec, _ = ensemble.load(workdir)
    assert summary["combination"] == spec["chosen"] == results["ensemble"]["chosen"]
    with open(tmp_path / "p.csv") as f:
        rows = list(csv.DictReader(f))
    classes = ("normal", "warning", "fire")
    members = {m: np.array([[float(r[f"{m}_p_{c}"]) for c in classes] for r in rows])
               for m in ensemble.MEMBERS}
    combined = np.array([[float(r[f"p_{c}"]) for c in classes] for r in rows])
    np.testing.assert_allclose(combined, ensemble.combine(spec, members), atol=2e-5)
    assert [r["prediction"] for r in rows] == [classes[k] for k in combined.argmax(-1)]
    # the transformer's columns are the run's own predict_fn on the same windows
    config, variables, _ = load_run(workdir)
    task = build(config, str(tmp_path))
    windows = np.array([(AREAS.index(r["area"]), int(r["row"])) for r in rows])
    source = window_source(str(log), AREAS[:2], windows, config.data.seq_len, 1.0)
    batch = task.batch_transform(source.read_batch(np.arange(len(windows))))
    out = jax.jit(task.predict_fn)(variables["params"], {}, batch)
    np.testing.assert_allclose(members["transformer"], out["probs"], atol=2e-5)


@pytest.mark.parametrize("key,value", [("rf_trees", 0), ("weight_step", 0.3),
                                       ("importance_windows", -1), ("gb_learning_rate", 0.0)])
def test_bad_ensemble_config_is_one_line(key, value):
    from jaxtrain.config_checks import ConfigValueError
    from jaxtrain.tasks.fire.checks import validate
    from tests.fire_test_config import load_config

    config = load_config("fire")
    validate(config)
    config.ensemble[key] = value
    with pytest.raises(ConfigValueError, match=f"config.ensemble.{key}="):
        validate(config)

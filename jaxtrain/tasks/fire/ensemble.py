"""The ML ensemble beside the transformer: tree members on window features, hard and soft votes.

Runs after training as fire's `Task.after_training` stage: it reads the transformer's saved
predictions (workdir/predictions/{val,test}.npz, the best checkpoint's), so the training loop
knows nothing about it. Members (scikit-learn, every core):

- random_forest: 100 trees of depth <= 15 (the seed's plan);
- gradient_boosting: HistGradientBoosting, 100 iterations of depth <= 6 at learning rate 0.1
  (the seed's XGBoost/LightGBM settings; BUILD_NOTES says why not those libraries),

both fitted on the transformer's train split with its class weights. No feature scaling: a
tree's splits are invariant to it (the seed's StandardScaler changes no prediction).

Combinations, all over {transformer, random_forest, gradient_boosting}:

- hard_vote: per-window plurality of the members' classes; a tie goes to the class of the
  member ranked highest by validation macro F1 (deterministic; the seed left ties arbitrary);
- soft_vote: weighted mean of the members' probabilities, weights on a 0.1 grid of the
  simplex chosen by validation macro F1.

Every member and both votes are scored on test by the transformer's own evaluators; the one
best on validation ("chosen") is saved with its members in workdir/ensemble/ and used by
`python -m jaxtrain.predict`.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from absl import logging

from jaxtrain import metrics
from jaxtrain.evaluate import load_predictions
from jaxtrain.files import atomic_path, read_json, write_json_atomic
from jaxtrain.task import Evaluator, Outputs, evaluate
from jaxtrain.tasks.fire import features, importance

DIRNAME = "ensemble"
SPEC = "ensemble.json"
TRANSFORMER = "transformer"
MEMBERS = (TRANSFORMER, "random_forest", "gradient_boosting")
HARD, SOFT = "hard_vote", "soft_vote"

# scikit-learn's boosting runs on OpenMP, whose idle threads spin by default. Beside JAX's
# thread pools (and other processes) on the same cores that spinning made HistGradientBoosting
# 5-15x slower on the 2-core dev machine (BUILD_NOTES). libgomp reads this when it loads, at
# scikit-learn's first import, which only this module's functions do; a user's value wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def make_members(config: Any, class_weights: Sequence[float], seed: int) -> dict[str, Any]:
    """The unfitted tree members, as `config.ensemble` says."""
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier

    e = config.ensemble
    weights = {k: float(w) for k, w in enumerate(class_weights)}
    return {
        "random_forest": RandomForestClassifier(
            n_estimators=e.rf_trees, max_depth=e.rf_max_depth, class_weight=weights,
            n_jobs=-1, random_state=seed),
        # OpenMP threads over every core; a fixed iteration count (no internal early stopping,
        # which would hold out a slice of the train split the other members train on).
        "gradient_boosting": HistGradientBoostingClassifier(
            max_iter=e.gb_iterations, max_depth=e.gb_max_depth, learning_rate=e.gb_learning_rate,
            class_weight=weights, early_stopping=False, random_state=seed),
    }


def member_probs(model: Any, x: np.ndarray, num_classes: int) -> np.ndarray:
    """(N, num_classes) probabilities, also when the train split lacked a class."""
    out = np.zeros((len(x), num_classes), np.float32)
    if len(x):
        out[:, model.classes_.astype(np.int64)] = model.predict_proba(x)
    return out


def hard_vote(probs: Sequence[np.ndarray], order: Sequence[int]) -> np.ndarray:
    """Plurality of the members' classes as (N, C) scores whose argmax is the decision.

    Scores are vote shares plus a tie-break bonus per member, 0.5 ** (rank + 2) / M for the
    member ranked `rank` in `order`: the bonuses sum to < 1/M (one vote), so they only decide
    ties, and the highest-ranked member among the tied classes wins.
    """
    m = len(probs)
    scores = np.zeros_like(probs[0], dtype=np.float64)
    rows = np.arange(len(scores))
    for rank, member in enumerate(order):
        scores[rows, probs[member].argmax(-1)] += (1.0 + 0.5 ** (rank + 2)) / m
    return (scores / scores.sum(-1, keepdims=True)).astype(np.float32)


def soft_vote(probs: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    return sum(w * p for w, p in zip(weights, probs, strict=True)).astype(np.float32)


def _macro_f1_acc(labels: np.ndarray, probs: np.ndarray, num_classes: int) -> tuple[float, float]:
    cm = metrics.confusion_matrix(labels, probs.argmax(-1), num_classes)
    return float(metrics.macro_f1(cm)), float(np.trace(cm) / max(cm.sum(), 1))


def soft_weights(probs: Sequence[np.ndarray], labels: np.ndarray, step: float
                 ) -> list[float]:
    """The simplex grid point (weights in multiples of `step`) with the best (macro F1,
    accuracy) on these labels; the first in grid order on a tie (deterministic)."""
    k = round(1 / step)
    best, best_w = (-1.0, -1.0), [1.0 / len(probs)] * len(probs)
    num_classes = probs[0].shape[1]
    for head in itertools.product(range(k + 1), repeat=len(probs) - 1):
        if sum(head) > k:
            continue
        w = [h / k for h in (*head, k - sum(head))]
        score = _macro_f1_acc(labels, soft_vote(probs, w), num_classes)
        if score > best:
            best, best_w = score, w
    return best_w


def combine(spec: dict[str, Any], probs: dict[str, np.ndarray]) -> np.ndarray:
    """The saved combination `spec["chosen"]` of the members' (N, C) probabilities."""
    chosen, members = spec["chosen"], spec["members"]
    if chosen in probs:
        return probs[chosen]
    stacked = [probs[m] for m in members]
    if chosen == HARD:
        return hard_vote(stacked, [members.index(m) for m in spec["tie_break_order"]])
    if chosen == SOFT:
        return soft_vote(stacked, [spec["soft_weights"][m] for m in members])
    raise ValueError(f"unknown ensemble combination {chosen!r}")


def load(workdir: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(spec, {member: fitted model}) saved with a run, or None for a run without one.

    The members are joblib (pickle) files: load only runs and bundles you trust.
    """
    path = os.path.join(workdir, DIRNAME, SPEC)
    if not os.path.exists(path):
        return None
    import joblib

    spec = read_json(path)
    models = {m: joblib.load(os.path.join(workdir, DIRNAME, f)) for m, f in spec["files"].items()}
    return spec, models


def _check_aligned(saved: Outputs, fields: dict[str, np.ndarray], split: str) -> None:
    """Saved predictions and re-read windows must be the same windows in the same order."""
    for key in ("label", "area"):
        if not np.array_equal(np.asarray(saved[key]), np.asarray(fields[key])):
            raise ValueError(f"predictions/{split}.npz: its {key!r} does not match the "
                             f"{split} split's windows (was the data file changed?)")


def after_training(workdir: str, variables: dict[str, Any], *, config: Any,
                   sources: dict[str, Any], channel_names: Sequence[str],
                   area_names: Sequence[str], class_names: Sequence[str],
                   class_weights: Sequence[float], evaluators: Sequence[Evaluator],
                   transformer_probs: Callable[[dict[str, Any], np.ndarray, np.ndarray],
                                               np.ndarray]) -> dict[str, Any]:
    """Fits, votes, scores and explains the ensemble; returns results.json's "ensemble".

    `transformer_probs(variables, raw_windows, area)` runs the jitted predict step on raw
    readings (for the transformer's channel importance).
    """
    num_classes, num_areas = len(class_names), len(area_names)
    timing: dict[str, float] = {}
    t = time.perf_counter()
    feats, fields = {}, {}
    for split, source in sources.items():
        feats[split], fields[split] = features.source_features(source, channel_names, num_areas)
    names = features.feature_names(channel_names, area_names)
    timing["features_s"] = time.perf_counter() - t
    saved = {s: load_predictions(workdir, s) for s in ("val", "test")}
    for s in saved:
        _check_aligned(saved[s], fields[s], s)

    models = make_members(config, class_weights, config.seed)
    probs: dict[str, dict[str, np.ndarray]] = {s: {TRANSFORMER: saved[s]["probs"]}
                                               for s in saved}
    for name, model in models.items():
        t = time.perf_counter()
        model.fit(feats["train"], fields["train"]["label"])
        timing[f"{name}_train_s"] = time.perf_counter() - t
        logging.info("ensemble: %s trained on %d windows x %d features in %.1f s", name,
                     len(feats["train"]), feats["train"].shape[1], timing[f"{name}_train_s"])
        for s in saved:
            probs[s][name] = member_probs(model, feats[s], num_classes)

    labels_val = saved["val"]["label"]
    val_scores = {m: _macro_f1_acc(labels_val, probs["val"][m], num_classes) for m in MEMBERS}
    order = sorted(MEMBERS, key=lambda m: (-val_scores[m][0], -val_scores[m][1],
                                           MEMBERS.index(m)))
    weights = soft_weights([probs["val"][m] for m in MEMBERS], labels_val,
                           config.ensemble.weight_step)
    spec: dict[str, Any] = {
        "members": list(MEMBERS), "tie_break_order": order,
        "soft_weights": dict(zip(MEMBERS, weights, strict=True)),
        "files": {m: f"{m}.joblib" for m in models}, "features": names,
        "class_names": list(class_names)}
    for s in saved:
        for vote in (HARD, SOFT):
            probs[s][vote] = combine({**spec, "chosen": vote}, probs[s])
    candidates = [*MEMBERS, HARD, SOFT]
    val = {c: _macro_f1_acc(labels_val, probs["val"][c], num_classes) for c in candidates}
    chosen = max(candidates, key=lambda c: val[c])  # first on a tie: members before votes
    spec["chosen"] = chosen
    _save(workdir, spec, models)

    report: dict[str, Any] = {}
    for c in candidates:
        outputs = {**saved["test"], "probs": probs["test"][c]}
        test_metrics, test_report = evaluate(evaluators, outputs)
        report[c] = {"val": {"macro_f1": val[c][0], "accuracy": val[c][1]},
                     "test": test_metrics, "test_report": test_report}
    for name in models:
        report[name]["train_s"] = timing[f"{name}_train_s"]

    t = time.perf_counter()
    explained = importance.explain(
        os.path.join(workdir, DIRNAME), models=models, names=names, x_val=feats["val"],
        y_val=labels_val, source_val=sources["val"], area_val=fields["val"]["area"],
        channel_names=channel_names, transformer=lambda x, a: transformer_probs(variables, x, a),
        transformer_val_probs=saved["val"]["probs"], num_classes=num_classes,
        repeats=config.ensemble.importance_repeats,
        transformer_windows=config.ensemble.importance_windows, seed=config.seed)
    timing["importance_s"] = time.perf_counter() - t
    result = {"members": list(MEMBERS), "chosen": chosen, "chosen_by": "val/macro_f1",
              "tie_break_order": order, "soft_weights": spec["soft_weights"],
              "models": report, "gain_over_best_member": _gains(report),
              "summary": {c: {k: report[c]["test"][k] for k in ("accuracy", "macro_f1")}
                          for c in candidates},
              "importance": explained, "timing": timing, "features": len(names)}
    logging.info("ensemble (test accuracy / macro F1): %s; chosen on validation: %s",
                 ", ".join(f"{c} {v['accuracy']:.4f}/{v['macro_f1']:.4f}"
                           for c, v in result["summary"].items()), chosen)
    # predict and export use the chosen combination: it is the run's deployed model
    return {"ensemble": result,
            "deployed": {"model": chosen, "models": [*MEMBERS, HARD, SOFT],
                         "test": report[chosen]["test"]}}


def _gains(report: dict[str, Any]) -> dict[str, Any]:
    """Each vote's test accuracy and macro F1 minus the best member's (per metric)."""
    out: dict[str, Any] = {}
    for vote in (HARD, SOFT):
        out[vote] = {}
        for k in ("accuracy", "macro_f1"):
            best = max(MEMBERS, key=lambda m, k=k: report[m]["test"][k])
            out[vote][k] = report[vote]["test"][k] - report[best]["test"][k]
            out[vote][f"best_member_by_{k}"] = best
    return out


def _save(workdir: str, spec: dict[str, Any], models: dict[str, Any]) -> None:
    import joblib
    import sklearn

    directory = os.path.join(workdir, DIRNAME)
    for name, model in models.items():
        with atomic_path(os.path.join(directory, spec["files"][name])) as tmp:
            joblib.dump(model, tmp)
    # Written last: a spec on disk means every member file it names is complete.
    write_json_atomic(os.path.join(directory, SPEC),
                      {**spec, "sklearn_version": sklearn.__version__})

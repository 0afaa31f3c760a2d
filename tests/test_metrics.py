"""Tests for jaxtrain.metrics: hand-computed values, scikit-learn parity, masks, jit."""

from __future__ import annotations

import json
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxtrain.metrics import (
    accuracy,
    classification_report,
    confusion_matrix,
    macro_f1,
    per_group_accuracy,
    per_group_report,
    precision_recall_f1,
    roc_auc,
    roc_auc_ovr,
)

skm = pytest.importorskip("sklearn.metrics")

# reference-facts section 4 sklearn edge case
Y_TRUE = np.array([0, 0, 1, 1, 2, 2])
Y_PRED = np.array([0, 1, 1, 1, 2, 0])


def _data(seed: int, n: int, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, num_classes, n)
    # mostly-correct predictions so per-class scores are not all ~1/C
    p = np.where(rng.random(n) < 0.6, y, rng.integers(0, num_classes, n))
    return y, p


def _probs(seed: int, labels: np.ndarray, num_classes: int, decimals: int = 1) -> np.ndarray:
    """Informative, rounded (hence heavily tied) class probabilities."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(len(labels), num_classes)) + 1.5 * np.eye(num_classes)[labels]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    p = np.round(p, decimals)
    return p / p.sum(1, keepdims=True)  # sklearn's ovr check wants rows summing to 1


# --------------------------------------------------------------------------- confusion / accuracy


def test_confusion_matrix_hand_and_sklearn() -> None:
    # rows = true, cols = predicted
    expected = [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    np.testing.assert_array_equal(confusion_matrix(Y_TRUE, Y_PRED, 3), expected)
    y, p = _data(0, 500, 4)
    y[y == 3] = 0  # class 3 absent from labels; still gets a row of zeros
    np.testing.assert_array_equal(
        confusion_matrix(y, p, 4), skm.confusion_matrix(y, p, labels=range(4))
    )


def test_confusion_matrix_mask_and_out_of_range() -> None:
    y, p = _data(1, 300, 5)
    mask = np.random.default_rng(2).random(300) < 0.5
    ref = skm.confusion_matrix(y[mask], p[mask], labels=range(5))
    np.testing.assert_array_equal(confusion_matrix(y, p, 5, mask=mask), ref)
    # -1 (unlabelled) and >= C entries are dropped as if masked
    y_pad = np.where(mask, y, -1)
    np.testing.assert_array_equal(confusion_matrix(y_pad, p, 5), ref)
    p_pad = np.where(mask, p, 7)
    np.testing.assert_array_equal(confusion_matrix(y, p_pad, 5), ref)
    # 2-D (segmentation-shaped) inputs are flattened
    np.testing.assert_array_equal(
        confusion_matrix(y.reshape(10, 30), p.reshape(10, 30), 5, mask.reshape(10, 30)), ref
    )
    empty = confusion_matrix(y, p, 5, mask=np.zeros(300, bool))
    assert empty.shape == (5, 5) and empty.sum() == 0


def test_accuracy() -> None:
    assert float(accuracy(Y_TRUE, Y_PRED)) == pytest.approx(4 / 6)
    mask = np.array([1, 1, 1, 0, 0, 1], bool)  # kept: (0,0) (0,1) (1,1) (2,0) -> 2 of 4
    assert float(accuracy(Y_TRUE, Y_PRED, mask=mask)) == pytest.approx(0.5)
    y, p = _data(3, 400, 6)
    assert float(accuracy(y, p)) == pytest.approx(skm.accuracy_score(y, p))
    assert math.isnan(float(accuracy(Y_TRUE, Y_PRED, mask=np.zeros(6))))  # undefined, no crash


# --------------------------------------------------------------------- precision / recall / F1


def test_precision_recall_f1_hand() -> None:
    prf = precision_recall_f1(confusion_matrix(Y_TRUE, Y_PRED, 4))
    # class 0: tp 1, fp 1, fn 1 -> P .5, R .5, F .5
    # class 1: tp 2, fp 1, fn 0 -> P 2/3, R 1, F .8
    # class 2: tp 1, fp 0, fn 1 -> P 1, R .5, F 2/3
    # class 3: absent everywhere -> 0/0 -> 0
    np.testing.assert_allclose(prf["precision"], [0.5, 2 / 3, 1.0, 0.0])
    np.testing.assert_allclose(prf["recall"], [0.5, 1.0, 0.5, 0.0])
    np.testing.assert_allclose(prf["f1"], [0.5, 0.8, 2 / 3, 0.0])
    np.testing.assert_array_equal(prf["support"], [2, 2, 2, 0])


def test_macro_f1_absent_class_convention() -> None:
    # reference-facts: 0.6556 with sklearn's inferred labels, 0.4917 with labels=[0,1,2,3]
    assert float(macro_f1(confusion_matrix(Y_TRUE, Y_PRED, 3))) == pytest.approx(
        (0.5 + 0.8 + 2 / 3) / 3
    )
    ours = float(macro_f1(confusion_matrix(Y_TRUE, Y_PRED, 4)))
    assert ours == pytest.approx((0.5 + 0.8 + 2 / 3 + 0) / 4)
    assert ours == pytest.approx(0.4917, abs=1e-4)
    ref = skm.f1_score(Y_TRUE, Y_PRED, average="macro", labels=[0, 1, 2, 3], zero_division=0)
    assert ours == pytest.approx(ref)


def test_precision_recall_f1_matches_sklearn_without_warnings() -> None:
    y, p = _data(4, 1000, 6)
    p[p == 5] = 0  # class 5 never predicted -> precision 0/0
    y[y == 4] = 1  # class 4 never true -> recall 0/0
    cm = confusion_matrix(y, p, 6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # zero division must stay silent
        prf = precision_recall_f1(cm)
        f1 = macro_f1(cm)
    ref = skm.precision_recall_fscore_support(y, p, labels=range(6), zero_division=0)
    for ours, theirs in zip(
        (prf["precision"], prf["recall"], prf["f1"], prf["support"]), ref, strict=True
    ):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12)
    ref_macro = skm.f1_score(y, p, average="macro", labels=range(6), zero_division=0)
    assert float(f1) == pytest.approx(ref_macro, rel=1e-12)


# --------------------------------------------------------------------------- ROC-AUC


def test_roc_auc_hand_with_ties() -> None:
    # sklearn docs example: 3 of 4 (pos, neg) pairs ordered correctly
    assert float(roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    # ties: pos .5 vs neg .5 counts 1/2 (twice), pos .9 beats both negatives:
    # (0.5 + 0.5 + 1 + 1) / (2 * 2) = 0.75
    assert float(roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.9])) == pytest.approx(0.75)
    # all scores tied -> 0.5; perfectly inverted -> 0
    assert float(roc_auc([0, 1, 1, 0], [0.3, 0.3, 0.3, 0.3])) == pytest.approx(0.5)
    assert float(roc_auc([1, 1, 0], [0.1, 0.2, 0.9])) == pytest.approx(0.0)


def test_roc_auc_matches_sklearn_with_many_ties() -> None:
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 3000)
    scores = np.round(rng.random(3000) * 0.5 + 0.3 * y, 2)  # ~80 distinct values -> ties
    assert len(np.unique(scores)) < 100
    ref = skm.roc_auc_score(y, scores)
    assert float(roc_auc(y, scores)) == pytest.approx(ref, rel=1e-12)
    # bool and {-1, 1} labels mean the same thing
    assert float(roc_auc(y.astype(bool), scores)) == pytest.approx(ref, rel=1e-12)
    assert float(roc_auc(2 * y - 1, scores)) == pytest.approx(ref, rel=1e-12)
    mask = rng.random(3000) < 0.3
    ref_m = skm.roc_auc_score(y[mask], scores[mask])
    assert float(roc_auc(y, scores, mask=mask)) == pytest.approx(ref_m, rel=1e-12)


def test_roc_auc_undefined_is_nan() -> None:
    assert math.isnan(float(roc_auc([1, 1, 1], [0.2, 0.5, 0.9])))
    assert math.isnan(float(roc_auc([0, 1, 1], [0.2, 0.5, 0.9], mask=[1, 0, 0])))
    assert math.isnan(float(roc_auc(np.zeros(0), np.zeros(0))))


def test_roc_auc_ovr_matches_sklearn() -> None:
    y, _ = _data(6, 800, 4)
    probs = _probs(7, y, 4)
    per_class, macro = roc_auc_ovr(y, probs, 4)
    ref = skm.roc_auc_score(y, probs, multi_class="ovr", average="macro")
    assert float(macro) == pytest.approx(ref, rel=1e-12)
    for c in range(4):
        assert float(per_class[c]) == pytest.approx(skm.roc_auc_score(y == c, probs[:, c]))
    # a class with no positives is NaN and left out of the macro mean (sklearn raises)
    y3 = np.where(y == 3, 0, y)
    per_class, macro = roc_auc_ovr(y3, probs, 4)
    assert math.isnan(float(per_class[3]))
    assert float(macro) == pytest.approx(float(np.mean(per_class[:3])))
    # -1 labels are ignored rather than treated as a negative of every class
    mask = np.random.default_rng(8).random(800) < 0.5
    masked = roc_auc_ovr(np.where(mask, y, -1), probs, 4)[1]
    ref_m = skm.roc_auc_score(y[mask], probs[mask], multi_class="ovr")
    assert float(masked) == pytest.approx(ref_m, rel=1e-12)


# --------------------------------------------------------------------------- reports


def test_classification_report_multiclass() -> None:
    y, p = _data(9, 600, 3)
    probs = _probs(10, y, 3)
    names = ["water", "debris", "cloud"]
    rep = classification_report(y, p, 3, class_names=names, probs=probs)
    json.dumps(rep, allow_nan=False)  # strictly JSON-serialisable
    assert rep["accuracy"] == pytest.approx(skm.accuracy_score(y, p))
    assert rep["macro_f1"] == pytest.approx(skm.f1_score(y, p, average="macro"))
    assert rep["confusion_matrix"] == skm.confusion_matrix(y, p).tolist()
    prec, rec, f1, sup = skm.precision_recall_fscore_support(y, p)
    for c, name in enumerate(names):
        entry = rep["per_class"][name]
        assert entry["precision"] == pytest.approx(prec[c])
        assert entry["recall"] == pytest.approx(rec[c])
        assert entry["f1"] == pytest.approx(f1[c])
        assert entry["support"] == sup[c] and isinstance(entry["support"], int)
    auc = rep["roc_auc"]
    assert auc["macro"] == pytest.approx(skm.roc_auc_score(y, probs, multi_class="ovr"))
    assert auc["per_class"]["cloud"] == pytest.approx(skm.roc_auc_score(y == 2, probs[:, 2]))


def test_classification_report_binary_mask_and_empty() -> None:
    rng = np.random.default_rng(11)
    y = rng.integers(0, 2, 400)
    prob1 = np.clip(0.3 * y + rng.random(400) * 0.7, 0, 1)
    probs = np.stack([1 - prob1, prob1], axis=1)
    p = (prob1 > 0.5).astype(int)
    mask = rng.random(400) < 0.7
    rep = classification_report(y, p, 2, probs=probs, mask=mask)
    assert rep["num_samples"] == int(mask.sum())
    assert rep["roc_auc"] == pytest.approx(skm.roc_auc_score(y[mask], prob1[mask]))
    assert rep["accuracy"] == pytest.approx(skm.accuracy_score(y[mask], p[mask]))
    assert set(rep["per_class"]) == {"0", "1"}
    # 1-D probabilities are taken as P(class 1)
    assert classification_report(y, p, 2, probs=prob1)["roc_auc"] == pytest.approx(
        skm.roc_auc_score(y, prob1)
    )
    # nothing unmasked: undefined values become None, JSON stays strict
    empty = classification_report(y, p, 2, probs=probs, mask=np.zeros(400, bool))
    json.dumps(empty, allow_nan=False)
    assert empty["accuracy"] is None and empty["roc_auc"] is None and empty["macro_f1"] == 0.0


def test_per_group_accuracy_and_report() -> None:
    labels = np.array([0, 1, 1, 2, 0, 2, 1])
    preds = np.array([0, 1, 0, 2, 1, 2, 1])
    groups = np.array([0, 0, 0, 1, 1, 1, 3])  # group 2 empty; 3 out of range for num_groups=3
    acc = per_group_accuracy(labels, preds, groups, 3)
    # group 0: 2 of 3 correct; group 1: 2 of 3; group 2: empty -> NaN
    np.testing.assert_allclose(acc, [2 / 3, 2 / 3, np.nan])
    rep = per_group_report(labels, preds, groups, 3, 3, group_names=["north", "south", "east"])
    json.dumps(rep, allow_nan=False)
    assert rep["east"] == {"accuracy": None, "macro_f1": None, "count": 0}
    assert rep["north"]["count"] == 3 and rep["north"]["accuracy"] == pytest.approx(2 / 3)
    # group 0 sees classes {0, 1}; class 2 absent from it counts as F1 0 (labels=range(C))
    ref = skm.f1_score(labels[:3], preds[:3], average="macro", labels=range(3), zero_division=0)
    assert rep["north"]["macro_f1"] == pytest.approx(ref)

    y, p = _data(12, 2000, 4)
    g = np.random.default_rng(13).integers(0, 5, 2000)
    mask = np.random.default_rng(14).random(2000) < 0.8
    acc = per_group_accuracy(y, p, g, 5, mask=mask)
    rep = per_group_report(y, p, g, 5, 4, mask=mask)
    for k in range(5):
        sel = (g == k) & mask
        assert float(acc[k]) == pytest.approx(skm.accuracy_score(y[sel], p[sel]))
        assert rep[str(k)]["count"] == int(sel.sum())
        assert rep[str(k)]["macro_f1"] == pytest.approx(
            skm.f1_score(y[sel], p[sel], average="macro", labels=range(4), zero_division=0)
        )
    # predictions outside [0, num_classes) are ignored like masked elements
    p_bad = np.where(np.arange(2000) < 50, 9, p)
    keep = mask & (np.arange(2000) >= 50)
    assert per_group_report(y, p_bad, g, 5, 4, mask=mask) == per_group_report(
        y, p, g, 5, 4, mask=keep
    )


# --------------------------------------------------------------------------- jax backend


def test_jax_arrays_and_jit_match_numpy() -> None:
    y, p = _data(15, 700, 4)
    probs = _probs(16, y, 4).astype(np.float32)
    groups = np.random.default_rng(17).integers(0, 3, 700)
    mask = np.random.default_rng(18).random(700) < 0.8

    @jax.jit
    def run(y: jax.Array, p: jax.Array, probs: jax.Array, g: jax.Array, m: jax.Array) -> dict:
        cm = confusion_matrix(y, p, 4, mask=m)
        return {
            "cm": cm,
            "acc": accuracy(y, p, mask=m),
            "f1": precision_recall_f1(cm)["f1"],
            "macro_f1": macro_f1(cm),
            "ovr": roc_auc_ovr(y, probs, 4, mask=m),
            "group": per_group_accuracy(y, p, g, 3, mask=m),
        }

    args = (y, p, probs, groups, mask)
    out = run(*map(jnp.asarray, args))
    assert isinstance(out["cm"], jax.Array)
    cm = confusion_matrix(y, p, 4, mask=mask)
    np.testing.assert_array_equal(out["cm"], cm)
    np.testing.assert_allclose(out["acc"], accuracy(y, p, mask=mask), rtol=1e-6)
    np.testing.assert_allclose(out["f1"], precision_recall_f1(cm)["f1"], rtol=1e-6)
    np.testing.assert_allclose(out["macro_f1"], macro_f1(cm), rtol=1e-6)
    for c in range(4):  # per-class AUCs come from the vmapped binary roc_auc
        ref_c = skm.roc_auc_score(y[mask] == c, probs[mask, c])
        np.testing.assert_allclose(out["ovr"][0][c], ref_c, rtol=1e-5)
    ref_ovr = skm.roc_auc_score(y[mask], probs[mask], multi_class="ovr")
    np.testing.assert_allclose(out["ovr"][1], ref_ovr, rtol=1e-5)
    np.testing.assert_allclose(out["group"], per_group_accuracy(y, p, groups, 3, mask), 1e-6)

"""Classification metrics as pure array functions (numpy on the host, jax.numpy under jit).

Backend rule: if any array argument is a ``jax.Array`` (including a tracer inside ``jax.jit``)
the computation uses ``jax.numpy`` and is jittable (``num_classes`` / ``num_groups`` must then
be static); otherwise plain numpy is used, which is much faster for a whole eval split held
on the host and computes in float64. Results are arrays (or dicts of arrays);
:func:`classification_report` and :func:`per_group_report` return JSON-friendly Python values.

Conventions:

* Labels/preds are integer class ids; any shape (flattened). ``mask`` has the same shape,
  0/1 or bool; masked-out elements are ignored everywhere.
* Wherever ``num_classes`` is given, labels or preds outside ``[0, num_classes)``
  (e.g. ``-1`` = unlabelled) are ignored as if masked.
* Confusion matrices are sklearn's: rows = true class, columns = predicted class.
* Ratios with a zero denominator: precision/recall/F1 -> 0 (sklearn ``zero_division=0``, no
  warning); accuracy and ROC-AUC -> NaN (undefined: no samples / only one class).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

ArrayLike = Any  # np.ndarray | jax.Array | nested lists

__all__ = [
    "accuracy",
    "best_threshold",
    "binary_scores",
    "classification_report",
    "confusion_matrix",
    "macro_f1",
    "per_group_accuracy",
    "per_group_report",
    "precision_recall_f1",
    "roc_auc",
    "roc_auc_ovr",
    "threshold_histograms",
    "threshold_sweep",
]


def _xp(*arrays: ArrayLike) -> ModuleType:
    """jax.numpy if any argument is a jax array (or tracer), else numpy."""
    return jnp if any(isinstance(a, jax.Array) for a in arrays) else np


def _float(xp: ModuleType) -> Any:
    # float64 on the host; jax keeps its default float32 (x64 is normally disabled).
    return np.float64 if xp is np else jnp.float32


def _div(xp: ModuleType, num: ArrayLike, den: ArrayLike, fill: float) -> Any:
    """num / den, ``fill`` where den == 0, without warnings or NaN gradients."""
    f = _float(xp)
    num = xp.asarray(num).astype(f)
    den = xp.asarray(den).astype(f)
    ok = den > 0
    return xp.where(ok, num / xp.where(ok, den, 1.0), fill)


def _flat(xp: ModuleType, x: ArrayLike) -> Any:
    return xp.asarray(x).reshape(-1)


def _valid(xp: ModuleType, mask: ArrayLike | None, size: int) -> Any:
    """Flat bool validity from an optional mask."""
    if mask is None:
        return xp.ones(size, dtype=bool)
    return _flat(xp, mask).astype(bool)


def _in_range(x: Any, n: int) -> Any:
    return (x >= 0) & (x < n)


def _bincount(xp: ModuleType, idx: Any, valid: Any, length: int) -> Any:
    """Counts of ``idx`` over valid entries, shape ``(length,)``, integer dtype."""
    if xp is np:
        return np.bincount(idx[valid].astype(np.int64), minlength=length)
    # jit needs static shapes, so invalid entries are counted with weight 0 instead of dropped.
    return jnp.bincount(idx.astype(jnp.int32), weights=valid.astype(jnp.int32), length=length)


def confusion_matrix(
    labels: ArrayLike, preds: ArrayLike, num_classes: int, mask: ArrayLike | None = None
) -> Any:
    """``(C, C)`` integer counts; ``cm[i, j]`` = #(true i, predicted j) (sklearn layout)."""
    xp = _xp(labels, preds, mask)
    y = _flat(xp, labels).astype(xp.int32 if xp is jnp else np.int64)
    p = _flat(xp, preds).astype(y.dtype)
    valid = _valid(xp, mask, y.shape[0]) & _in_range(y, num_classes) & _in_range(p, num_classes)
    counts = _bincount(xp, y * num_classes + p, valid, num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def accuracy(labels: ArrayLike, preds: ArrayLike, mask: ArrayLike | None = None) -> Any:
    """Fraction of unmasked elements with ``labels == preds``; NaN if none is unmasked."""
    xp = _xp(labels, preds, mask)
    correct = _flat(xp, labels) == _flat(xp, preds)
    valid = _valid(xp, mask, correct.shape[0])
    return _div(xp, xp.sum(correct & valid), xp.sum(valid), math.nan)


def precision_recall_f1(confusion: ArrayLike) -> dict[str, Any]:
    """Per-class precision, recall, F1 and support ``(C,)`` from a confusion matrix.

    A 0/0 ratio gives 0 (sklearn's default ``zero_division`` result, without its warning).
    F1 is ``2 tp / (2 tp + fp + fn)``, which equals ``2PR / (P + R)`` whenever defined.
    """
    xp = _xp(confusion)
    cm = xp.asarray(confusion)
    tp = xp.diagonal(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    return {
        "precision": _div(xp, tp, predicted, 0.0),
        "recall": _div(xp, tp, support, 0.0),
        "f1": _div(xp, 2 * tp, support + predicted, 0.0),
        "support": support,
    }


def macro_f1(confusion: ArrayLike) -> Any:
    """Unweighted mean of per-class F1 over *all* ``C`` classes of the matrix.

    A class absent from both labels and preds has F1 0 and still counts. This equals
    ``sklearn.metrics.f1_score(average="macro", labels=range(C))``; it is *lower* than sklearn
    with inferred labels, which drops such classes.
    """
    xp = _xp(confusion)
    return xp.mean(precision_recall_f1(confusion)["f1"])


def roc_auc(labels01: ArrayLike, scores: ArrayLike, mask: ArrayLike | None = None) -> Any:
    """Binary ROC-AUC = Mann-Whitney U / (n_pos * n_neg), ties counted 1/2.

    Equivalent to average ranks for ties, hence equal to ``sklearn.metrics.roc_auc_score``.
    Positives are ``labels01 > 0`` (so {0, 1}, bool and {-1, 1} all work). NaN when the
    unmasked data lack either class. O(n log n).
    """
    xp = _xp(labels01, scores, mask)
    f = _float(xp)
    y = _flat(xp, labels01)
    s = _flat(xp, scores)
    n = s.shape[0]
    if n == 0:
        return xp.asarray(math.nan, dtype=f)
    w = _valid(xp, mask, n).astype(f)
    pos = w * (y > 0)
    neg = w - pos
    order = xp.argsort(s)  # tie groups are pooled below, so stability is irrelevant
    s_sorted = s[order]
    # Tie groups of equal scores, numbered 0, 1, ... in increasing score order.
    starts = xp.concatenate([xp.ones(1, dtype=bool), s_sorted[1:] != s_sorted[:-1]])
    group = xp.cumsum(starts) - 1
    if xp is np:
        pos_g = np.bincount(group, weights=pos[order], minlength=n)
        neg_g = np.bincount(group, weights=neg[order], minlength=n)
    else:
        pos_g = jax.ops.segment_sum(pos[order], group, num_segments=n)
        neg_g = jax.ops.segment_sum(neg[order], group, num_segments=n)
    neg_below = xp.cumsum(neg_g) - neg_g
    u_stat = xp.sum(pos_g * (neg_below + 0.5 * neg_g))
    return _div(xp, u_stat, xp.sum(pos) * xp.sum(neg), math.nan)


def roc_auc_ovr(
    labels: ArrayLike, probs: ArrayLike, num_classes: int, mask: ArrayLike | None = None
) -> tuple[Any, Any]:
    """One-vs-rest ROC-AUC: ``(per_class (C,), macro mean)``.

    ``probs`` is ``(..., C)`` matching ``labels`` ``(...)``. The macro mean equals
    ``roc_auc_score(labels, probs, multi_class="ovr", average="macro")``. A class with no
    positive (or no negative) sample gets NaN and is left out of the mean (sklearn raises);
    the mean is NaN only if no class is defined.
    """
    xp = _xp(labels, probs, mask)
    y = _flat(xp, labels)
    p = xp.asarray(probs).reshape(-1, num_classes)
    valid = _valid(xp, mask, y.shape[0]) & _in_range(y, num_classes)
    if xp is np:
        per_class = np.stack([roc_auc(y == c, p[:, c], valid) for c in range(num_classes)])
    else:
        # one batched sort under jit instead of C separate ones (C-fold less to compile)
        onehot = y[None, :] == jnp.arange(num_classes)[:, None]
        per_class = jax.vmap(roc_auc, in_axes=(0, 0, None))(onehot, p.T, valid)
    defined = ~xp.isnan(per_class)
    macro = _div(xp, xp.sum(xp.where(defined, per_class, 0.0)), xp.sum(defined), math.nan)
    return per_class, macro


def _py(x: Any) -> float | None:
    """Python float, NaN -> None (strict JSON has no NaN)."""
    v = float(x)
    return None if math.isnan(v) else v


def _names(names: Sequence[str] | None, n: int, what: str) -> list[str]:
    if names is None:
        return [str(i) for i in range(n)]
    names = [str(s) for s in names]
    if len(names) != n or len(set(names)) != n:
        raise ValueError(f"need {n} distinct {what} names, got {len(names)}: {names[:10]}")
    return names


def classification_report(
    labels: ArrayLike,
    preds: ArrayLike,
    num_classes: int,
    *,
    class_names: Sequence[str] | None = None,
    probs: ArrayLike | None = None,
    mask: ArrayLike | None = None,
) -> dict[str, Any]:
    """JSON-friendly summary (host-side, numpy; not jittable).

    Keys: ``num_samples``, ``accuracy``, ``macro_precision``, ``macro_recall``, ``macro_f1``
    (all over the ``num_classes`` classes, see :func:`macro_f1`), ``per_class``
    (``{name: {precision, recall, f1, support}}``), ``confusion_matrix`` (list of lists, rows =
    true). With ``probs``, ``roc_auc``: for 2 classes a float, the AUC of ``probs[:, 1]`` (or of
    ``probs`` itself if 1-D); otherwise ``{"macro": ..., "per_class": {name: ...}}`` one-vs-rest
    (see :func:`roc_auc_ovr`).
    Undefined values (NaN) are reported as ``None``. Class names default to ``"0", "1", ...``.
    """
    names = _names(class_names, num_classes, "class")
    y = np.asarray(labels).reshape(-1)
    p = np.asarray(preds).reshape(-1)
    m = None if mask is None else np.asarray(mask).reshape(-1)
    cm = confusion_matrix(y, p, num_classes, m)
    prf = precision_recall_f1(cm)
    total = int(cm.sum())
    report: dict[str, Any] = {
        "num_samples": total,
        "accuracy": _py(_div(np, np.trace(cm), total, math.nan)),
        "macro_precision": float(np.mean(prf["precision"])),
        "macro_recall": float(np.mean(prf["recall"])),
        "macro_f1": float(np.mean(prf["f1"])),
        "per_class": {
            name: {
                "precision": float(prf["precision"][c]),
                "recall": float(prf["recall"][c]),
                "f1": float(prf["f1"][c]),
                "support": int(prf["support"][c]),
            }
            for c, name in enumerate(names)
        },
        "confusion_matrix": cm.tolist(),
    }
    if probs is not None:
        pr = np.asarray(probs, dtype=np.float64)
        if num_classes == 2:
            pos_scores = pr.reshape(-1) if pr.ndim == 1 else pr.reshape(-1, 2)[:, 1]
            valid = _valid(np, m, y.shape[0]) & _in_range(y, 2)
            report["roc_auc"] = _py(roc_auc(y == 1, pos_scores, valid))
        else:
            per_class, macro = roc_auc_ovr(y, pr, num_classes, m)
            report["roc_auc"] = {
                "macro": _py(macro),
                "per_class": {n: _py(a) for n, a in zip(names, per_class, strict=True)},
            }
    return report


def per_group_accuracy(
    labels: ArrayLike,
    preds: ArrayLike,
    groups: ArrayLike,
    num_groups: int,
    mask: ArrayLike | None = None,
) -> Any:
    """``(num_groups,)`` accuracy within each group id; NaN for an empty group.

    Group ids outside ``[0, num_groups)`` are ignored.
    """
    xp = _xp(labels, preds, groups, mask)
    g = _flat(xp, groups)
    valid = _valid(xp, mask, g.shape[0]) & _in_range(g, num_groups)
    correct = valid & (_flat(xp, labels) == _flat(xp, preds))
    counts = _bincount(xp, g, valid, num_groups)
    hits = _bincount(xp, g, correct, num_groups)
    return _div(xp, hits, counts, math.nan)


def per_group_report(
    labels: ArrayLike,
    preds: ArrayLike,
    groups: ArrayLike,
    num_groups: int,
    num_classes: int,
    group_names: Sequence[str] | None = None,
    *,
    mask: ArrayLike | None = None,
) -> dict[str, dict[str, Any]]:
    """``{group_name: {"accuracy", "macro_f1", "count"}}`` (host-side, JSON-friendly).

    One pass builds all per-group confusion matrices. ``macro_f1`` averages over all
    ``num_classes`` classes (absent classes count as 0, see :func:`macro_f1`). Elements with
    out-of-range group/label/pred are ignored. Empty groups: count 0, metrics ``None``.
    """
    names = _names(group_names, num_groups, "group")
    g = np.asarray(groups).reshape(-1).astype(np.int64)
    y = np.asarray(labels).reshape(-1).astype(np.int64)
    p = np.asarray(preds).reshape(-1).astype(np.int64)
    valid = (
        _valid(np, None if mask is None else np.asarray(mask), g.shape[0])
        & _in_range(g, num_groups)
        & _in_range(y, num_classes)
        & _in_range(p, num_classes)
    )
    idx = (g * num_classes + y) * num_classes + p
    cms = _bincount(np, idx, valid, num_groups * num_classes * num_classes)
    cms = cms.reshape(num_groups, num_classes, num_classes)
    out: dict[str, dict[str, Any]] = {}
    for k, name in enumerate(names):
        cm = cms[k]
        count = int(cm.sum())
        out[name] = {
            "accuracy": float(np.trace(cm) / count) if count else None,
            "macro_f1": float(macro_f1(cm)) if count else None,
            "count": count,
        }
    return out


# --- Binary (e.g. segmentation) scores over a grid of thresholds ---------------------------
# Pixels are pooled over a whole split (MARIDA's convention), so a split is summarised by two
# histograms of the positive-class score, one for positive and one for negative pixels;
# every threshold k / num_bins is then scored exactly from their suffix sums.


def threshold_histograms(
    scores: ArrayLike, labels01: ArrayLike, num_bins: int, mask: ArrayLike | None = None
) -> tuple[Any, Any]:
    """``(pos_hist, neg_hist)``, each ``(num_bins,)``: counts of positive / negative elements
    whose score falls in bin ``floor(score * num_bins)`` (scores in [0, 1], clipped).

    ``score >= k / num_bins`` holds exactly for the elements in bins ``k`` and above, which is
    what :func:`threshold_sweep` uses. Positives are ``labels01 > 0``. Jittable.
    """
    xp = _xp(scores, labels01, mask)
    s = _flat(xp, scores)
    y = _flat(xp, labels01) > 0
    valid = _valid(xp, mask, s.shape[0])
    idx = xp.clip(xp.floor(s * num_bins), 0, num_bins - 1).astype(xp.int32)
    return (_bincount(xp, idx, valid & y, num_bins),
            _bincount(xp, idx, valid & ~y, num_bins))


def binary_scores(tp: ArrayLike, fp: ArrayLike, fn: ArrayLike) -> dict[str, Any]:
    """Precision, recall, F1 and IoU of the positive class (0 where undefined, like sklearn)."""
    xp = _xp(tp, fp, fn)
    tp, fp, fn = (xp.asarray(v) for v in (tp, fp, fn))
    return {"precision": _div(xp, tp, tp + fp, 0.0), "recall": _div(xp, tp, tp + fn, 0.0),
            "f1": _div(xp, 2 * tp, 2 * tp + fp + fn, 0.0), "iou": _div(xp, tp, tp + fp + fn, 0.0)}


def threshold_sweep(pos_hist: ArrayLike, neg_hist: ArrayLike) -> dict[str, Any]:
    """Scores at every threshold ``k / K``, ``k = 0 .. K-1`` (predict positive if score >= t).

    Returns ``thresholds``, ``tp``, ``fp``, ``fn`` and the :func:`binary_scores`, each ``(K,)``.
    """
    xp = _xp(pos_hist, neg_hist)
    pos, neg = xp.asarray(pos_hist), xp.asarray(neg_hist)
    k = pos.shape[0]
    tp = xp.cumsum(pos[::-1])[::-1]  # suffix sums: elements in bin >= k
    fp = xp.cumsum(neg[::-1])[::-1]
    fn = xp.sum(pos) - tp
    return {"thresholds": xp.arange(k) / k, "tp": tp, "fp": fp, "fn": fn,
            **binary_scores(tp, fp, fn)}


def best_threshold(sweep: dict[str, Any], metric: str = "f1") -> int:
    """Index of the threshold with the highest ``metric``, threshold 0 excluded (it calls
    everything positive); the lowest such threshold on ties. Host-side."""
    values = np.asarray(sweep[metric], dtype=np.float64)[1:]
    return int(np.argmax(values)) + 1

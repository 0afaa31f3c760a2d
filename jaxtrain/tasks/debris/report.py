"""Debris pictures in the run report (`jaxtrain.report` hook): the threshold sweep of the test
split with the validation-chosen threshold, and predicted vs true masks of a few test patches
beside an RGB composite.

The masks come from the saved test predictions (`prob_u8`: the debris probability map as
uint8, in the test split's patch order, see task.predict_fn); images and true masks are read
from the run's data file (results.json data.path). Runs saved before `prob_u8` existed, or
whose data file is gone, get the sweep only.
"""

from __future__ import annotations

import os

import h5py
import numpy as np

from jaxtrain.report import Figure, Out
from jaxtrain.report import plots as rp
from jaxtrain.run_files import RunFiles
from jaxtrain.task import ReportHook

TILES = 4  # test patches drawn: those with the most labelled debris
RGB_BANDS = ("B4", "B3", "B2")  # red, green, blue


def figures(run: RunFiles, out: Out) -> list[Figure]:
    report = (run.results or {}).get("test_report", {})
    chosen = report.get("threshold", {}).get("chosen")
    figs = []
    sweep = report.get("sweep")
    if sweep:
        curves = {k: np.asarray(sweep[k]) for k in ("precision", "recall", "f1", "iou")}
        path = rp.threshold_sweep_png(
            out.path("debris_threshold_sweep.png"), np.asarray(sweep["thresholds"]), curves,
            chosen=chosen, chosen_label="threshold chosen on validation",
            title=f"{run.name}: debris pixels, test threshold sweep")
        figs.append(out.figure("Threshold sweep, test pixels", "Debris", path,
                               "Pixel-pooled scores of the debris class against the "
                               "probability threshold."))
    test = run.predictions("test")
    data_path = (run.results or {}).get("data", {}).get("path", "")
    if test is not None and "prob_u8" in test and os.path.exists(data_path):
        path = _masks_png(run, test["prob_u8"], data_path, 0.5 if chosen is None else chosen,
                          out)
        figs.append(out.figure("Predicted vs true masks, test patches", "Debris", path,
                               "Test patches with the most labelled debris; errors at the "
                               "threshold chosen on validation."))
    return figs


def _rgb(image: np.ndarray, bands: list[str]) -> np.ndarray:
    """An RGB composite (H, W, 3) in [0, 1], each band stretched between its 2nd and 98th
    percentiles (reflectances are small and dark otherwise)."""
    idx = [bands.index(b) if b in bands else i for i, b in enumerate(RGB_BANDS)]
    rgb = image[..., idx].astype(np.float64)
    lo, hi = np.percentile(rgb, 2, axis=(0, 1)), np.percentile(rgb, 98, axis=(0, 1))
    return np.clip((rgb - lo) / np.maximum(hi - lo, 1e-9), 0, 1)


def _masks_png(run: RunFiles, prob_u8: np.ndarray, data_path: str, threshold: float,
               out: Out) -> str:
    from jaxtrain.tasks.debris.reader import read_debris_file

    info = read_debris_file(data_path, scan=False)
    rows = info.splits["test"]  # predictions follow this order (DebrisSource, unshuffled)
    with h5py.File(data_path, "r") as f:
        masks = f["masks"][rows]  # rows are sorted, as h5py wants
        debris = (masks == 1).sum(axis=(1, 2))
        picked = np.argsort(-debris, kind="stable")[:min(TILES, len(rows))]
        images = [np.asarray(f["images"][int(rows[i])]) for i in picked]
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    truth_cmap = ListedColormap(["#f4f4f4", "#8b0000"])
    truth_cmap.set_bad("#b0b0b0")  # unlabelled pixels
    fig = rp.new_figure(13, 0.5 + 3.2 * len(picked))
    for r, (i, image) in enumerate(zip(picked, images, strict=True)):
        truth = masks[i]
        prob = prob_u8[i].astype(np.float64) / 255.0
        pred = prob >= threshold
        labelled = (truth == 0) | (truth == 1)
        errors = np.zeros(truth.shape, np.int8)  # 0 none, 1 TP, 2 FP, 3 FN
        errors[pred & (truth == 1)] = 1
        errors[pred & (truth == 0)] = 2
        errors[~pred & (truth == 1)] = 3
        rgb = _rgb(image, list(info.bands))
        name = info.names[int(rows[i])] if len(info.names) > int(rows[i]) else str(rows[i])
        axes = [fig.add_subplot(len(picked), 4, 4 * r + c + 1) for c in range(4)]
        axes[0].imshow(rgb)
        axes[0].set_title(f"{name}: RGB (B4 B3 B2)", fontsize=9)
        shown = np.ma.masked_where(~labelled, (truth == 1).astype(np.float64))
        axes[1].imshow(shown, cmap=truth_cmap, vmin=0, vmax=1, interpolation="nearest")
        axes[1].set_title(f"true mask ({int(debris[i])} debris px)", fontsize=9)
        image_p = axes[2].imshow(prob, cmap="magma", vmin=0, vmax=1, interpolation="nearest")
        fig.colorbar(image_p, ax=axes[2], fraction=0.046, pad=0.02, label="p(debris)")
        axes[2].set_title("predicted probability", fontsize=9)
        axes[3].imshow(rgb * 0.5)
        overlay = np.ma.masked_where(errors == 0, errors)
        axes[3].imshow(overlay, cmap=ListedColormap(["#2ca02c", "#d62728", "#1f77b4"]),
                       vmin=1, vmax=3, interpolation="nearest")
        axes[3].set_title(f"errors at threshold {threshold:.2f}", fontsize=9)
        for ax in axes:
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0].set_ylabel(f"{info.height} x {info.width} pixels", fontsize=8)
    fig.suptitle(f"{run.name}: predicted vs true debris masks (test)")
    fig.legend(handles=[Patch(color="#8b0000", label="debris (true)"),
                        Patch(color="#b0b0b0", label="unlabelled"),
                        Patch(color="#2ca02c", label="found debris"),
                        Patch(color="#d62728", label="false alarm"),
                        Patch(color="#1f77b4", label="missed debris")],
               loc="lower center", ncol=5, fontsize=9)
    fig.tight_layout(rect=(0, 0.4 / (0.5 + 3.2 * len(picked)), 1, 1))  # room for the legend
    return rp.save(fig, out.path("debris_masks.png"), layout=False)


REPORT = ReportHook(
    unit="patches", model_name="SE U-Net",
    # max_prob, a headline number, is a sanity check, not a curve to watch.
    curves=("val/debris_f1", "val/best_f1", "val/best_iou", "val/best_threshold"),
    figures=figures)

"""Figures written into a run's workdir (PNG files), drawn with matplotlib's Agg backend.

matplotlib is imported inside each function: it is slow to import and only runs need it that
draw something.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np


def confusion_matrix_png(path: str | os.PathLike[str], matrix: np.ndarray,
                         class_names: Sequence[str], title: str = "Confusion matrix") -> str:
    """Writes a (C, C) count matrix (rows = true, columns = predicted) as a PNG; returns path.

    Cells show the count and the row percentage (recall per true class); colour is the row
    fraction, so a rare class is as readable as a common one. Written atomically.
    """
    fig = confusion_matrix_figure(matrix, class_names, title)
    path = os.fspath(path)
    tmp = path + ".tmp.png"
    fig.savefig(tmp, format="png")
    os.replace(tmp, path)
    return path


def confusion_matrix_figure(matrix: np.ndarray, class_names: Sequence[str],
                            title: str = "Confusion matrix", dpi: int = 100) -> Any:
    """The matplotlib Figure of `confusion_matrix_png` (also rendered for TensorBoard)."""
    # No pyplot: no global state and no GUI backend; the Agg canvas renders the PNG.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    m = np.asarray(matrix, dtype=np.int64)
    k = len(class_names)
    if m.shape != (k, k):
        raise ValueError(f"confusion matrix of shape {m.shape} for {k} class names")
    rows = m.sum(axis=1, keepdims=True)
    frac = np.divide(m, rows, out=np.zeros(m.shape, float), where=rows > 0)
    size = 1.6 + 1.1 * k
    fig = Figure(figsize=(size, size * 0.9), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{m[i, j]}\n{100 * frac[i, j]:.0f}%", ha="center", va="center",
                    color="white" if frac[i, j] > 0.5 else "black", fontsize=9)
    ax.set_xticks(range(k), labels=list(class_names), rotation=30, ha="right")
    ax.set_yticks(range(k), labels=list(class_names))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    return fig

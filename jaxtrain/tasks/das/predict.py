"""Inference on new recordings: per-window and per-file predictions written as CSV."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from jaxtrain.cli import one_line
from jaxtrain.data.padding import pad_rows
from jaxtrain.tasks.das.evaluation import file_decision
from jaxtrain.tasks.das.model import build_model, class_probabilities
from jaxtrain.tasks.das.reader import Recording, list_recordings, open_recording
from jaxtrain.tasks.das.schema import CLASS_NAMES, NOISE
from jaxtrain.tasks.das.task import check_recording
from jaxtrain.tasks.das.windows import normalize_per_channel


def _recordings(input_path: str) -> list[str]:
    if os.path.isdir(input_path):
        files = list_recordings(input_path)
        if not files:
            raise FileNotFoundError(f"no .h5/.hdf5 files in {input_path}")
        return files
    return [input_path]


def _batches(rec: Recording, window: int, stride: int, batch_size: int
             ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(starts, normalized windows (n, C, window)) per batch; one block read per batch."""
    starts = np.arange((rec.num_samples - window) // stride + 1, dtype=np.int64) * stride
    for b in range(0, len(starts), batch_size):
        s = starts[b:b + batch_size]
        block = rec.read(int(s[0]), int(s[-1]) + window)  # (C, span): NaN/inf raise here
        views = np.lib.stride_tricks.sliding_window_view(block, window, axis=1)[:, ::stride]
        yield s, normalize_per_channel(views.transpose(1, 0, 2))


def predict(config: ml_collections.ConfigDict, variables: dict[str, Any], input_path: str,
            output_path: str, batch_size: int, *, workdir: str | None = None
            ) -> dict[str, Any]:
    """Classify every window of one recording or of every .h5/.hdf5 file in a directory.

    Windows (`data.window` samples every `data.eval_stride`) are read a batch at a time (one
    contiguous block per batch), so a recording of any size streams through in bounded memory.

    Writes two CSV files:
      `output_path`, one row per input file: file, status ("ok" | "error"), prediction,
        p_earthquake, p_quarry_blast, p_noise (the file scores of `evaluation.file_decision`),
        max_event_prob, num_windows, start_time, error (the one-line reason, for error rows).
      `<output_path without .csv>.windows.csv`, one row per window of the files that were
        processed: file, start_sample, start_s, p_earthquake, p_quarry_blast, p_noise,
        prediction.
    A file that cannot be read (not HDF5, wrong layout, other channel count or sampling rate,
    shorter than a window, NaN/inf samples) becomes an error row and is logged; the others are
    still processed. Raises ValueError (the CLI exits 2) only when no file could be processed,
    after writing both CSVs.
    Returns a summary: files, processed, windows, predictions per class, errors, outputs.
    """
    d = config.data
    model = build_model(config)
    params = jax.tree.map(jnp.asarray, variables["params"])

    @jax.jit
    def forward(params, x):
        return class_probabilities(model, params, x)

    files = _recordings(input_path)
    base = output_path[:-4] if output_path.lower().endswith(".csv") else output_path
    windows_path = base + ".windows.csv"
    for p in (output_path, windows_path):
        os.makedirs(os.path.dirname(os.path.abspath(p)), exist_ok=True)
    prob_cols = [f"p_{c}" for c in CLASS_NAMES]
    file_fields = ["file", "status", "prediction", *prob_cols, "max_event_prob", "num_windows",
                   "start_time", "error"]
    summary: dict[str, Any] = {"files": len(files), "processed": 0, "windows": 0,
                               "predictions": dict.fromkeys(CLASS_NAMES, 0), "errors": [],
                               "output": os.path.abspath(output_path),
                               "windows_output": os.path.abspath(windows_path)}
    with open(output_path, "w", newline="") as ff, open(windows_path, "w", newline="") as wf:
        file_csv = csv.DictWriter(ff, file_fields)
        win_csv = csv.writer(wf)
        file_csv.writeheader()
        win_csv.writerow(["file", "start_sample", "start_s", *prob_cols, "prediction"])
        for path in files:
            try:
                rec = open_recording(path, d.layout)
                check_recording(rec, config)
                starts, probs = [], []
                with rec:
                    pending = None  # dispatch the next batch before fetching the last one
                    for s, x in _batches(rec, d.window, d.eval_stride, batch_size):
                        n = len(s)
                        out = forward(params, pad_rows(x, batch_size))
                        if pending is not None:
                            probs.append(np.asarray(pending[0])[:pending[1]])
                        pending = (out, n)
                        starts.append(s)
                    probs.append(np.asarray(pending[0])[:pending[1]])
            except (OSError, ValueError, KeyError, TypeError, RuntimeError) as e:
                # One unreadable recording must not end a run over hundreds of them.
                msg = one_line(e)
                if path not in msg:
                    msg = f"{path}: {msg}"
                logging.error("skipping %s", msg)
                summary["errors"].append({"file": path, "error": msg})
                file_csv.writerow({"file": path, "status": "error", "error": msg})
                continue
            starts_a, probs_a = np.concatenate(starts), np.concatenate(probs).astype(np.float64)
            decision, scores = file_decision(probs_a, event_threshold=d.event_threshold)
            for s, p in zip(starts_a, probs_a, strict=True):
                win_csv.writerow([path, int(s), round(s / rec.sampling_rate, 4),
                                  *(f"{v:.5f}" for v in p), CLASS_NAMES[int(p.argmax())]])
            file_csv.writerow({"file": path, "status": "ok", "prediction": CLASS_NAMES[decision],
                               **{c: f"{v:.5f}" for c, v in zip(prob_cols, scores, strict=True)},
                               "max_event_prob": f"{1.0 - probs_a[:, NOISE].min():.5f}",
                               "num_windows": len(starts_a), "start_time": rec.start_time or "",
                               "error": ""})
            summary["processed"] += 1
            summary["windows"] += len(starts_a)
            summary["predictions"][CLASS_NAMES[decision]] += 1
    if not summary["processed"]:
        first = summary["errors"][0]["error"] if summary["errors"] else "no input"
        raise ValueError(f"no file could be processed ({len(files)} failed; first: {first}); "
                         f"error rows in {output_path}")
    return summary

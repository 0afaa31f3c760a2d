"""labels.json: the class of each recording, and from its events the class of each window.

``labels.json`` sits beside the recordings and maps a file's base name to an entry
``{"label": "earthquake" | "quarry_blast" | "noise", "events": [{"first_arrival_s", "end_s",
...}], ...}`` or just the label string (`jaxtrain.tasks.das.label` writes it by hand,
`synthetic.generate` with event times).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from absl import logging

from jaxtrain import files
from jaxtrain.tasks.das.reader import list_recordings
from jaxtrain.tasks.das.schema import CLASS_NAMES, LABELS_FILE, NOISE


def load_labels(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``labels.json`` of a data directory: file name -> label entry."""
    labels = files.read_json(os.path.join(os.fspath(directory), LABELS_FILE))
    if not isinstance(labels, dict):
        raise ValueError(f"{os.path.join(os.fspath(directory), LABELS_FILE)}: expected an "
                         "object {file name: {\"label\": ...}}")
    return labels


def entry_label(entry: Any) -> Any:
    """The label an entry gives: its "label" field, or the entry itself when it is a string
    (not checked against `CLASS_NAMES`)."""
    return entry.get("label") if isinstance(entry, Mapping) else entry


def labelled_files(directory: str, labels: Mapping[str, Any]) -> list[str]:
    """Sorted paths of the recordings named in `labels` (each must exist with a known label);
    recordings without an entry are left out with a warning."""
    on_disk = set(list_recordings(directory))
    files = []
    for name in sorted(labels):
        path = os.path.join(directory, name)
        if path not in on_disk:
            raise FileNotFoundError(f"{path}: named in {LABELS_FILE} but not found")
        if entry_label(labels[name]) not in CLASS_NAMES:
            raise ValueError(f"{path}: unknown label {entry_label(labels[name])!r} in "
                             f"{LABELS_FILE}; expected one of {CLASS_NAMES}")
        files.append(path)
    unlabelled = len(on_disk) - len(files)
    if unlabelled:
        logging.warning("%d recordings in %s have no label and are left out", unlabelled,
                        directory)
    return files


def window_labels(index: np.ndarray, files: Sequence[str | os.PathLike[str]],
                  labels: Mapping[str, Any], window: int, sampling_rate: float,
                  *, min_overlap_s: float = 1.0) -> np.ndarray:
    """Per-window class ids (int32, `CLASS_NAMES` order) from file-level event annotations.

    `index` holds (file id, start sample) rows, file ids pointing into `files`.
    Rule: a window gets its file's event class ("earthquake" / "quarry_blast") when it overlaps
    one of the file's events, the interval [first_arrival_s, end_s], by at least
    `min_overlap_s`; every other window is "noise" (including every window of a noise file).
    Why: a 4 s window far from the event holds only traffic and instrument noise, so labelling
    it with the file's class would teach the model to guess the class from noise; a window
    that merely grazes the event's faint coda is closer to noise than to the event.

    An event without ``first_arrival_s``/``end_s`` falls back to ``t0`` and ``t0 + 10 s``; an
    event file with no event times (e.g. labelled by hand) gives every window its class. A file
    missing from `labels` raises ValueError naming it.
    """
    index = np.asarray(index, np.int64).reshape(-1, 2)
    out = np.full(len(index), NOISE, np.int32)
    min_overlap = float(min_overlap_s) * sampling_rate
    for i, path in enumerate(files):
        name = os.path.basename(os.fspath(path))
        if name not in labels:
            raise ValueError(f"{os.fspath(path)}: no entry in the labels ({LABELS_FILE})")
        entry = labels[name]
        label = entry_label(entry)
        if label not in CLASS_NAMES:
            raise ValueError(f"{os.fspath(path)}: unknown label {label!r}; "
                             f"expected one of {CLASS_NAMES}")
        events = entry.get("events", []) if isinstance(entry, Mapping) else []
        rows = np.flatnonzero(index[:, 0] == i)
        if label == "noise" or not rows.size:
            continue
        if not events:  # a file labelled by hand without event times: the whole file counts
            out[rows] = CLASS_NAMES.index(label)
            continue
        start = index[rows, 1].astype(np.float64)
        overlap = np.zeros(rows.size)
        for ev in events:
            a = float(ev.get("first_arrival_s", ev.get("t0", 0.0))) * sampling_rate
            b = float(ev.get("end_s", ev.get("t0", 0.0) + 10.0)) * sampling_rate
            overlap = np.maximum(overlap, np.minimum(start + window, b) - np.maximum(start, a))
        out[rows[overlap >= min_overlap]] = CLASS_NAMES.index(label)
    return out

"""What a workdir holds, read back: config, results, history, predictions, TensorBoard scalars.

Reports and comparisons are made from these files only (never by retraining or
re-evaluating), so they work on a finished run and on one still training (then only
config.json, history.csv and the TensorBoard events exist yet). Every file is optional here:
an older run without, say, `time_breakdown` in results.json simply has fewer pictures.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import glob
import math
import os
import struct
from typing import Any

import numpy as np

from jaxtrain import files

PREDICTIONS_DIR = "predictions"  # as jaxtrain.evaluate writes them (no jax import here)
RESULTS_FILE = "results.json"
CONFIG_FILE = "config.json"
NETWORK = "network"  # the trained network's name where a run deploys it
METADATA = "metadata.json"  # an exported bundle's (jaxtrain.export)
VARIABLES = "variables.npz"


def network_deployed(test: dict[str, Any]) -> dict[str, Any]:
    """results.json "deployed" of a run that deploys its trained network."""
    return {"model": NETWORK, "models": [NETWORK], "test": test}


def deployed(results: dict[str, Any]) -> dict[str, Any]:
    """The model a finished run deploys (predict and export use it; its test metrics are the
    headline): {"model": name, "models": every model the run holds, "test": metrics}. Runs
    from before results.json recorded it deploy the network."""
    return results.get("deployed") or network_deployed(results.get("test", {}))


def chosen_threshold(workdir: str | None) -> float | None:
    """The decision threshold a finished run chose on validation (results.json
    `test_report.threshold.chosen`: debris, glaucoma), or None: no such run or no such choice
    (then predict falls back to `config.predict.threshold`)."""
    results = _json(os.path.join(workdir, RESULTS_FILE)) if workdir else None
    try:
        value = float(results["test_report"]["threshold"]["chosen"])
    except (KeyError, TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


@dataclasses.dataclass
class RunFiles:
    """One workdir's saved files. `results` is None while the run is still training."""

    workdir: str
    config: dict[str, Any]
    results: dict[str, Any] | None
    history: list[dict[str, float]]

    @property
    def name(self) -> str:
        return os.path.basename(os.path.normpath(self.workdir))

    @property
    def system(self) -> str:
        return str(self.config.get("task", "?"))

    @property
    def finished(self) -> bool:
        return self.results is not None

    @property
    def planned_epochs(self) -> int | None:
        return self.config.get("train", {}).get("epochs")

    def predictions(self, split: str) -> dict[str, np.ndarray] | None:
        """`predictions/<split>.npz` (None when the run has not saved them yet)."""
        return _predictions(os.path.join(self.workdir, PREDICTIONS_DIR, f"{split}.npz"))

    @functools.cached_property
    def scalars(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Every TensorBoard scalar tag -> (steps, values), in step order, from all event files
        under tb/ (a resumed run appends a new file; later files win on repeated steps)."""
        return read_tb_scalars(os.path.join(self.workdir, "tb"))

    def column(self, key: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(epochs, values) of one history.csv column, rows without a value left out."""
        rows = [(r["epoch"], r[key]) for r in self.history
                if math.isfinite(r.get(key, math.nan))]
        if not rows:
            return None
        e, v = zip(*rows, strict=True)
        return np.asarray(e), np.asarray(v)

    def headline(self) -> dict[str, float]:
        """The deployed model's headline test metrics (results.json), in the system's order;
        {} while the run is still training."""
        if self.results is None:
            return {}
        test = deployed(self.results)["test"]
        keys = [k for k in self.results.get("headline", []) if k in test] or sorted(test)
        return {k: test[k] for k in keys if isinstance(test[k], int | float)}


def load_run(workdir: str) -> RunFiles:
    """The saved files of `workdir`; FileNotFoundError when it holds neither a config.json
    nor a history.csv (not a jaxtrain workdir)."""
    workdir = os.path.abspath(workdir)
    config = _json(os.path.join(workdir, CONFIG_FILE))
    history = read_history(os.path.join(workdir, "history.csv"))
    if config is None and not history:
        raise FileNotFoundError(f"{workdir}: no config.json or history.csv (not a jaxtrain "
                                "workdir, or a run that has not started yet)")
    return RunFiles(workdir=workdir, config=config or {},
                    results=_json(os.path.join(workdir, RESULTS_FILE)), history=history)


def load_config(workdir: str) -> Any:
    """The `ml_collections.ConfigDict` a run (or bundle) was trained with: its config.json."""
    import ml_collections

    path = os.path.join(os.path.abspath(os.path.expanduser(workdir)), CONFIG_FILE)
    return ml_collections.ConfigDict(files.read_json(path, missing="not a jaxtrain run (no "
                                                              f"{CONFIG_FILE})"))


def load_trained(workdir: str) -> tuple[Any, dict[str, Any], int]:
    """(config, {"params", "model_state"} as host arrays, step) of a finished or interrupted
    run (its best checkpoint, else its latest) or of an exported bundle's directory."""
    workdir = os.path.abspath(os.path.expanduser(workdir))
    if is_bundle(workdir):
        return load_bundle_run(workdir)
    from jaxtrain import checkpoint  # orbax and jax: only where a checkpoint is read

    config = load_config(workdir)
    es = config.early_stopping
    variables, step = checkpoint.load_for_inference(os.path.join(workdir, "checkpoints"),
                                                    best_metric=es.metric, best_mode=es.mode)
    return config, variables, step


def save_variables(path: str, variables: dict[str, Any]) -> None:
    """Nested dicts of arrays -> one .npz, keys "params/block/kernel"."""
    flat: dict[str, np.ndarray] = {}

    def walk(prefix: str, tree: Any) -> None:
        if isinstance(tree, dict):
            if not tree:
                flat[prefix + "/"] = np.zeros(0)  # keeps an empty dict (e.g. no model_state)
            for k, v in tree.items():
                if "/" in str(k):
                    raise ValueError(f"variable name {k!r} contains '/'")
                walk(f"{prefix}/{k}" if prefix else str(k), v)
        else:
            flat[prefix] = np.asarray(tree)

    walk("", variables)
    with files.atomic_path(path) as tmp:
        np.savez(tmp, **flat)


def load_variables(path: str) -> dict[str, Any]:
    """The nested dicts `save_variables` wrote."""
    out: dict[str, Any] = {}
    with np.load(path) as z:
        for key in z.files:
            *parents, leaf = key.split("/")
            node = out
            for p in parents:
                node = node.setdefault(p, {})
            if leaf:
                node[leaf] = z[key]
    return out


def is_bundle(path: str) -> bool:
    return os.path.isfile(os.path.join(path, METADATA)) and os.path.isfile(
        os.path.join(path, VARIABLES))


def load_bundle_run(path: str) -> tuple[Any, dict[str, Any], int]:
    """(config, {"params", "model_state"}, checkpoint step) of a bundle, like a run's."""
    import ml_collections

    config = ml_collections.ConfigDict(files.read_json(os.path.join(path, CONFIG_FILE)))
    meta = files.read_json(os.path.join(path, METADATA))
    variables = load_variables(os.path.join(path, VARIABLES))
    return config, {"params": variables.get("params", {}),
                    "model_state": variables.get("model_state", {})}, meta["checkpoint_step"]


def read_history(path: str) -> list[dict[str, float]]:
    """history.csv rows as floats (empty cells -> NaN); [] when the file does not exist."""
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return [{k: _float(v) for k, v in row.items() if k is not None}
                for row in csv.DictReader(f)]


def read_tb_scalars(logdir: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Scalar summaries of the tfevents files in `logdir` (no TensorBoard install needed).

    The files are TFRecords (uint64 length, crc, an `Event` protobuf, crc). The few fields
    needed are decoded here (`_fields`): importing tensorboardX's generated protos costs
    seconds. A record cut short by a running writer ends the file quietly.
    """
    points: dict[str, dict[int, float]] = {}
    for path in sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*"))):
        with open(path, "rb") as f:
            data = f.read()
        pos = 0
        while pos + 12 <= len(data):
            (length,) = struct.unpack_from("<Q", data, pos)
            end = pos + 12 + length + 4
            if end > len(data):
                break
            event = _fields(data[pos + 12:pos + 12 + length])
            pos = end
            step = int(event.get(2, [0])[-1])  # Event.step
            for summary in event.get(5, []):  # Event.summary
                for value in _fields(summary).get(1, []):  # Summary.value
                    v = _fields(value)
                    if 1 in v and 2 in v:  # Value.tag, Value.simple_value
                        tag = bytes(v[1][-1]).decode("utf-8", "replace")
                        points.setdefault(tag, {})[step] = float(v[2][-1])
    return {tag: (np.array(sorted(p)), np.array([p[s] for s in sorted(p)]))
            for tag, p in points.items()}


def _fields(buf: bytes) -> dict[int, list[Any]]:
    """Protobuf wire format: field number -> values (varints as int, fixed32 as float,
    fixed64 as double, length-delimited as bytes)."""
    out: dict[int, list[Any]] = {}
    pos, n = 0, len(buf)
    while pos < n:
        key, pos = _varint(buf, pos)
        field, kind = key >> 3, key & 7
        if kind == 0:
            value, pos = _varint(buf, pos)
        elif kind == 1:
            (value,), pos = struct.unpack_from("<d", buf, pos), pos + 8
        elif kind == 2:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + size], pos + size
        elif kind == 5:
            (value,), pos = struct.unpack_from("<f", buf, pos), pos + 4
        else:  # groups (deprecated) never occur in event files
            raise ValueError(f"unsupported protobuf wire type {kind}")
        out.setdefault(field, []).append(value)
    return out


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def _float(value: str | None) -> float:
    try:
        return float(value) if value not in (None, "") else math.nan
    except ValueError:
        return math.nan


def _json(path: str) -> Any:
    return files.read_json(path, default=None)


def _predictions(path: str) -> dict[str, np.ndarray] | None:
    if not os.path.exists(path):
        return None
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}

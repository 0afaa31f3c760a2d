"""DAS seismic events: earthquake / quarry blast / noise, per window and per recording.

Data: a directory of DAS HDF5 recordings in `config.data.layout` plus a ``labels.json``
(file name -> {"label": "earthquake" | "quarry_blast" | "noise", "events": [{"first_arrival_s",
"end_s", ...}]} or just the label string); `config.data.path` names it, or, when empty,
synthetic recordings are generated once into `config.data.cache_dir` and reused. Whole files
go to train/val/test (stratified by file label), then each file is cut into sliding windows.

Window labels (`das_data.window_labels`): a window overlapping one of its file's events by at
least `data.min_event_overlap_s` gets the file's class, every other window is "noise"; an event
file whose entry has no event times gives all its windows its class. So the model is a 3-class
window classifier: "is there an event in these 4 s, and which kind".

File decision (`das_data.file_decision`): a file holds an event when some window's event
probability 1 - p_noise reaches `data.event_threshold`; its class is the event class with the
larger probability summed over the file's windows; otherwise it is "noise".

Models (config.model.name): "tcn" (dilated residual temporal CNN), "bilstm" (conv stem +
scanned BiLSTM) and "transformer" (time patches + CLS token), all (B, C, T) -> logits.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Iterator
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from jaxtrain import losses, metrics, plots
from jaxtrain.data import configured_or_generated, generated_once, one_line
from jaxtrain.models.das_bilstm import DASBiLSTM
from jaxtrain.models.das_tcn import DASTCN
from jaxtrain.models.das_transformer import DASTransformer
from jaxtrain.task import Task
from jaxtrain.tasks import das_data
from jaxtrain.train_step import compute_dtype, runs_in_step

CLASS_NAMES = das_data.CLASS_NAMES
MODELS = ("tcn", "bilstm", "transformer")


# ----------------------------------------------------------------------------- data
def data_dir(config: ml_collections.ConfigDict) -> str:
    """The configured directory, or the synthetic one (generated on first use, then reused)."""
    d = config.data
    if d.path and not os.path.isdir(os.path.expanduser(d.path)):
        raise FileNotFoundError(f"DAS data directory not found: {d.path} (config.data.path)")

    def make(path: str) -> None:
        das_data.generate(path, num_files=d.num_files, duration_s=d.duration_s,
                          sampling_rate=d.sampling_rate, num_channels=d.num_channels,
                          seed=d.seed)

    return configured_or_generated(d.path, "DAS data directory", lambda: generated_once(
        f"das-{d.num_files}x{d.duration_s:g}s-{d.num_channels}ch-{d.sampling_rate:g}hz-"
        f"seed{d.seed}", cache_dir=d.cache_dir, generator_file=das_data.__file__, make=make,
        done=das_data.LABELS_FILE))  # labels.json is written last


def _file_label(entry: Any) -> str:
    return entry["label"] if isinstance(entry, dict) else str(entry)


def labelled_files(directory: str, labels: dict[str, Any]) -> list[str]:
    """Sorted paths of the recordings named in labels.json (each must exist)."""
    on_disk = set(das_data.DASWindowSource.list_files(directory))
    files = []
    for name in sorted(labels):
        path = os.path.join(directory, name)
        if path not in on_disk:
            raise FileNotFoundError(f"{path}: named in {das_data.LABELS_FILE} but not found")
        if _file_label(labels[name]) not in CLASS_NAMES:
            raise ValueError(f"{path}: unknown label {_file_label(labels[name])!r} in "
                             f"{das_data.LABELS_FILE}; expected one of {CLASS_NAMES}")
        files.append(path)
    unlabelled = len(on_disk) - len(files)
    if unlabelled:
        logging.warning("%d recordings in %s have no label and are left out", unlabelled,
                        directory)
    return files


def check_recording(rec: das_data.Recording, config: ml_collections.ConfigDict) -> None:
    """Raises ValueError naming the file unless it matches the configured channels and rate."""
    d = config.data
    if rec.num_channels != d.num_channels:
        raise ValueError(f"{rec.path}: {rec.num_channels} channels, but the model takes "
                         f"{d.num_channels} (config.data.num_channels)")
    if abs(rec.sampling_rate - d.sampling_rate) > 1e-6 * d.sampling_rate:
        raise ValueError(f"{rec.path}: sampled at {rec.sampling_rate:g} Hz, but the model was "
                         f"built for {d.sampling_rate:g} Hz (config.data.sampling_rate)")
    if rec.num_samples < d.window:
        raise ValueError(f"{rec.path}: {rec.num_samples} samples, shorter than one window "
                         f"({d.window})")


def _index(files: list[str], config: ml_collections.ConfigDict, stride: int, directory: str
           ) -> np.ndarray:
    d = config.data
    key = hashlib.sha1(f"{directory}|{d.layout}".encode()).hexdigest()[:12]
    cache = os.path.join(os.path.abspath(os.path.expanduser(d.cache_dir)), "das-index",
                         f"{key}-w{d.window}-s{stride}.npz")
    return das_data.build_window_index(files, d.layout, d.window, stride, cache_path=cache)


# ----------------------------------------------------------------------------- model
def build_model(config: ml_collections.ConfigDict) -> nn.Module:
    """The configured classifier; `config.model` holds its hyper-parameters."""
    m = dict(config.model)
    name = m.pop("name")
    dtype = compute_dtype(config.train.compute_dtype)
    classes = {"tcn": DASTCN, "bilstm": DASBiLSTM, "transformer": DASTransformer}
    if name not in classes:
        raise ValueError(f"unknown DAS model {name!r} (config.model.name); known: {MODELS}")
    for key in ("dilations", "stem_strides"):
        if key in m:
            m[key] = tuple(int(v) for v in m[key])
    return classes[name](num_classes=len(CLASS_NAMES), dtype=dtype, **m)


# ----------------------------------------------------------------------------- task
def build(config: ml_collections.ConfigDict, workdir: str) -> Task:
    d, t = config.data, config.train
    directory = data_dir(config)
    labels = das_data.load_labels(directory)
    files = labelled_files(directory, labels)
    for path in files:  # metadata only: clear errors before any window is read
        check_recording(das_data.open_recording(path, d.layout), config)
    names = [os.path.basename(p) for p in files]
    file_class = np.array([CLASS_NAMES.index(_file_label(labels[n])) for n in names], np.int32)
    splits = das_data.split_files_stratified(
        {n: _file_label(labels[n]) for n in names}, d.split, seed=d.seed)
    split_ids = {s: np.array([names.index(n) for n in splits[s]], np.int64) for s in splits}

    def source(split: str, stride: int) -> das_data.DASWindowSource:
        index = _index(files, config, stride, directory)
        rows = np.isin(index[:, 0], split_ids[split])
        wl = das_data.window_labels(index[rows], files, labels, d.window, d.sampling_rate,
                                    min_overlap_s=d.min_event_overlap_s)
        return das_data.DASWindowSource(files, index[rows], d.layout, d.window, labels=wl,
                                        max_open_files=d.max_open_files)

    train_src = source("train", d.stride)
    val_src, test_src = source("val", d.eval_stride), source("test", d.eval_stride)
    counts = np.bincount(train_src.labels, minlength=len(CLASS_NAMES))
    class_weights = losses.class_weights_from_counts(counts, power=t.class_weight_power)
    sizes = {"files": {s: len(v) for s, v in splits.items()},
             "windows": {"train": len(train_src), "val": len(val_src), "test": len(test_src)}}
    logging.info("DAS data %s: %s; train window labels %s", directory, sizes,
                 dict(zip(CLASS_NAMES, counts.tolist(), strict=True)))

    model = build_model(config)
    cw = jnp.asarray(class_weights, jnp.float32)
    aug = config.augment

    def transform(r: dict) -> dict:  # "start" (int64) is for inference output, not the model
        return {"x": r["x"], "label": r["label"], "file": r["file"]}

    # In the step on GPU/TPU (frees the input pipeline), on the host on CPU (XLA's Gaussian
    # draws cost more there than numpy's); measured in BUILD_NOTES.
    in_step = aug.enabled and runs_in_step(aug.get("where", "auto"), "augment.where")

    def random_transform(r: dict, rng: np.random.Generator) -> dict:
        x = das_data.augment(r["x"], rng, noise=aug.noise, scale=tuple(aug.scale),
                             max_shift=aug.max_shift)
        return {**r, "x": x}

    def init_fn(rng):
        x = jnp.zeros((1, d.num_channels, d.window), jnp.float32)
        return model.init({"params": rng}, x)["params"], {}

    def loss_fn(params, model_state, batch, rng):
        aug_rng, dropout_rng = jax.random.split(rng)
        x = batch["x"]
        if in_step:
            x = das_data.augment_batch(x, aug_rng, noise=aug.noise, scale=tuple(aug.scale),
                                       max_shift=aug.max_shift)
        logits = model.apply({"params": params}, x, train=True, rngs={"dropout": dropout_rng})
        ce = losses.softmax_cross_entropy(logits, batch["label"], class_weights=cw,
                                          label_smoothing=t.label_smoothing)
        acc = jnp.mean(logits.argmax(-1) == batch["label"])
        return ce, ({"cross_entropy": ce, "accuracy": acc}, model_state)

    def predict_fn(params, model_state, batch):
        logits = model.apply({"params": params}, batch["x"], train=False)
        return {"probs": jax.nn.softmax(logits), "label": batch["label"], "file": batch["file"]}

    def evaluate(outputs: dict[str, np.ndarray]):
        return evaluate_outputs(outputs, file_class, names, d.event_threshold)

    def on_test(test_metrics: dict, report: dict) -> dict:
        paths = {}
        for level, title in (("file", "per file"), ("window", "per window")):
            name = "confusion_matrix.png" if level == "file" else "confusion_matrix_windows.png"
            paths[level] = plots.confusion_matrix_png(
                os.path.join(workdir, name), np.array(report[level]["confusion_matrix"]),
                CLASS_NAMES, f"DAS {config.model.name}: test, {title}")
        return {"plots": paths}

    return Task(train_source=train_src, val_source=val_src, test_source=test_src,
                init_fn=init_fn, loss_fn=loss_fn, predict_fn=predict_fn, evaluate=evaluate,
                transform=transform, on_test=on_test,
                random_transform=random_transform if aug.enabled and not in_step else None,
                info={"headline": ["file_accuracy", "file_macro_f1", "accuracy", "macro_f1",
                                   "roc_auc_ovr"],
                      "model": config.model.name,
                      "data": {"path": directory, **sizes, "splits": splits,
                               "train_window_label_counts": counts.tolist(),
                               "class_names": list(CLASS_NAMES),
                               "class_weights": np.asarray(class_weights).tolist()}})


def evaluate_outputs(outputs: dict[str, np.ndarray], file_class: np.ndarray,
                     file_names: list[str], event_threshold: float = 0.5
                     ) -> tuple[dict[str, float], dict[str, Any]]:
    """Window metrics and file metrics (windows aggregated by `das_data.file_decision`).

    Flat keys: accuracy, macro_f1, roc_auc_ovr, <class>_{precision,recall,f1} per window and
    the same prefixed with ``file_`` per file. The report holds both classification reports
    (confusion matrices, rows = true) and one row per file.
    """
    labels, probs = outputs["label"], outputs["probs"]
    k = len(CLASS_NAMES)
    window = metrics.classification_report(labels, probs.argmax(-1), k, class_names=CLASS_NAMES,
                                           probs=probs)
    ids, decisions, scores = das_data.aggregate_files(outputs["file"], probs,
                                                      event_threshold=event_threshold)
    truth = file_class[ids]
    file = metrics.classification_report(truth, decisions, k, class_names=CLASS_NAMES,
                                         probs=scores)
    rows = [{"file": file_names[f], "true": CLASS_NAMES[truth[j]],
             "predicted": CLASS_NAMES[decisions[j]],
             "scores": [round(float(s), 4) for s in scores[j]]} for j, f in enumerate(ids)]
    flat: dict[str, float] = {}
    for prefix, rep in (("", window), ("file_", file)):
        flat[prefix + "accuracy"] = rep["accuracy"]
        flat[prefix + "macro_f1"] = rep["macro_f1"]
        auc = rep.get("roc_auc", {}).get("macro")
        flat[prefix + "roc_auc_ovr"] = float("nan") if auc is None else auc
        for name in CLASS_NAMES:
            for stat in ("precision", "recall", "f1"):
                flat[f"{prefix}{name}_{stat}"] = rep["per_class"][name][stat]
    return flat, {"window": window, "file": file, "files": rows,
                  "file_rule": f"event if max window (1 - p_noise) >= {event_threshold}; "
                               "class = larger summed p_earthquake / p_quarry_blast"}


# ----------------------------------------------------------------------------- inference
def _recordings(input_path: str) -> list[str]:
    if os.path.isdir(input_path):
        files = das_data.DASWindowSource.list_files(input_path)
        if not files:
            raise FileNotFoundError(f"no .h5/.hdf5 files in {input_path}")
        return files
    return [input_path]


def _batches(rec: das_data.Recording, window: int, stride: int, batch_size: int
             ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(starts, normalized windows (n, C, window)) per batch; one block read per batch."""
    starts = np.arange((rec.num_samples - window) // stride + 1, dtype=np.int64) * stride
    for b in range(0, len(starts), batch_size):
        s = starts[b:b + batch_size]
        block = rec.read(int(s[0]), int(s[-1]) + window)  # (C, span): NaN/inf raise here
        views = np.lib.stride_tricks.sliding_window_view(block, window, axis=1)[:, ::stride]
        yield s, das_data.normalize_per_channel(views.transpose(1, 0, 2))


def predict(config: ml_collections.ConfigDict, variables: dict[str, Any], input_path: str,
            output_path: str, batch_size: int, *, workdir: str | None = None
            ) -> dict[str, Any]:
    """Classify every window of one recording or of every .h5/.hdf5 file in a directory.

    Windows (`data.window` samples every `data.eval_stride`) are read a batch at a time (one
    contiguous block per batch), so a recording of any size streams through in bounded memory.

    Writes two CSV files:
      `output_path`, one row per input file: file, status ("ok" | "error"), prediction,
        p_earthquake, p_quarry_blast, p_noise (the file scores of `das_data.file_decision`),
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
        return jax.nn.softmax(model.apply({"params": params}, x, train=False))

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
                rec = das_data.open_recording(path, d.layout)
                check_recording(rec, config)
                starts, probs = [], []
                with rec:
                    pending = None  # dispatch the next batch before fetching the last one
                    for s, x in _batches(rec, d.window, d.eval_stride, batch_size):
                        n = len(s)
                        x = np.pad(x, ((0, batch_size - n), (0, 0), (0, 0)))  # one shape
                        out = forward(params, x)
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
            decision, scores = das_data.file_decision(probs_a, event_threshold=d.event_threshold)
            for s, p in zip(starts_a, probs_a, strict=True):
                win_csv.writerow([path, int(s), round(s / rec.sampling_rate, 4),
                                  *(f"{v:.5f}" for v in p), CLASS_NAMES[int(p.argmax())]])
            file_csv.writerow({"file": path, "status": "ok", "prediction": CLASS_NAMES[decision],
                               **{c: f"{v:.5f}" for c, v in zip(prob_cols, scores, strict=True)},
                               "max_event_prob": f"{1.0 - probs_a[:, das_data.NOISE].min():.5f}",
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

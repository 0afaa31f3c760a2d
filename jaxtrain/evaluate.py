"""Predictions of a split, saved with the run, and the evaluators scored over them.

A finished run keeps `predictions/val.npz` and `predictions/test.npz` (the best checkpoint's
`predict_fn` outputs), so reports, ensembles and new metrics are computed later without
retraining:

    python -m jaxtrain.evaluate --workdir=RUN     # re-scores the saved test predictions

(re-building the task reads the data's metadata, e.g. class and file names; no training).
"""

from __future__ import annotations

import os
import zipfile
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import flags
from jax.experimental import multihost_utils

from jaxtrain import files
from jaxtrain.data import pipeline
from jaxtrain.task import Outputs

PREDICTIONS_DIR = "predictions"


def predict_split(eval_step: Any, state: Any, source: Any,
                  config: ml_collections.ConfigDict, mesh: Any, *,
                  transform: Any = None, batch_transform: Any = None,
                  should_stop: Any = None) -> Outputs:
    """The concatenated `predict_fn` outputs of one pass over `source`, padding dropped.

    Outputs are gathered from all processes. `should_stop()` (optional) is polled between
    batches: when it says so the pass ends early and the caller discards the result.
    """
    it = pipeline.eval_dataset(source, global_batch_size=config.train.eval_batch_size,
                               mesh=mesh, transform=transform,
                               batch_transform=batch_transform,
                               read_threads=config.data.read_threads)
    chunks: list[dict[str, np.ndarray]] = []
    feeder = pipeline.BatchFeeder(iter(it), mesh)
    try:
        for batch in feeder:
            out = eval_step(state, batch)
            out["valid"] = batch["valid"]
            chunks.append(multihost_utils.process_allgather(out, tiled=True))
            if should_stop is not None and should_stop():
                break
    finally:
        feeder.close()
    outputs = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
    valid = outputs.pop("valid").astype(bool)
    return {k: v[valid] for k, v in outputs.items()}


def save_predictions(workdir: str, split: str, outputs: Outputs) -> str:
    """Writes `workdir/predictions/<split>.npz` atomically; returns its path."""
    path = os.path.join(workdir, PREDICTIONS_DIR, f"{split}.npz")
    # The .npz layout written member by member: np.savez would reject an output named "file".
    with files.atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for name, value in outputs.items():
            with z.open(f"{name}.npy", "w") as member:
                np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)
    return path


def load_predictions(workdir: str, split: str) -> Outputs:
    """The saved predictions of `split`; FileNotFoundError naming the file if absent."""
    path = os.path.join(os.path.abspath(workdir), PREDICTIONS_DIR, f"{split}.npz")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no saved predictions (a run saves them when it "
                                "finishes)")
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def rescore(workdir: str) -> dict[str, Any]:
    """Test metrics and report of a finished run, from its saved predictions only."""
    from jaxtrain.run_files import load_config
    from jaxtrain.task import evaluate, load_system

    config = load_config(workdir)
    task = load_system(config.task).build(config, workdir)
    metrics, report = evaluate(task.evaluators, load_predictions(workdir, "test"),
                               load_predictions(workdir, "val"))
    return {"test": metrics, "test_report": report}


if __name__ == "__main__":
    flags.DEFINE_string("workdir", None, "A finished run's workdir.")
    jax.config.update("jax_platforms", "cpu")  # scoring saved arrays needs no accelerator
    from jaxtrain.cli import start

    start(lambda: rescore(flags.FLAGS.workdir)["test"], required=("workdir",), doc=__doc__)

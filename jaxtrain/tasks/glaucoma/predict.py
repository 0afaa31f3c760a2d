"""Referral decisions for new photographs: `python -m jaxtrain.predict --workdir=RUN
--input=DIR_OR_IMAGE --output=predictions.csv`."""

from __future__ import annotations

import csv
import functools
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxtrain.cli import one_line
from jaxtrain.data.padding import pad_rows
from jaxtrain.files import atomic_path
from jaxtrain.run_files import chosen_threshold
from jaxtrain.tasks.glaucoma import images
from jaxtrain.tasks.glaucoma.airogs import find_images, read_labels
from jaxtrain.tasks.glaucoma.model import build_model, referable_probability
from jaxtrain.tasks.glaucoma.synthetic import LABELS_FILE

COLUMNS = ("challenge_id", "path", "probability", "referable", "reference", "error")


def _inputs(input_path: str) -> list[tuple[str, str, str]]:
    """(id, path, reference class) of every image: one file, a folder searched recursively,
    or an AIROGS tree (its labels CSV lists the ids; a listed id without a file is an error
    row)."""
    if os.path.isfile(input_path):
        stem = os.path.splitext(os.path.basename(input_path))[0]
        return [(stem, input_path, "")]
    found = find_images(input_path)
    labels_csv = os.path.join(input_path, LABELS_FILE)
    if os.path.isfile(labels_csv):
        return [(r["challenge_id"], found.get(r["challenge_id"], ""), r["class"])
                for r in read_labels(labels_csv)]
    if not found:
        raise FileNotFoundError(f"{input_path}: no .jpg/.jpeg/.png images found")
    return [(k, p, "") for k, p in sorted(found.items())]


@functools.partial(jax.jit, static_argnums=(0, 1))
def _forward(model: Any, passes: int, variables: dict[str, Any], x: jax.Array) -> jax.Array:
    """The test pass's inference (`model.referable_probability`), compiled once per model."""
    return referable_probability(model, variables, x, passes)


def predict(config: ml_collections.ConfigDict, variables: dict[str, Any], input_path: str,
            output_path: str, batch_size: int, *, threshold: float | None = None,
            workdir: str | None = None) -> dict[str, Any]:
    """Writes the CSV `output_path`: one row per image with the referable-glaucoma
    probability (5-view TTA, as at test), the decision `referable` = probability >= the
    threshold (the given one, else the run's validation-chosen 95%-specificity threshold,
    else `config.predict.threshold`), the reference class when the input is an AIROGS tree,
    and `error` for an image that could not be read (its other columns empty; the rest are
    still predicted). Returns a summary."""
    d = config.data
    if threshold is None:
        threshold = chosen_threshold(workdir)
        threshold = config.predict.threshold if threshold is None else threshold
    model = build_model(config)
    v = jax.device_put({"params": variables["params"], **variables["model_state"]})
    passes = config.eval.tta_passes
    crop = d.get("disc_crop", 0.0)  # the training cache's preprocessing (absent: older runs)

    items = _inputs(input_path)
    probs: dict[int, float] = {}
    errors: dict[int, str] = {}
    pending: list[tuple[int, np.ndarray]] = []

    def run() -> None:
        x = np.stack([img for _, img in pending])
        n = len(x)
        x = jnp.asarray(pad_rows(x, batch_size), jnp.float32)
        p = np.asarray(_forward(model, passes, v, x))[:n]
        probs.update({i: float(q) for (i, _), q in zip(pending, p, strict=True)})
        pending.clear()

    for i, (_, path, _) in enumerate(items):
        if not path:
            errors[i] = "image file not found"
            continue
        try:
            pending.append((i, images.decode(path, d.image_size, d.clahe, disc_crop=crop)))
        except (OSError, ValueError, SyntaxError) as e:
            errors[i] = one_line(e, named=True)
        if len(pending) == batch_size:
            run()
    if pending:
        run()
    referable = 0
    with atomic_path(output_path) as tmp, open(tmp, "w", newline="") as out:
        w = csv.writer(out)
        w.writerow(COLUMNS)
        for i, (cid, path, ref) in enumerate(items):
            if i in errors:
                w.writerow([cid, path, "", "", ref, errors[i]])
                continue
            probability = float(probs[i])  # written in full: a rounded one could sit on
            decision = int(probability >= threshold)  # the other side of the threshold
            referable += decision
            w.writerow([cid, path, repr(probability), decision, ref, ""])
    return {"images": len(items), "predicted": len(probs), "errors": len(errors),
            "referable": referable, "threshold": threshold,
            "output": os.path.abspath(output_path)}

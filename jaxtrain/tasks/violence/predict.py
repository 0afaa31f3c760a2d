"""Inference: `python -m jaxtrain.predict --workdir=RUN --input=VIDEO_OR_DIR --output=OUT.csv`.

Each video is decoded and encoded exactly as in training (the run's config: frames, size,
encoder), then scored. One CSV row per video: path, violence probability, decision at
`predict.threshold`, the frames with the most attention (and their times in seconds), or the
error that left the video out (an error row, never a crash).
"""

from __future__ import annotations

import csv
import functools
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxtrain import files
from jaxtrain.data.padding import pad_rows
from jaxtrain.tasks.violence import encoder as encoder_lib
from jaxtrain.tasks.violence.features import decoded_clips
from jaxtrain.tasks.violence.model import build_model
from jaxtrain.tasks.violence.task import clip_scores
from jaxtrain.tasks.violence.video import find_videos, frame_indices, probe

COLUMNS = ("video", "prob_violent", "decision", "top_frames", "top_frame_seconds", "error")


def _videos(input_path: str) -> list[str]:
    if os.path.isfile(input_path):
        return [input_path]
    found = find_videos(input_path)
    if not found:
        raise FileNotFoundError(f"{input_path}: no video files found")
    return found


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _scores(model, inputs, reverse_view, params, model_state, x):
    out = clip_scores(model, params, model_state, x, inputs, reverse_view)
    return out["probs"][:, 1], out["attention"]


def predict(config: ml_collections.ConfigDict, variables: dict[str, Any], input_path: str,
            output_path: str, batch_size: int, *, workdir: str = "") -> dict[str, Any]:
    """Writes the CSV; returns counts (videos, violent, errors)."""
    paths = _videos(input_path)
    encode = encoder_lib.make_encoder(config)
    model = build_model(config)
    params = jax.device_put(variables["params"])
    model_state = jax.device_put(variables["model_state"])
    n_frames, threshold = config.data.num_frames, config.predict.threshold
    rows: list[dict[str, Any]] = []
    pending: list[tuple[int, np.ndarray]] = []

    def score_pending() -> None:
        if not pending:
            return
        x = encode(np.concatenate([fr for _, fr in pending])).reshape(len(pending), n_frames, -1)
        n = len(x)
        scores = _scores(model, config.data.frame_inputs, config.eval.get("reverse_view", False),
                         params, model_state, jnp.asarray(pad_rows(x, batch_size)))
        probs, att = (np.asarray(a)[:n] for a in scores)
        for (k, _), p, a in zip(pending, probs, att, strict=True):
            top = np.argsort(-a)[:3]
            info = probe(paths[k])
            idx = frame_indices(max(info.frames, 1), n_frames)
            p = float(p)  # written in full: a rounded one could sit across the threshold
            rows[k].update(prob_violent=repr(p),
                           decision="violent" if p >= threshold else "nonviolent",
                           top_frames=" ".join(str(int(idx[j])) for j in top),
                           top_frame_seconds=" ".join(f"{idx[j] / info.fps:.2f}" if info.fps
                                                      else "" for j in top))
        pending.clear()

    for k, (frames, error) in enumerate(decoded_clips(paths, config)):
        rows.append({"video": paths[k], "error": error})
        if frames is not None:
            pending.append((k, frames))
            if len(pending) >= batch_size:
                score_pending()
    score_pending()
    with files.atomic_path(output_path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, restval="")
        w.writeheader()
        w.writerows(rows)
    return {"output": output_path, "videos": len(rows),
            "violent": sum(r.get("decision") == "violent" for r in rows),
            "errors": sum(bool(r["error"]) for r in rows)}

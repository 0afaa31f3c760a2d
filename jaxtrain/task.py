"""What a task hands the generic training loop.

A task module (jaxtrain/tasks/<name>.py) exposes `build(config, workdir) -> Task`. The loop
never imports a task; main looks the module up by `config.task`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from jaxtrain.train_step import LossFn, PredictFn

Record = dict[str, np.ndarray]


@dataclasses.dataclass
class Task:
    """Data sources, model functions and evaluation of one system.

    init_fn(rng) -> (params, model_state) builds float32 variables.
    evaluate(outputs) -> flat {name: float} metrics plus a JSON-able `report` for results;
      `outputs` are the concatenated `predict_fn` outputs of one split, padding removed.
    baseline() -> dict of results of a simple reference model (optional), for results.json.
    on_test(metrics, report) -> dict (optional): called once on the main process after the
      final test pass, e.g. to write plots into the workdir; what it returns is merged into
      results.json.
    evaluate_test(val_outputs, test_outputs) -> (flat, report) (optional): replaces
      `evaluate` for the final test pass when the test report needs the validation split too,
      e.g. a decision threshold tuned on validation and then applied to test.
    """

    train_source: Any
    val_source: Any
    test_source: Any
    init_fn: Callable[[jax.Array], tuple[Any, Any]]
    loss_fn: LossFn
    predict_fn: PredictFn
    evaluate: Callable[[dict[str, np.ndarray]], tuple[dict[str, float], dict[str, Any]]]
    transform: Callable[[Record], Record] | None = None
    random_transform: Callable[[Record, np.random.Generator], Record] | None = None
    batch_transform: Callable[[Record], Record] | None = None  # on whole host batches
    baseline: Callable[[], dict[str, Any]] | None = None
    on_test: Callable[[dict[str, float], dict[str, Any]], dict[str, Any]] | None = None
    evaluate_test: Callable[[dict[str, np.ndarray], dict[str, np.ndarray]],
                            tuple[dict[str, float], dict[str, Any]]] | None = None
    info: dict[str, Any] = dataclasses.field(default_factory=dict)  # goes into results.json

"""What a system hands the generic training loop, and how the core finds a system.

A system is a package `jaxtrain/tasks/<name>/` whose `__init__` exports `SYSTEM`, a `System`.
main, predict and the benchmarks look it up by `config.task` (`load_system`); the core never
imports a system, so adding one adds a package and a config and touches nothing here.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import jax
import ml_collections
import numpy as np

from jaxtrain.train_step import LossFn, PredictFn

Record = dict[str, np.ndarray]
Outputs = dict[str, np.ndarray]  # one split's `predict_fn` outputs, concatenated, no padding
Metrics = dict[str, float]


class Evaluator(Protocol):
    """Scores one split's predictions.

    Returns flat scalars (logged, written to history, used for early stopping) and a
    JSON-able report (results.json). `tuning` is the validation split's predictions when the
    scored split is another one: choices made on validation (a decision threshold) are then
    applied to the scored split. Evaluators read only predictions, so a finished run can be
    re-scored from its saved predictions (`python -m jaxtrain.evaluate`) without retraining.
    """

    def __call__(self, outputs: Outputs, tuning: Outputs | None = None
                 ) -> tuple[Metrics, dict[str, Any]]: ...


@dataclasses.dataclass(frozen=True)
class Task:
    """Data sources, model functions and evaluation of one system, built from a config.

    init_fn(rng) -> (params, model_state) builds float32 variables.
    transform / random_transform map single records on the host; batch_transform maps whole
      host batches (vectorized numpy).
    evaluators score a split's predictions (see `Evaluator`); their metrics and reports are
      merged, so their keys must not collide.
    headline: the metrics a person looks at first (printed by the CLI, first in reports).
    baseline() -> results of a simple reference model (e.g. logistic regression), or None.
    data: JSON-able facts about the data (paths, split sizes, class counts) for results.json.
    choices: how this task resolved its `auto` settings (e.g. where augmentation runs),
      logged at start-up and written to results.json with the loop's own.
    after_training(workdir, variables) -> extra results: a post-training stage (e.g. fire's
      ML ensemble) run by process 0 after the final test, once the best checkpoint's
      predictions are saved (predictions/{val,test}.npz): it reads them rather than hooking
      into the loop, may use `variables` (the best {"params", "model_state"} as host arrays,
      e.g. for permutation importance through `predict_fn`), writes its own files into the
      workdir and returns top-level keys merged into results.json before it is written.
    """

    train_source: Any
    val_source: Any
    test_source: Any
    init_fn: Callable[[jax.Array], tuple[Any, Any]]
    loss_fn: LossFn
    predict_fn: PredictFn
    evaluators: Sequence[Evaluator]
    headline: Sequence[str]
    transform: Callable[[Record], Record] | None = None
    random_transform: Callable[[Record, np.random.Generator], Record] | None = None
    batch_transform: Callable[[Record], Record] | None = None
    baseline: Callable[[], dict[str, Any]] | None = None
    data: dict[str, Any] = dataclasses.field(default_factory=dict)
    choices: dict[str, Any] = dataclasses.field(default_factory=dict)
    after_training: Callable[[str, dict[str, Any]], dict[str, Any]] | None = None
    # The data set kept in device memory (`jaxtrain.data.device.DeviceData`, built when the
    # loop starts), when the task chose the device path (`device.on_device`): the loop then
    # reads positions, not records, and the step gathers them; None: the host path above.
    device_data: Callable[[], Any] | None = None
    # Training phases (`jaxtrain.phases.Phase`: loss, trainable mask, lr scale from an epoch
    # on), e.g. a frozen backbone then a partly unfrozen one; empty: `loss_fn` trains all.
    phases: Sequence[Any] = ()


def evaluate(evaluators: Sequence[Evaluator], outputs: Outputs,
             tuning: Outputs | None = None) -> tuple[Metrics, dict[str, Any]]:
    """Every evaluator on one split; metrics and reports merged."""
    metrics: Metrics = {}
    report: dict[str, Any] = {}
    for evaluator in evaluators:
        m, r = evaluator(outputs, tuning)
        metrics |= m
        report |= r
    return metrics, report


PredictCommand = Callable[..., dict[str, Any]]
"""predict(config, variables, input_path, output_path, batch_size, *, workdir) -> summary:
reads new data, writes `output_path`, returns a short JSON-able summary (`jaxtrain.predict`).
`variables` is {"params": ..., "model_state": ...} as host numpy arrays."""


@dataclasses.dataclass(frozen=True)
class ReportHook:
    """What the run report (`jaxtrain.report`) adds for a system to the generic figures it
    draws from any run's files; every field is optional. The functions take the run's saved
    files (`run_files.RunFiles`); `figures` also takes the page's `report.Out` and returns
    `report.Figure`s (typed Any here: the core's task contract does not import the report)."""

    unit: str = "samples"  # what one sample is ("windows", "images"), for the axes
    model_name: str = ""  # the run's bar in the model comparison (default: config.model.name)
    targets: dict[str, float] = dataclasses.field(default_factory=dict)  # drawn on the bars
    curves: tuple[str, ...] = ()  # validation metrics drawn over epochs, shown while training
    class_names: Callable[[Any], list[str]] | None = None  # in label order
    models: Callable[[Any], dict[str, dict[str, float]]] | None = None  # more bars: test values
    figures: Callable[[Any, Any], list[Any]] | None = None  # the system's own pictures


@dataclasses.dataclass(frozen=True)
class System:
    """One trainable system: what its package exports as `SYSTEM`."""

    name: str
    description: str  # one line, for `jaxtrain --help`
    build: Callable[[ml_collections.ConfigDict, str], Task]
    predict: PredictCommand
    # Checks the system's own config keys before anything is read or written; raises
    # `config_checks.ConfigValueError` (one line: key, value, what is allowed).
    validate: Callable[[ml_collections.ConfigDict], None] | None = None
    # Config keys (a prefix ends with ".") a rerun may change without making it another run,
    # beyond the core's `workdir.SAFE_TO_CHANGE`: how the system's own stages are run, never
    # what they compute.
    safe_to_change: tuple[str, ...] = ()
    # An export's acceptance check (`target_achieved` in a bundle's metadata.json): this test
    # metric of the deployed model (results.json "deployed") against this threshold.
    export_target: tuple[str, float] = ("accuracy", 0.95)
    # The system's part of the run report (conventionally built in its report.py).
    report: ReportHook = ReportHook()


def load_system(name: str) -> System:
    """The system package `jaxtrain.tasks.<name>`'s `SYSTEM`; ValueError if there is none."""
    try:
        module = importlib.import_module(f"jaxtrain.tasks.{name}")
    except ModuleNotFoundError as e:
        if e.name not in (f"jaxtrain.tasks.{name}", "jaxtrain.tasks"):
            raise  # a missing dependency inside the system, not an unknown name
        raise ValueError(f"unknown task {name!r} (config.task); known: "
                         f"{', '.join(system_names())}") from None
    return module.SYSTEM


def system_names() -> list[str]:
    """The system packages installed under jaxtrain/tasks."""
    import pkgutil

    from jaxtrain import tasks

    return sorted(m.name for m in pkgutil.iter_modules(tasks.__path__) if m.ispkg)

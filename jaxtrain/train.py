"""The generic training loop: train, evaluate, checkpoint, resume, stop early, report.

`train_and_evaluate(config, workdir, task)` works for any `Task`; main.py picks the task.
Reading order: set-up (`setup`, from `train_setup`'s state and input, which the benchmarks
share), the loop (`_train`), the end of an epoch (`_end_of_epoch`), the final test (`_test`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from jaxtrain import config_checks, epoch_images, files, optim, phases, writers
from jaxtrain import evaluate as evaluate_lib
from jaxtrain import report as report_lib
from jaxtrain import sharding as shd
from jaxtrain import workdir as workdirs
from jaxtrain.checkpoint import Checkpointer, abstract_like, all_finite
from jaxtrain.cli import environment_error
from jaxtrain.data import pipeline
from jaxtrain.run_files import RESULTS_FILE, network_deployed
from jaxtrain.task import Task, evaluate
from jaxtrain.train_setup import (
    Input,
    make_input,
    make_state,
    resolved_setup,
    steps_per_epoch,
    train_batches,
)
from jaxtrain.train_step import (
    FIRST_NONFINITE_STEP,
    NO_STEP,
    NONFINITE,
    TrainState,
    make_eval_step,
)


class Interrupted(Exception):
    """SIGTERM/SIGINT arrived; a checkpoint was saved and the run can be resumed."""

    def __init__(self, signum: int, step: int, during_test: bool = False):
        super().__init__(
            f"stopped by signal {signum} during the final test evaluation; training is "
            "finished and saved: rerun the same command to evaluate" if during_test else
            f"stopped by signal {signum} at step {step}; checkpoint saved, rerun the same "
            "command to resume")
        self.signum = signum


class Diverged(FloatingPointError):
    """A non-finite loss, gradient norm or parameter: training stopped, nothing was saved
    from it (the latest checkpoint is the last good one)."""


@dataclasses.dataclass
class LoopState:
    """Host-side counters that must survive a restart (saved as checkpoint `meta`)."""

    epoch: int = 0
    best_value: float | None = None
    epochs_since_best: int = 0
    plateau_best: float | None = None
    epochs_since_plateau_best: int = 0
    stopped_early: bool = False
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    epoch_sums: dict[str, float] = dataclasses.field(default_factory=dict)
    epoch_steps: int = 0
    times: dict[str, float] = dataclasses.field(default_factory=dict)  # seconds by activity


class _StopFlag:
    """Turns SIGTERM/SIGINT into a flag the loop polls (also inside evaluation)."""

    def __init__(self):
        self.received = 0  # set by the handler, in this process only
        self.signum = 0  # the agreed value the loop acts on
        self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGTERM, signal.SIGINT)}

    def poll(self, step: int, every: int = 10) -> int:
        """The signal, agreed by all processes (a checkpoint save is collective).

        Several processes compare flags every `every` steps, so one process's SIGTERM stops
        all of them at the same step; a single process just reads its flag.
        """
        if jax.process_count() == 1:
            self.signum = self.received
        elif step % every == 0:
            flags = multihost_utils.process_allgather(np.int32(self.received))
            self.signum = int(np.max(flags))
        return self.signum

    def received_alone(self) -> bool:
        """A single process may cut an evaluation pass short; several must finish it together."""
        return jax.process_count() == 1 and bool(self.received)

    def _handle(self, signum: int, frame: Any) -> None:
        logging.warning("signal %d received: stopping at the next safe point (a checkpoint "
                        "during training)", signum)
        self.received = signum

    def restore(self) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


class _StepProfiler:
    """A `jax.profiler` trace of training steps FIRST..LAST (`train.profile_steps`, 1 = the
    first step) into <workdir>/tb, where TensorBoard's profile plugin finds it
    (tb/plugins/profile/<run>/<host>.xplane.pb); process 0 only. Each traced step is a
    `StepTraceAnnotation`, so the profile's step view shows them by number."""

    def __init__(self, spec: str, workdir: str):
        steps = config_checks.parse_step_range(spec)
        self.first, self.last = steps if steps and jax.process_index() == 0 else (0, -1)
        self.logdir = os.path.join(workdir, "tb")
        self.active = False

    def step(self, step: int) -> contextlib.AbstractContextManager:
        """Around the step that makes the count `step`: starts the trace at FIRST."""
        if not self.active and self.first <= step <= self.last:
            jax.profiler.start_trace(self.logdir)
            self.active = True
            logging.info("profiling steps %d-%d into %s", step, self.last, self.logdir)
        if self.active:
            return jax.profiler.StepTraceAnnotation("train", step_num=step)
        return contextlib.nullcontext()

    def after(self, step: int, outputs: Any) -> None:
        if self.active and step >= self.last:
            self.stop(outputs)

    def stop(self, outputs: Any = None) -> None:
        """Waits for `outputs` (the last traced step's), then writes the trace."""
        if not self.active:
            return
        self.active = False
        try:
            jax.block_until_ready(outputs)
        finally:
            jax.profiler.stop_trace()
        logging.info("profile written under %s (tensorboard --logdir %s, profile tab)",
                     os.path.join(self.logdir, "plugins", "profile"), self.logdir)


_BOOKKEEPING = (*NONFINITE.values(), FIRST_NONFINITE_STEP)


def _combine(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    first = jnp.minimum(a[FIRST_NONFINITE_STEP], b[FIRST_NONFINITE_STEP])
    return jax.tree.map(jnp.add, a, b) | {FIRST_NONFINITE_STEP: first}


class _DeviceSums:
    """Running sums of step metrics kept on device; read only when folded into the loop.

    The sums include counts of non-finite losses and gradient norms, so divergence is found
    whenever they are read (`check`, `flush_into`) without a host sync per step.
    """

    _add = staticmethod(jax.jit(_combine))

    def __init__(self, skip_nonfinite: bool = False):
        self.total, self.count = None, 0
        self.skip_nonfinite = skip_nonfinite
        self.skipped = 0

    def add(self, metrics: dict[str, jax.Array]) -> None:
        self.total = metrics if self.total is None else self._add(self.total, metrics)
        self.count += 1

    def check(self, step: int, params: Any) -> None:
        """Raises `Diverged` if a step since the last read had a non-finite loss or gradient
        norm; when the optimizer skips such steps, they are counted instead, and only
        non-finite `params` (more bad steps in a row than allowed) stop the run."""
        if self.total is None:
            return
        bad = jax.device_get({k: self.total[k] for k in _BOOKKEEPING})
        counts = {name: int(bad[key]) for name, key in NONFINITE.items() if bad[key]}
        if not counts:
            return
        first = int(bad[FIRST_NONFINITE_STEP])
        if self.skip_nonfinite:
            self.skipped += max(counts.values())
            self.total = self.total | {
                **{k: jnp.zeros_like(self.total[k]) for k in NONFINITE.values()},
                FIRST_NONFINITE_STEP: jnp.full_like(self.total[FIRST_NONFINITE_STEP], NO_STEP)}
            logging.warning("skipped %d non-finite steps so far (optim.skip_nonfinite_steps)",
                            self.skipped)
            if bool(all_finite(params)):
                return
            counts = {"params": 1}
        names = {"loss": "loss", "grad_norm": "gradient norm", "params": "parameters"}
        what = " and ".join(names[k] for k in counts)
        raise Diverged(f"training diverged: non-finite {what} at step {first} (checked at "
                       f"step {step}); the latest checkpoint is the last good one. Lower "
                       "optim.learning_rate or check the data for NaNs")

    def running_mean(self, loop: LoopState, key: str) -> float:
        """The epoch's mean of `key` so far: the loop's flushed sums and those on device."""
        pending = float(jax.device_get(self.total[key])) if self.total is not None else 0.0
        return (loop.epoch_sums.get(key, 0.0) + pending) / max(loop.epoch_steps + self.count, 1)

    def flush_into(self, loop: LoopState, step: int, params: Any) -> None:
        if self.total is not None:
            self.check(step, params)
            total = _scalars(jax.device_get(self.total))
            for k, v in total.items():
                loop.epoch_sums[k] = loop.epoch_sums.get(k, 0.0) + float(v)
            loop.epoch_steps += self.count
        self.total, self.count = None, 0


# ----------------------------------------------------------------------------- set-up
@dataclasses.dataclass
class _Run:
    """Everything one training run holds between set-up and the final test."""

    config: ml_collections.ConfigDict
    workdir: str
    task: Task
    mesh: Mesh
    inputs: Input
    steps_per_epoch: int
    total_steps: int
    state: TrainState
    shardings: TrainState
    train_step: Any
    eval_step: Any
    feeder: pipeline.BatchFeeder
    ckpt: Checkpointer
    writer: writers.MetricWriter
    stop: _StopFlag
    setup: dict[str, Any]
    loop: LoopState = dataclasses.field(default_factory=LoopState)
    epoch_started: float = dataclasses.field(default_factory=time.monotonic)

    @property
    def step(self) -> int:
        return int(self.state.step)

    @contextlib.contextmanager
    def timed(self, activity: str) -> Iterator[None]:
        """Adds the block's wall time to `loop.times[activity]` (kept across resumes)."""
        t0 = time.monotonic()
        try:
            yield
        finally:
            times = self.loop.times
            times[activity] = times.get(activity, 0.0) + time.monotonic() - t0

    def save(self, metrics: dict | None = None, force: bool = False) -> None:
        with self.timed("checkpoint_s"):
            self.ckpt.save(self.step, self.state, self.feeder.get_state(),
                           dataclasses.asdict(self.loop), metrics=metrics, force=force)

    def predict(self, split: str, stoppable: bool = False) -> dict[str, np.ndarray]:
        inputs = self.inputs
        return evaluate_lib.predict_split(
            self.eval_step, self.state, inputs.sources[split], self.config, self.mesh,
            transform=inputs.transform, batch_transform=inputs.batch_transform,
            should_stop=self.stop.received_alone if stoppable else None)

    def close(self, abandon_saves: bool = False) -> None:
        """`abandon_saves`: after a write error (a full disk), waiting for and closing
        orbax's writers only repeats the error from its threads; an unfinished save stays a
        temporary directory that the next start ignores."""
        self.stop.restore()
        self.feeder.close()
        self.writer.close()
        if not abandon_saves:
            self.ckpt.wait()
            self.ckpt.close()


def setup(config: ml_collections.ConfigDict, workdir: str, task: Task,
          schedule_epochs: int | None = None) -> _Run:
    """Mesh, state, compiled steps, input and checkpoints; resumes from the latest checkpoint.

    `schedule_epochs`: the epochs the learning-rate schedule spans, when a rerun changed
    `train.epochs` (workdir.schedule_epochs); default `train.epochs`.
    """
    mesh = shd.make_mesh(config.mesh.fsdp)
    per_epoch = steps_per_epoch(task, config)
    total_steps = config.train.epochs * per_epoch
    schedule_epochs = schedule_epochs or config.train.epochs
    tx, schedule = optim.make_optimizer(config.optim, per_epoch, schedule_epochs * per_epoch)
    state, shardings = make_state(task, config, mesh, tx)
    inputs = make_input(task, mesh)
    es = config.early_stopping
    run = _Run(
        config=config, workdir=workdir, task=task, mesh=mesh, inputs=inputs,
        steps_per_epoch=per_epoch, total_steps=total_steps, state=state, shardings=shardings,
        train_step=inputs.bind(phases.make_step(task.phases, task.loss_fn, tx, mesh, shardings,
                                                per_epoch, learning_rate_fn=schedule,
                                                gather=inputs.gather)),
        eval_step=inputs.bind(make_eval_step(task.predict_fn, mesh, shardings, inputs.gather)),
        feeder=pipeline.BatchFeeder(
            train_batches(inputs, config, mesh, max(config.train.epochs, schedule_epochs) + 1),
            mesh),
        ckpt=Checkpointer(os.path.join(workdir, "checkpoints"), best_metric=es.metric,
                          best_mode=es.mode,
                          keep_every_steps=config.checkpoint.keep_every_steps),
        writer=writers.MetricWriter(workdir), stop=_StopFlag(),
        setup=resolved_setup(task, config, mesh, inputs))
    n_params = sum(x.size for x in jax.tree.leaves(state.params))
    run.setup["parameters"] = n_params
    logging.info("model: %s parameters; %d steps/epoch, %d epochs; set-up %s", f"{n_params:,}",
                 per_epoch, config.train.epochs, json.dumps(run.setup, default=str))
    latest = run.ckpt.latest_step()
    if latest is not None:
        run.state, data_state, meta = run.ckpt.restore(latest, abstract_like(state, shardings))
        run.loop = LoopState(**meta)
        run.feeder.set_state(data_state)
        logging.info("resumed from step %d (epoch %d)", latest, run.loop.epoch)
    return run


# ----------------------------------------------------------------------------- the run
def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, task: Task, *,
                       on_step: Callable[[int], None] | None = None,
                       schedule_epochs: int | None = None,
                       further: dict[str, Any] | None = None) -> dict[str, Any]:
    """Trains `task` as `config` says, resuming from `workdir` if it holds a checkpoint.

    `on_step(step)` runs on the host after each step is dispatched (custom logging, tests).
    `schedule_epochs`: see `setup`. `further`: a finished run trained on
    (`workdir.check_further`): early stopping starts over and results.json records it.
    """
    workdir = os.path.abspath(workdir)
    results_path = os.path.join(workdir, RESULTS_FILE)
    finished = workdirs.finished_results(workdir)
    if finished is not None:
        logging.info("this run already finished; its results are in %s", results_path)
        return finished
    t0 = time.monotonic()
    run = setup(config, workdir, task, schedule_epochs)
    run.loop.times["setup_s"] = run.loop.times.get("setup_s", 0.0) + time.monotonic() - t0
    if further is not None and run.loop.epoch == further["from_epochs"]:
        run.loop.stopped_early, run.loop.epochs_since_best = False, 0
        logging.info("training further: epochs %d to %d (the results of %d epochs are kept "
                     "in %s)", further["from_epochs"] + 1, further["to_epochs"],
                     further["from_epochs"], further["previous_results"])
    try:
        _train(run, on_step)
        results = _test(run)
        if further is not None:
            record = {k: v for k, v in further.items() if k != "earlier"}
            results["trained_further"] = [*further["earlier"], record]
        if jax.process_index() == 0:
            files.write_json_atomic(results_path, results)
            if config.train.report:  # report.html; a failure is a warning, not a failed run
                run.writer.flush()  # the page reads the TensorBoard events too
                report_lib.write_report_safely(workdir)
    except (Interrupted, Diverged):
        run.close()  # checkpoints already saved are complete
        raise
    except BaseException as e:
        run.close(abandon_saves=environment_error(e) is not None or "RESOURCE_EXHAUSTED" in str(e))
        raise
    run.close()
    return results


def _train(run: _Run, on_step: Callable[[int], None] | None) -> None:
    """Steps until the last epoch, early stopping or a signal (then: save, `Interrupted`).

    Non-finite losses and gradient norms are counted on device and checked whenever the sums
    are read: before every checkpoint and history row, at every progress line and at least
    every `train.check_finite_every` steps (`Diverged`: nothing is saved from it).
    """
    config, loop, stop = run.config, run.loop, run.stop
    metric = config.early_stopping.metric
    every_steps = config.checkpoint.every_steps
    progress = writers.Progress(run.total_steps, config.train.batch_size,
                                config.train.log_every_s, epochs=config.train.epochs)
    progress.start(run.step)
    # Step metrics summed on device: no host sync per step.
    sums = _DeviceSums(skip_nonfinite=bool(config.optim.skip_nonfinite_steps))
    step = run.step
    first_step_done = False
    bounded_queue = shd.queued_steps_can_deadlock(run.mesh)
    previous = None  # the step before the last one dispatched, waited for on bounded_queue
    profiler = _StepProfiler(config.train.profile_steps, run.workdir)
    try:
        while True:
            # An epoch ends at a multiple of steps_per_epoch not yet counted in loop.epoch (a
            # run resumed from the checkpoint taken right after that epoch's evaluation skips it).
            per_epoch = run.steps_per_epoch
            if step and step % per_epoch == 0 and loop.epoch < step // per_epoch:
                sums.flush_into(loop, step, run.state.params)
                _end_of_epoch(run, skipped=sums.skipped)
                if not stop.signum:
                    run.save(metrics={metric: loop.history[-1][metric]})
            if step >= run.total_steps or loop.stopped_early or stop.poll(step):
                break
            with run.timed("input_wait_s"):
                batch = next(run.feeder)
            with profiler.step(step + 1):
                if not first_step_done:  # compiles the step: timed apart, waited for
                    logging.info("compiling the train step (its first call)...")
                    t_compile = time.monotonic()
                    with run.timed("compile_s"):
                        run.state, metrics = run.train_step(run.state, batch)
                        jax.block_until_ready(metrics)
                    logging.info("train step compiled and run once in %.1f s",
                                 time.monotonic() - t_compile)
                    first_step_done = True
                    progress.start(step + 1)  # the ETA counts steady steps only
                else:
                    with run.timed("train_steps_s"):
                        run.state, metrics = run.train_step(run.state, batch)
                        if bounded_queue and previous is not None:
                            jax.block_until_ready(previous)
                    previous = metrics
            step += 1
            profiler.after(step, (run.state, metrics))
            sums.add(metrics)
            if on_step is not None:
                on_step(step)
            if every_steps and step % every_steps == 0 and step % run.steps_per_epoch:
                sums.flush_into(loop, step, run.state.params)
                run.save()
            if progress.due() or step % config.train.check_finite_every == 0:
                with run.timed("train_steps_s"):  # waits for the step
                    sums.check(step, run.state.params)
            if progress.due():
                host_metrics = _scalars(jax.device_get(metrics))
                rate = progress.rate(step)
                progress.line(step, loop.epoch + 1, sums.running_mean(loop, "loss"), rate)
                # Single steps under their own tags: train/ holds the epoch means (history.csv).
                run.writer.scalars(step, {"train_step/" + k: v for k, v in host_metrics.items()}
                                   | rate | _memory())
    except BaseException:  # the run raised inside the profiled steps: keep what was traced
        with contextlib.suppress(Exception):
            profiler.stop()
        raise
    profiler.stop(run.state)  # training ended inside them (last epoch, early stop, signal)
    if stop.signum:
        sums.flush_into(loop, step, run.state.params)
        if run.ckpt.latest_step() != step:
            run.save(force=True)
        run.ckpt.wait()
        raise Interrupted(stop.signum, step)


def _scalars(metrics: dict[str, Any]) -> dict[str, Any]:
    """The step's metrics without the loop's non-finite bookkeeping."""
    return {k: v for k, v in metrics.items() if k not in _BOOKKEEPING}


def _end_of_epoch(run: _Run, skipped: int = 0) -> None:
    """Validation, history row, early stopping and reduce-on-plateau for one epoch."""
    loop, config = run.loop, run.config
    if not bool(all_finite(run.state.params)):  # a last step's update can be the bad one
        raise Diverged(f"training diverged: non-finite parameters after step {run.step}; the "
                       "latest checkpoint is the last good one. Lower optim.learning_rate")
    t0 = time.monotonic()
    with run.timed("evaluation_s"):
        val_outputs = run.predict("val", stoppable=True)
        if run.stop.poll(run.step):
            return  # the pass may be partial: the caller saves and exits
        val_metrics, val_report = evaluate(run.task.evaluators, val_outputs)
    loop.epoch += 1
    train_means = {f"train/{k}": v / max(loop.epoch_steps, 1) for k, v in loop.epoch_sums.items()}
    loop.epoch_sums, loop.epoch_steps = {}, 0
    val = {f"val/{k}": v for k, v in val_metrics.items()}
    row = {"epoch": loop.epoch, "step": run.step, **train_means, **val,
           "lr_scale": optim.get_lr_scale(run.state.opt_state), "eval_s": time.monotonic() - t0,
           **_memory(), **{f"time/{k}": round(v, 3) for k, v in loop.times.items()}}
    if config.optim.skip_nonfinite_steps:
        row["skipped_steps"] = skipped
    loop.history.append(row)
    run.writer.scalars(run.step, row)
    run.writer.history(loop.history)
    if config.train.report:  # pictures for TensorBoard's Images tab (process 0)
        epoch_images.log_epoch_images(run.writer, run.step, val_report, loop.history)
    run.writer.flush()
    es = config.early_stopping
    if es.metric not in row:
        raise ValueError(f"early_stopping.metric={es.metric!r} is not a validation metric of "
                         f"this task; available: "
                         f"{', '.join(sorted(k for k in row if k.startswith('val/')))}")
    value = row[es.metric]
    if not math.isfinite(value):
        raise ValueError(f"validation metric {es.metric} is {value} at epoch {loop.epoch} "
                         "(the validation split may lack a class it needs); choose another "
                         "early_stopping.metric")
    _early_stopping(loop, value, es)
    if config.reduce_on_plateau.enabled:
        _reduce_on_plateau(run, value)
    logging.info("%s", epoch_line(row, config.train.epochs, run.task.headline, es.metric,
                                  improved=loop.epochs_since_best == 0,
                                  seconds=time.monotonic() - run.epoch_started))
    run.epoch_started = time.monotonic()


def epoch_line(row: dict[str, Any], epochs: int, headline: Sequence[str], metric: str, *,
               improved: bool, seconds: float) -> str:
    """One short line per epoch: train loss, the headline validation metrics (and the early-
    stopping one), 4 significant digits, the epoch's time and whether it is the best so far
    (its checkpoint is the one tested). Every metric is in history.csv and TensorBoard."""
    keys = list(dict.fromkeys([*(f"val/{k}" for k in headline), metric]))
    shown = " ".join(f"{k.removeprefix('val/')} {row[k]:.4g}" for k in keys
                     if isinstance(row.get(k), int | float))
    best = f"; best {metric} so far" if improved else ""
    return (f"epoch {row['epoch']}/{epochs} ({seconds:.1f} s): train loss "
            f"{row.get('train/loss', math.nan):.4g}; val {shown}{best}")


def _improved(value: float, best: float | None, mode: str, min_delta: float) -> bool:
    if best is None:
        return True
    return value > best + min_delta if mode == "max" else value < best - min_delta


def _early_stopping(loop: LoopState, value: float, es: ml_collections.ConfigDict) -> None:
    if _improved(value, loop.best_value, es.mode, es.min_delta):
        loop.best_value, loop.epochs_since_best = value, 0
        return
    loop.epochs_since_best += 1
    if es.patience > 0 and loop.epochs_since_best >= es.patience:
        loop.stopped_early = True
        logging.info("early stopping: %s did not improve for %d epochs", es.metric, es.patience)


def _reduce_on_plateau(run: _Run, value: float) -> None:
    loop, es, plateau = run.loop, run.config.early_stopping, run.config.reduce_on_plateau
    if _improved(value, loop.plateau_best, es.mode, es.min_delta):
        loop.plateau_best, loop.epochs_since_plateau_best = value, 0
        return
    loop.epochs_since_plateau_best += 1
    if loop.epochs_since_plateau_best >= plateau.patience:
        scale = optim.get_lr_scale(run.state.opt_state) * plateau.factor
        run.state = run.state.replace(opt_state=optim.set_lr_scale(run.state.opt_state, scale))
        loop.epochs_since_plateau_best = 0
        logging.info("reduce on plateau: learning-rate scale now %.3g", scale)


def _test(run: _Run) -> dict[str, Any]:
    """The best checkpoint (by the early-stopping metric) on test; predictions saved."""
    run.ckpt.wait()
    task, is_main, final_step = run.task, jax.process_index() == 0, run.step
    best = run.ckpt.best_step()
    if best is not None and best != final_step:
        run.state, _, _ = run.ckpt.restore(best, abstract_like(run.state, run.shardings))
    with run.timed("evaluation_s"):
        val_outputs = run.predict("val", stoppable=True)
        test_outputs = run.predict("test", stoppable=True)
        if run.stop.poll(final_step, every=1):  # outputs may be partial: no results from them
            raise Interrupted(run.stop.signum, final_step, during_test=True)
        test_metrics, report = evaluate(task.evaluators, test_outputs, val_outputs)
    results = {"test": test_metrics, "test_report": report, "headline": list(task.headline),
               "best_step": best, "final_step": final_step, "epochs_trained": run.loop.epoch,
               "stopped_early": run.loop.stopped_early, "setup": run.setup, "data": task.data,
               # what predict and export use; an after_training stage may deploy another
               "deployed": network_deployed(test_metrics)}
    if task.baseline is not None:
        results["baseline"] = task.baseline()
    if is_main:
        results["predictions"] = {split: evaluate_lib.save_predictions(run.workdir, split, out)
                                  for split, out in (("val", val_outputs),
                                                     ("test", test_outputs))}
    if task.after_training is not None:  # a stage over the saved predictions (task.Task)
        params, model_state = run.state.inference_variables()
        variables = multihost_utils.process_allgather(  # collective: every process gathers
            {"params": params, "model_state": model_state}, tiled=True)
        if is_main:
            with run.timed("after_training_s"):
                results |= task.after_training(run.workdir, variables)
    run.writer.scalars(final_step, {"test/" + k: v for k, v in test_metrics.items()})
    results["time_breakdown"] = _time_breakdown(run.loop.times)
    return results


def _time_breakdown(times: dict[str, float]) -> dict[str, float]:
    """Seconds by activity over all of the run's sessions (resumes add up)."""
    out = {k: round(times.get(k, 0.0), 3) for k in (
        "setup_s", "compile_s", "input_wait_s", "train_steps_s", "evaluation_s",
        "checkpoint_s", "after_training_s")}
    out["total_s"] = round(sum(out.values()), 3)
    return out


def _memory() -> dict[str, float]:
    out = {"memory/host_peak_mb": writers.host_memory_mb()}
    dev = writers.device_memory_mb()
    if dev is not None:
        out["memory/device_mb"] = dev
    return out

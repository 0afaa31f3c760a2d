"""The generic training loop: train, evaluate, checkpoint, resume, stop early, report.

`train_and_evaluate(config, workdir, task)` works for any `Task`; main.py picks the task.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from jaxtrain import data as data_lib
from jaxtrain import optim, writers
from jaxtrain import sharding as shd
from jaxtrain.checkpoint import Checkpointer, abstract_like
from jaxtrain.task import Task
from jaxtrain.train_step import (
    TrainState,
    create_sharded_state,
    make_eval_step,
    make_train_step,
    rng_with_impl,
)


class Interrupted(Exception):
    """SIGTERM/SIGINT arrived; a checkpoint was saved and the run can be resumed."""

    def __init__(self, signum: int, step: int):
        super().__init__(f"stopped by signal {signum} at step {step}; checkpoint saved, "
                         "rerun the same command to resume")
        self.signum = signum


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

    def _handle(self, signum: int, frame: Any) -> None:
        logging.warning("signal %d received: saving a checkpoint, then exiting", signum)
        self.received = signum

    def restore(self) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


def _improved(value: float, best: float | None, mode: str, min_delta: float) -> bool:
    if best is None:
        return True
    return value > best + min_delta if mode == "max" else value < best - min_delta


def evaluate_split(eval_step: Any, state: TrainState, task: Task, source: Any,
                   config: ml_collections.ConfigDict, mesh: Any,
                   stop: _StopFlag | None = None) -> tuple[dict[str, float], dict[str, Any]]:
    """One pass over `source`; outputs gathered from all processes, padding dropped."""
    return task.evaluate(predict_split(eval_step, state, task, source, config, mesh, stop))


def predict_split(eval_step: Any, state: TrainState, task: Task, source: Any,
                  config: ml_collections.ConfigDict, mesh: Any,
                  stop: _StopFlag | None = None) -> dict[str, np.ndarray]:
    """The concatenated `predict_fn` outputs of one pass over `source`, padding dropped."""
    it = data_lib.eval_dataset(source, global_batch_size=config.train.eval_batch_size,
                               mesh=mesh, transform=task.transform,
                               batch_transform=task.batch_transform,
                               read_threads=config.data.read_threads)
    chunks: list[dict[str, np.ndarray]] = []
    for batch in data_lib.BatchFeeder(iter(it), mesh):
        out = eval_step(state, batch)
        out["valid"] = batch["valid"]
        chunks.append(multihost_utils.process_allgather(out, tiled=True))
        if stop is not None and jax.process_count() == 1 and stop.received:
            break  # the caller saves and exits; a partial eval is discarded
    outputs = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
    valid = outputs.pop("valid").astype(bool)
    return {k: v[valid] for k, v in outputs.items()}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, task: Task, *,
                       on_step: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Trains `task` as `config` says, resuming from `workdir` if it holds a checkpoint.

    `on_step(step)` runs on the host after each step is dispatched (custom logging, tests).
    """
    workdir = os.path.abspath(workdir)
    is_main = jax.process_index() == 0
    results_path = os.path.join(workdir, "results.json")
    if os.path.exists(results_path):
        logging.info("this run already finished; its results are in %s (use a new --workdir "
                     "to train again)", results_path)
        return _read_json(results_path) | {"already_finished": True}
    mesh = shd.make_mesh(config.mesh.fsdp)
    batch_size = config.train.batch_size
    steps_per_epoch = len(task.train_source) // batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"train split has {len(task.train_source)} records, fewer than "
                         f"train.batch_size={batch_size}")
    total_steps = config.train.epochs * steps_per_epoch
    tx, schedule = optim.make_optimizer(config.optim, steps_per_epoch, total_steps)

    def init_state() -> TrainState:
        params_rng, dropout_rng = jax.random.split(jax.random.key(config.seed))
        params, model_state = task.init_fn(params_rng)
        # Dropout masks from the configured PRNG ("rbg": XLA's RngBitGenerator, BUILD_NOTES).
        dropout_rng = rng_with_impl(dropout_rng, config.train.rng_impl)
        return TrainState.create(params, tx, rng=dropout_rng, model_state=model_state)

    state, state_shardings = create_sharded_state(init_state, mesh, config.mesh.fsdp_min_size)
    n_params = sum(x.size for x in jax.tree.leaves(state.params))
    logging.info("model: %s parameters; mesh %s; %d steps/epoch, %d epochs",
                 f"{n_params:,}", dict(mesh.shape), steps_per_epoch, config.train.epochs)

    train_step = make_train_step(task.loss_fn, tx, mesh, state_shardings,
                                 learning_rate_fn=schedule)
    eval_step = make_eval_step(task.predict_fn, mesh, state_shardings)
    train_it = iter(data_lib.train_dataset(
        task.train_source, global_batch_size=batch_size, mesh=mesh, seed=config.seed,
        num_epochs=config.train.epochs + 1, transform=task.transform,
        random_transform=task.random_transform, batch_transform=task.batch_transform,
        worker_count=config.data.worker_count,
        read_threads=config.data.read_threads))
    feeder = data_lib.BatchFeeder(train_it, mesh)

    es = config.early_stopping
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), best_metric=es.metric,
                        best_mode=es.mode, keep_every_steps=config.checkpoint.keep_every_steps)
    loop = LoopState()
    latest = ckpt.latest_step()
    if latest is not None:
        state, data_state, meta = ckpt.restore(latest, abstract_like(state, state_shardings))
        loop = LoopState(**meta)
        feeder.set_state(data_state)
        logging.info("resumed from step %d (epoch %d)", latest, loop.epoch)

    writer = writers.MetricWriter(workdir)
    progress = writers.Progress(total_steps, batch_size, config.train.log_every_s)
    stop = _StopFlag()
    step = int(state.step)

    def save(force: bool = False, metrics: dict | None = None) -> None:
        meta = dataclasses.asdict(loop)
        ckpt.save(step, state, feeder.get_state(), meta, metrics=metrics, force=force)

    try:
        progress.start(step)
        sums = _DeviceSums()  # step metrics summed on device: no host sync per step
        while True:
            if step and step % steps_per_epoch == 0 and loop.epoch < step // steps_per_epoch:
                sums.flush_into(loop)
                state = _end_of_epoch(config, state, loop, eval_step, task, mesh, writer,
                                      stop, step)
                if not stop.signum:
                    save(metrics={es.metric: loop.history[-1][es.metric]})
            if step >= total_steps or loop.stopped_early or stop.poll(step):
                break
            batch = next(feeder)
            state, metrics = train_step(state, batch)
            step += 1
            sums.add(metrics)
            if on_step is not None:
                on_step(step)
            if config.checkpoint.every_steps and step % config.checkpoint.every_steps == 0 \
                    and step % steps_per_epoch:
                sums.flush_into(loop)
                save()
            if progress.due():
                host_metrics = jax.device_get(metrics)  # waits for the step: honest rate
                rate = progress.rate(step)
                progress.line(step, loop.epoch, float(host_metrics["loss"]), rate)
                writer.scalars(step, {"train/" + k: v for k, v in host_metrics.items()}
                               | rate | _memory())
        if stop.signum:
            sums.flush_into(loop)
            if ckpt.latest_step() != step:
                save(force=True)
            ckpt.wait()
            raise Interrupted(stop.signum, step)

        # Training is over: test the best checkpoint (by the early-stopping metric).
        ckpt.wait()
        best = ckpt.best_step()
        if best is not None and best != step:
            state, _, _ = ckpt.restore(best, abstract_like(state, state_shardings))
        if task.evaluate_test is not None:  # e.g. a threshold tuned on val, applied to test
            test_metrics, report = task.evaluate_test(
                predict_split(eval_step, state, task, task.val_source, config, mesh),
                predict_split(eval_step, state, task, task.test_source, config, mesh))
        else:
            test_metrics, report = evaluate_split(eval_step, state, task, task.test_source,
                                                  config, mesh)
        results = {"test": test_metrics, "test_report": report, "best_step": best,
                   "final_step": step, "epochs_trained": loop.epoch,
                   "stopped_early": loop.stopped_early, "parameters": n_params,
                   "devices": jax.device_count(), "processes": jax.process_count(),
                   "device_kind": jax.devices()[0].device_kind, **task.info}
        if task.baseline is not None:
            results["baseline"] = task.baseline()
        if task.on_test is not None and is_main:
            results.update(task.on_test(test_metrics, report) or {})
        writer.scalars(step, {"test/" + k: v for k, v in test_metrics.items()})
        if is_main:
            writers.write_json_atomic(results_path, results)
        return results
    finally:
        stop.restore()
        writer.close()
        ckpt.wait()
        ckpt.close()


class _DeviceSums:
    """Running sums of step metrics kept on device; read only when folded into the loop."""

    _add = staticmethod(jax.jit(lambda a, b: jax.tree.map(jnp.add, a, b)))

    def __init__(self):
        self.total, self.count = None, 0

    def add(self, metrics: dict[str, jax.Array]) -> None:
        self.total = metrics if self.total is None else self._add(self.total, metrics)
        self.count += 1

    def flush_into(self, loop: LoopState) -> None:
        if self.total is not None:
            for k, v in jax.device_get(self.total).items():
                loop.epoch_sums[k] = loop.epoch_sums.get(k, 0.0) + float(v)
            loop.epoch_steps += self.count
        self.total, self.count = None, 0


def _memory() -> dict[str, float]:
    out = {"memory/host_peak_mb": writers.host_memory_mb()}
    dev = writers.device_memory_mb()
    if dev is not None:
        out["memory/device_mb"] = dev
    return out


def _end_of_epoch(config: ml_collections.ConfigDict, state: TrainState, loop: LoopState,
                  eval_step: Any, task: Task, mesh: Any, writer: writers.MetricWriter,
                  stop: _StopFlag, step: int) -> TrainState:
    """Validation, history row, early stopping and reduce-on-plateau for one epoch."""
    t0 = time.monotonic()
    val_metrics, _ = evaluate_split(eval_step, state, task, task.val_source, config, mesh, stop)
    if stop.poll(step):
        return state
    loop.epoch += 1
    train_means = {f"train/{k}": v / max(loop.epoch_steps, 1) for k, v in loop.epoch_sums.items()}
    loop.epoch_sums, loop.epoch_steps = {}, 0
    val = {f"val/{k}": v for k, v in val_metrics.items()}
    row = {"epoch": loop.epoch, "step": step, **train_means, **val,
           "lr_scale": optim.get_lr_scale(state.opt_state), "eval_s": time.monotonic() - t0}
    loop.history.append(row)
    writer.scalars(step, row)
    writer.history(loop.history)
    writer.flush()
    es, plateau = config.early_stopping, config.reduce_on_plateau
    value = row.get(es.metric)
    if value is None or not math.isfinite(value):
        raise ValueError(f"early_stopping.metric={es.metric!r} is not a finite validation "
                         f"metric; available: {sorted(k for k in row if k.startswith('val/'))}")
    if _improved(value, loop.best_value, es.mode, es.min_delta):
        loop.best_value, loop.epochs_since_best = value, 0
    else:
        loop.epochs_since_best += 1
        if es.patience > 0 and loop.epochs_since_best >= es.patience:
            loop.stopped_early = True
            logging.info("early stopping: %s did not improve for %d epochs", es.metric,
                         es.patience)
    if plateau.enabled:
        if _improved(value, loop.plateau_best, es.mode, es.min_delta):
            loop.plateau_best, loop.epochs_since_plateau_best = value, 0
        else:
            loop.epochs_since_plateau_best += 1
            if loop.epochs_since_plateau_best >= plateau.patience:
                scale = optim.get_lr_scale(state.opt_state) * plateau.factor
                state = state.replace(opt_state=optim.set_lr_scale(state.opt_state, scale))
                loop.epochs_since_plateau_best = 0
                logging.info("reduce on plateau: learning-rate scale now %.3g", scale)
    logging.info("epoch %d: %s", loop.epoch,
                 " ".join(f"{k}={v:.4f}" for k, v in row.items()
                          if isinstance(v, float) and k.startswith(("val/", "train/loss"))))
    return state


def _read_json(path: str) -> dict[str, Any]:
    with open(path) as f:
        return json.load(f)

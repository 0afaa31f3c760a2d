"""What a training run is built from, before its first step: the sharded initial state, the
input (host sources or device-resident arrays) and the choices resolved at start-up. The
loop (`jaxtrain.train`) and the benchmarks (`benchmarks/run.py`) build a run the same way
from these."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from absl import logging
from jax.sharding import Mesh

from jaxtrain.data import device, pipeline
from jaxtrain.task import Task
from jaxtrain.train_step import TrainState, compute_dtype, create_sharded_state, rng_with_impl


def steps_per_epoch(task: Task, config: ml_collections.ConfigDict) -> int:
    n, batch_size = len(task.train_source), config.train.batch_size
    if n < batch_size:
        raise ValueError(f"train split has {n} records, fewer than "
                         f"train.batch_size={batch_size}")
    return n // batch_size


def make_state(task: Task, config: ml_collections.ConfigDict, mesh: Mesh, tx: Any
               ) -> tuple[TrainState, TrainState]:
    """The initial sharded TrainState and its shardings (params fp32; FSDP as configured)."""

    def init_state() -> TrainState:
        params_rng, dropout_rng = jax.random.split(jax.random.key(config.seed))
        params, model_state = task.init_fn(params_rng)
        # Dropout masks from the configured PRNG ("rbg": XLA's RngBitGenerator, BUILD_NOTES).
        dropout_rng = rng_with_impl(dropout_rng, config.train.rng_impl)
        return TrainState.create(params, tx, rng=dropout_rng, model_state=model_state,
                                 ema_decay=config.optim.ema_decay)

    return create_sharded_state(init_state, mesh, config.mesh.fsdp_min_size)


@dataclasses.dataclass(frozen=True)
class Input:
    """Where the loop's batches come from: the task's host sources, or, on the device path
    (`Task.device_data` set), positions into arrays uploaded once (`jaxtrain.data.device`).

    `bind(step)` gives a `(state, batch)` step either way: on the device path it passes the
    uploaded arrays, which the step gathers its records from."""

    sources: dict[str, Any]  # "train" | "val" | "test" -> what the pipeline reads
    mode: str  # "device" | "batches" | "records" (results.json setup.train_read)
    transform: Callable | None = None
    random_transform: Callable | None = None
    batch_transform: Callable | None = None
    gather: device.GatherFn | None = None
    data: dict[str, jax.Array] | None = None
    nbytes: int = 0

    def bind(self, step: Callable[..., Any]) -> Callable[..., Any]:
        if self.data is None:
            return step
        data = self.data
        return lambda state, batch: step(state, batch, data)


def make_input(task: Task, mesh: Mesh) -> Input:
    """The task's input as training reads it; uploads its device data (if any) once."""
    if task.device_data is None:
        sources = {"train": task.train_source, "val": task.val_source, "test": task.test_source}
        return Input(sources, pipeline.read_mode(task.train_source, task.transform,
                                                 task.random_transform),
                     task.transform, task.random_transform, task.batch_transform)
    data = task.device_data()
    sources = {s: device.PositionSource(data.splits[s], s) for s in ("train", "val", "test")}
    for split, host in (("train", task.train_source), ("val", task.val_source),
                        ("test", task.test_source)):
        if len(sources[split]) != len(host):  # the device copy must be the same data set
            raise ValueError(f"device data of the {split} split has {len(sources[split])} "
                             f"records, its host source {len(host)}")
    t0 = time.monotonic()
    arrays = device.upload(data.arrays, mesh)
    jax.block_until_ready(arrays)
    logging.info("device data: %.1f MiB uploaded in %.1f s (%s)", data.nbytes / 2**20,
                 time.monotonic() - t0,
                 ", ".join(f"{k} {v.dtype}{list(v.shape)}" for k, v in data.arrays.items()))
    return Input(sources, "device", gather=data.gather, data=arrays, nbytes=data.nbytes)


def train_batches(inputs: Input, config: ml_collections.ConfigDict, mesh: Mesh,
                  num_epochs: int) -> Any:
    """This process's host batches of the training input, exactly as training reads them.
    Device-resident input ships positions only: worker processes would cost the host more
    than they save (8 grain workers: 1.06 ms a step against 0.09 without, measured)."""
    workers = 0 if inputs.mode == "device" else config.data.worker_count
    return iter(pipeline.train_dataset(
        inputs.sources["train"], global_batch_size=config.train.batch_size, mesh=mesh,
        seed=config.seed, num_epochs=num_epochs, transform=inputs.transform,
        random_transform=inputs.random_transform, batch_transform=inputs.batch_transform,
        worker_count=workers, read_threads=config.data.read_threads))


def resolved_setup(task: Task, config: ml_collections.ConfigDict, mesh: Mesh,
                   inputs: Input) -> dict[str, Any]:
    """Every choice made at start-up rather than spelled out in the config: logged, and
    written to results.json, so two runs of one config on two machines can be told apart."""
    return {"backend": jax.default_backend(), "device_kind": jax.devices()[0].device_kind,
            "devices": jax.device_count(), "processes": jax.process_count(),
            "mesh": dict(mesh.shape),
            "compute_dtype": jnp.dtype(compute_dtype(config.train.compute_dtype)).name,
            "train_read": inputs.mode,
            **({"device_data_mib": round(inputs.nbytes / 2**20, 1)} if inputs.data else {}),
            **task.choices}

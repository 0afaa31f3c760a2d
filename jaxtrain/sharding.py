"""Device mesh, shardings, multi-host start-up and global batches.

One process per host drives all its local devices; all processes together form one global
mesh ("data" axis for data parallelism, optional "fsdp" axis that also shards parameters).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from absl import logging
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXES = ("data", "fsdp")  # the batch is split over both axes


def queued_steps_can_deadlock(mesh: Mesh) -> bool:
    """True where several queued executions of a step with collectives can deadlock: XLA:CPU
    with more than one device. There an all-reduce's rendezvous waits for a device thread that
    never comes (reproduced with a bare jitted psum step on 8 forced CPU devices, jaxlib
    0.10.2: aborts within 20k async steps; none with at most two in flight). The train loop
    then waits for the step before the one it just dispatched."""
    return mesh.devices.size > 1 and mesh.devices.flat[0].platform == "cpu"


def maybe_initialize_distributed(coordinator_address: str = "", num_processes: int = 0,
                                 process_id: int = -1, enabled: bool = False) -> None:
    """Calls `jax.distributed.initialize` when asked to, or when a cluster is detected.

    Explicit arguments win; otherwise JAX's own cluster detection (SLURM, Open MPI, GKE, ...)
    fills them in. Safe to call twice.
    """
    if jax.distributed.is_initialized():
        return
    on_cluster = "SLURM_JOB_ID" in os.environ and int(os.environ.get("SLURM_NTASKS", "1")) > 1
    if not (enabled or coordinator_address or on_cluster):
        return
    kwargs: dict[str, Any] = {}
    if coordinator_address:
        kwargs["coordinator_address"] = coordinator_address
    if num_processes > 0:
        kwargs["num_processes"] = num_processes
    if process_id >= 0:
        kwargs["process_id"] = process_id
    jax.distributed.initialize(**kwargs)
    logging.info("distributed: process %d of %d, %d local / %d global devices",
                 jax.process_index(), jax.process_count(), jax.local_device_count(),
                 jax.device_count())


def make_mesh(fsdp: int = 1, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A (data, fsdp) mesh over `devices` (default: every device of every process)."""
    devices = list(devices) if devices is not None else jax.devices()
    n = len(devices)
    if fsdp < 1 or n % fsdp:
        raise ValueError(f"mesh.fsdp={fsdp} must divide the device count {n}")
    # Auto axes: XLA propagates shardings through the model, as flax modules expect.
    return jax.make_mesh((n // fsdp, fsdp), DATA_AXES, axis_types=(AxisType.Auto,) * 2,
                         devices=devices)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA_AXES))


def fsdp_sharding(tree: Any, mesh: Mesh, min_size: int = 2**18) -> Any:
    """Shards each large array's biggest divisible axis over "fsdp"; replicates the rest.

    ZeRO-3 style: optimizer moments follow the parameters they mirror, so a model that does
    not fit replicated fits sharded. Small arrays stay replicated (sharding them only costs
    collectives).
    """
    size = mesh.shape["fsdp"]

    def spec(x: Any) -> NamedSharding:
        shape = getattr(x, "shape", ())
        if size == 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
            return replicated(mesh)
        for axis in np.argsort(shape)[::-1]:
            if shape[axis] % size == 0:
                parts: list[Any] = [None] * len(shape)
                parts[axis] = "fsdp"
                return NamedSharding(mesh, P(*parts))
        return replicated(mesh)

    return jax.tree.map(spec, tree)


def process_batch_size(global_batch_size: int, mesh: Mesh) -> int:
    """This process's share of the global batch; checks it splits evenly over devices."""
    n_dev, n_proc = mesh.size, jax.process_count()
    if global_batch_size % n_dev:
        raise ValueError(f"train.batch_size={global_batch_size} must be divisible by the "
                         f"{n_dev} devices of the mesh")
    return global_batch_size // n_proc


def make_global_batch(local_batch: Any, mesh: Mesh) -> Any:
    """Per-process numpy batch -> one global jax.Array per leaf, sharded over the data axes."""
    sharding = batch_sharding(mesh)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x),
                        local_batch)

"""Device-resident data: a data set uploaded once, each batch gathered inside the jitted step.

When a data set fits a budget of device memory (`data.on_device`, `fits`), a task stores it
compactly (int16 recordings, uint8 images, float16 features), the loop uploads it once per
process, replicated over the mesh, and the host ships only the positions of each batch's
records (`PositionSource`): the same per-epoch permutation and per-process slices as the
host path's whole-batch reads (`pipeline.train_dataset`), so the index stream is the data
state (exact resume, N processes = 1 process). `DeviceData.gather` runs in the train and eval
steps: it cuts, converts and normalizes; augmentation stays in the task's loss function.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from jaxtrain import sharding as shd

Arrays = dict[str, Any]
# (the uploaded arrays, int32 positions (B,)) -> the batch loss_fn / predict_fn read.
GatherFn = Callable[[Arrays, jax.Array], dict[str, jax.Array]]

ON_DEVICE = ("auto", "always", "never")
POSITION = "position"  # the key of a batch's record positions on the device path


@dataclasses.dataclass(frozen=True)
class DeviceData:
    """A task's data set in the form it keeps in device memory.

    arrays: compact host arrays, uploaded once; `gather` reads them whole (a recording to
      cut windows from) or row by row (one image per record).
    splits: split name -> int32 positions of that split's records, in the host source's
      record order (record i of the split is position splits[split][i]); every split's
      positions index the same `arrays`, so evaluation reads what training uploaded.
    gather: jittable (arrays, positions) -> the batch the host path would give the step.
    """

    arrays: Mapping[str, np.ndarray]
    splits: Mapping[str, np.ndarray]
    gather: GatherFn

    @property
    def nbytes(self) -> int:
        return sum(int(a.nbytes) for a in self.arrays.values())


def take(arrays: Arrays, positions: jax.Array, keys: tuple[str, ...] | None = None
         ) -> dict[str, jax.Array]:
    """Rows `positions` of every array (or of `keys`): the gather of record-per-row data."""
    return {k: jnp.take(arrays[k], positions, axis=0) for k in (keys or tuple(arrays))}


def slices(series: jax.Array, starts: jax.Array, length: int, axis: int = 0) -> jax.Array:
    """(B, ..., length, ...) windows of `series` beginning at `starts` along `axis`: cut on
    the device from one uploaded recording instead of shipping overlapping copies."""
    def cut(start: jax.Array) -> jax.Array:
        return jax.lax.dynamic_slice_in_dim(series, start, length, axis)
    return jax.vmap(cut)(starts)


def budget_bytes(fraction: float) -> int:
    """`fraction` of one local device's memory; on CPU, of host RAM shared by its devices."""
    device = jax.local_devices()[0]
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and stats.get("bytes_limit"):
        return int(fraction * stats["bytes_limit"])
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return int(fraction * ram / max(1, jax.local_device_count()))


def fits(on_device: str, nbytes: int, fraction: float) -> bool:
    """Whether a data set of `nbytes` lives on the device: `data.on_device` = always | never,
    or auto = when it fits `data.device_memory_fraction` of a device (`budget_bytes`)."""
    if on_device not in ON_DEVICE:
        raise ValueError(f"data.on_device must be one of {', '.join(ON_DEVICE)}, got "
                         f"{on_device!r}")
    if on_device != "auto":
        return on_device == "always"
    return nbytes <= budget_bytes(fraction)


def on_device(config: Any, nbytes: int) -> bool:
    """`fits` for a config's `data.on_device` and `data.device_memory_fraction`."""
    return fits(config.data.on_device, nbytes, config.data.device_memory_fraction)


def upload(arrays: Mapping[str, np.ndarray], mesh: Mesh) -> Arrays:
    """Every array replicated on every device of the mesh, from this process's copy (all
    processes hold the same data; each fills only its own devices)."""
    sharding = shd.replicated(mesh)

    def put(x: np.ndarray) -> jax.Array:
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    return {k: put(v) for k, v in arrays.items()}


class PositionSource:
    """A split's records as positions only: what the host reads on the device path.

    Its `read_batch` makes `pipeline.train_dataset` / `eval_dataset` serve whole batches
    of positions, so the order, the per-process slices and the saved iterator state are
    those of any whole-batch source of the same length."""

    def __init__(self, positions: np.ndarray, name: str = ""):
        self.positions = np.asarray(positions, np.int32).reshape(-1)
        self.name = name

    def __len__(self) -> int:
        return len(self.positions)

    def __repr__(self) -> str:  # grain keys checkpoint state on it
        return f"PositionSource(n={len(self)}, split={self.name!r})"

    def read_batch(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        return {POSITION: self.positions[np.asarray(indices, np.int64)]}

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        return {POSITION: self.positions[i]}


def gathered(gather: GatherFn | None, batch: dict[str, Any], arrays: Arrays | None
             ) -> dict[str, Any]:
    """Inside a step: the batch with its positions replaced by the gathered records (other
    keys, such as evaluation's `valid`, kept); the batch itself without device data."""
    if gather is None:
        return batch
    rest = {k: v for k, v in batch.items() if k != POSITION}
    return rest | gather(arrays, batch[POSITION])

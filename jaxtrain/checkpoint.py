"""orbax checkpoints: latest + periodic + best-by-metric, with data-iterator state.

Each checkpoint is a Composite of `state` (the TrainState pytree), `data` (the grain
iterator state of the next batch, JSON) and `meta` (epoch, loop counters, history; JSON).
Keeping latest and best through a preservation policy (not `max_to_keep` + `best_fn`) means
keep-best can never delete the newest checkpoint a resume needs.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as cm


class Checkpointer:
    def __init__(self, directory: str, *, best_metric: str, best_mode: str = "max",
                 keep_every_steps: int = 0, save_interval_steps: int = 1):
        if best_mode not in ("max", "min"):
            raise ValueError(f"checkpoint.best_mode must be 'max' or 'min', got {best_mode!r}")
        self.best_metric, self.best_mode = best_metric, best_mode
        metric = self._metric
        policies = [cm.LatestN(n=1), cm.BestN(get_metric_fn=metric, reverse=best_mode == "min",
                                              n=1, keep_checkpoints_without_metrics=False)]
        if keep_every_steps > 0:
            policies.append(cm.EveryNSteps(keep_every_steps))
        options = ocp.CheckpointManagerOptions(
            save_interval_steps=save_interval_steps, best_fn=metric, best_mode=best_mode,
            preservation_policy=cm.AnyPreservationPolicy(policies), create=True,
            enable_async_checkpointing=True)
        self.manager = ocp.CheckpointManager(os.path.abspath(directory), options=options)

    def _metric(self, metrics: dict) -> float:
        return float(metrics[self.best_metric])

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def best_step(self) -> int | None:
        return self.manager.best_step()

    def save(self, step: int, state: Any, data_state: Any, meta: dict,
             metrics: dict | None = None, force: bool = False) -> bool:
        """Saves unless a non-finite parameter is found (never rotate out a healthy one)."""
        if not bool(all_finite(state.params)):
            raise FloatingPointError(f"non-finite parameters at step {step}; not checkpointed")
        args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                                  data=ocp.args.JsonSave(data_state),
                                  meta=ocp.args.JsonSave(meta))
        return self.manager.save(step, args=args, metrics=metrics, force=force)

    def restore(self, step: int, abstract_state: Any) -> tuple[Any, Any, dict]:
        """Restores into `abstract_state` (ShapeDtypeStructs with the *current* shardings)."""
        args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                                  data=ocp.args.JsonRestore(), meta=ocp.args.JsonRestore())
        r = self.manager.restore(step, args=args)
        return r.state, r.data, r.meta

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()


def load_for_inference(directory: str, *, best_metric: str, best_mode: str = "max"
                       ) -> tuple[dict[str, Any], int]:
    """({"params", "model_state"}, step) of the best checkpoint (else the latest) as host
    numpy arrays: the weights' moving average where the run kept one (`optim.ema_decay`).

    Needs no model, optimizer or mesh.
    """
    directory = os.path.abspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"no checkpoints in {directory}")
    ckpt = Checkpointer(directory, best_metric=best_metric, best_mode=best_mode)
    try:
        step = ckpt.best_step()
        step = ckpt.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoints in {directory}")
    finally:
        ckpt.close()
    path = os.path.join(directory, str(step), "state")
    checkpointer = ocp.PyTreeCheckpointer()
    with _step_metadata_warning_dropped():
        tree = dict(checkpointer.metadata(path).item_metadata)
        restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
        state = checkpointer.restore(path,
                                     args=ocp.args.PyTreeRestore(restore_args=restore_args))
    source = state.get("ema") or state
    return {"params": source["params"], "model_state": source.get("model_state") or {}}, step


@contextlib.contextmanager
def _step_metadata_warning_dropped() -> Iterator[None]:
    """Reading the `state` item of a step by its path makes orbax warn "Metadata file does not
    exist" on every predict and export: the step's metadata is one directory up, where the
    manager wrote it. Only that warning is dropped, only while the item is read."""
    import logging

    def keep(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Metadata file does not exist")

    absl_logger = logging.getLogger("absl")  # where absl.logging (orbax's logger) writes
    absl_logger.addFilter(keep)
    try:
        yield
    finally:
        absl_logger.removeFilter(keep)


@jax.jit
def all_finite(tree: Any) -> jax.Array:
    """Whether every array in `tree` is finite (a scalar bool array)."""
    # Jitted so it also works on arrays spread over several processes.
    return jnp.all(jnp.stack([jnp.isfinite(x).all() for x in jax.tree.leaves(tree)]))


def abstract_like(tree: Any, shardings: Any) -> Any:
    """ShapeDtypeStructs of `tree` carrying `shardings`: the target of a resharding restore."""
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                        tree, shardings)

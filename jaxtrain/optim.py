"""Optimizer from config: AdamW + decay mask, warmup-cosine schedule, global-norm clipping."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import optax

PyTree = Any


def decay_mask(params: PyTree) -> PyTree:
    """True for weight matrices/kernels/embeddings; False for biases, norm scales, 1-D params."""

    def keep(path: tuple, x: Any) -> bool:
        name = str(getattr(path[-1], "key", path[-1])).lower()
        return x.ndim > 1 and name not in ("bias", "scale")

    return jax.tree_util.tree_map_with_path(keep, params)


def make_schedule(cfg: ml_collections.ConfigDict, steps_per_epoch: int, total_steps: int
                  ) -> Callable[[Any], Any]:
    """Linear warmup then cosine decay to `end_lr_factor * lr`; warmup in steps or epochs."""
    warmup = cfg.get("warmup_steps", 0) or round(cfg.get("warmup_epochs", 0.0) * steps_per_epoch)
    warmup = min(int(warmup), max(total_steps - 1, 0))
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=cfg.learning_rate, warmup_steps=warmup,
        decay_steps=max(total_steps, warmup + 1),  # includes the warmup
        end_value=cfg.learning_rate * cfg.get("end_lr_factor", 0.01))


def make_optimizer(cfg: ml_collections.ConfigDict, steps_per_epoch: int, total_steps: int
                   ) -> tuple[optax.GradientTransformation, Callable[[Any], Any]]:
    """Returns (tx, schedule). The clip sits before AdamW, so the norm is truly global.

    The last link is an injected `scale` (1.0): reduce-on-plateau lowers it from the host
    between epochs (`set_lr_scale`), so the factor lives in the optimizer state and is
    checkpointed with it, and the step never recompiles.
    """
    schedule = make_schedule(cfg, steps_per_epoch, total_steps)
    parts = [
        optax.clip_by_global_norm(cfg.grad_clip_norm) if cfg.grad_clip_norm > 0 else
        optax.identity(),
        optax.adamw(schedule, b1=cfg.get("b1", 0.9), b2=cfg.get("b2", 0.999),
                    weight_decay=cfg.weight_decay, mask=decay_mask),
        optax.inject_hyperparams(optax.scale)(step_size=1.0),
    ]
    tx = optax.chain(*parts)
    skip = cfg.get("skip_nonfinite_steps", 0)
    if skip:
        # Off by default: a NaN usually means a bug or a too-high learning rate, which skipping
        # hides. On, a non-finite update is dropped, up to `skip` in a row.
        tx = optax.apply_if_finite(tx, max_consecutive_errors=skip)
    return tx, schedule


def _chain_state(opt_state: PyTree) -> PyTree:
    """The chain's state, inside `apply_if_finite`'s when steps may be skipped."""
    return opt_state.inner_state if isinstance(opt_state, optax.ApplyIfFiniteState) else opt_state


def skipped_steps(opt_state: PyTree) -> int:
    """Steps whose non-finite update was skipped so far (0 when skipping is off)."""
    if isinstance(opt_state, optax.ApplyIfFiniteState):
        return int(opt_state.total_notfinite)
    return 0


def get_lr_scale(opt_state: PyTree) -> float:
    """The reduce-on-plateau factor currently applied (1.0 until a plateau)."""
    return float(_chain_state(opt_state)[-1].hyperparams["step_size"])


def set_lr_scale(opt_state: PyTree, value: float) -> PyTree:
    """A copy of `opt_state` whose plateau factor is `value` (keeps dtype and sharding)."""
    chain = _chain_state(opt_state)
    old = chain[-1].hyperparams["step_size"]
    new = jax.device_put(jax.numpy.asarray(value, old.dtype), old.sharding)
    last = chain[-1]._replace(hyperparams={**chain[-1].hyperparams, "step_size": new})
    chain = (*chain[:-1], last)
    if isinstance(opt_state, optax.ApplyIfFiniteState):
        return opt_state._replace(inner_state=chain)
    return chain

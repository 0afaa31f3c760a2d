"""Training phases: which parameters train, with which loss, at which learning rate, when.

Fine-tuning a pretrained backbone goes in phases: first the new head alone over a frozen
backbone, later the top of the backbone too at a lower learning rate. A task lists them as
`Task.phases`; phase k runs from epoch `phases[k].start_epoch` until the next one starts.

    Phase(start_epoch=0, loss_fn=head_only_loss, trainable=head_mask)
    Phase(start_epoch=5, loss_fn=top_loss, trainable=top_mask, lr_scale=0.1)

How it stays exact and cheap:
* One optimizer state for all phases: each phase's update is the shared optimizer's update,
  then zeroed outside its `trainable` mask and scaled by `lr_scale` (`gated`). Optimizer
  state shapes never change, so checkpoints of either phase restore into the same state and
  a resumed run picks its phase from the step alone (`phase_at`): resume is exact in both.
* Frozen parameters get no update at all (no weight decay either). The phase's `loss_fn` is
  where the backward pass is cut (`stop_gradient` before the trainable part): XLA then drops
  the frozen part's backward computation, so a frozen layer costs its forward pass only.
* Each phase compiles its own step once (the loss differs); switching costs no recompile
  of the other.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from jaxtrain.train_step import LossFn, TrainState, make_train_step

PyTree = Any


@dataclasses.dataclass(frozen=True)
class Phase:
    """From epoch `start_epoch` on (until the next phase): `loss_fn`, updates only where
    `trainable` (a pytree of bools shaped like the params) is True, learning rate times
    `lr_scale`. `name` is for logs."""

    start_epoch: int
    loss_fn: LossFn
    trainable: PyTree
    lr_scale: float = 1.0
    name: str = ""


def check(phases: Sequence[Phase]) -> None:
    if not phases:
        raise ValueError("phases: need at least one")
    starts = [p.start_epoch for p in phases]
    if starts[0] != 0 or any(b <= a for a, b in itertools.pairwise(starts)):
        raise ValueError(f"phases must start at epoch 0 and in increasing order, got {starts}")


def phase_at(phases: Sequence[Phase], step: int, steps_per_epoch: int) -> int:
    """Index of the phase that step `step` (0-based, the step about to run) belongs to."""
    epoch = step // steps_per_epoch
    return max(i for i, p in enumerate(phases) if p.start_epoch <= epoch)


def gated(tx: optax.GradientTransformation, trainable: PyTree, lr_scale: float = 1.0
          ) -> optax.GradientTransformation:
    """`tx` with its updates zeroed where `trainable` is False and scaled by `lr_scale`.

    Same `init`, same state structure as `tx` (unlike `optax.masked`, which passes the
    masked-out gradients through unchanged, and unlike a chain, which nests the state)."""

    def update(grads, state, params=None):
        updates, state = tx.update(grads, state, params)
        updates = jax.tree.map(lambda u, m: u * lr_scale if m else jnp.zeros_like(u),
                               updates, trainable)
        return updates, state

    return optax.GradientTransformation(tx.init, update)


def count_trainable(params: PyTree, trainable: PyTree) -> int:
    """Number of parameters a phase trains."""
    return sum(x.size for x, m in zip(jax.tree.leaves(params), jax.tree.leaves(trainable),
                                      strict=True) if m)


class PhasedStep:
    """A train step that runs the phase of the step it is given (one compiled step each).

    The current step is read from the state once (on the first call, after a restore) and
    counted on the host afterwards, so choosing a phase never waits for the device."""

    def __init__(self, phases: Sequence[Phase], tx: optax.GradientTransformation, mesh: Mesh,
                 shardings: TrainState, steps_per_epoch: int,
                 learning_rate_fn: Callable[[jax.Array], jax.Array] | None = None,
                 gather: Any = None):
        check(phases)
        self.phases, self.steps_per_epoch = list(phases), steps_per_epoch
        self._steps = [
            make_train_step(p.loss_fn, gated(tx, p.trainable, p.lr_scale), mesh, shardings,
                            learning_rate_fn=_scaled(learning_rate_fn, p.lr_scale),
                            gather=gather)
            for p in self.phases]
        self._step: int | None = None

    def __call__(self, state: TrainState, batch: PyTree, *data: PyTree
                 ) -> tuple[TrainState, dict]:
        if self._step is None:
            self._step = int(state.step)
        k = phase_at(self.phases, self._step, self.steps_per_epoch)
        self._step += 1
        state, metrics = self._steps[k](state, batch, *data)
        return state, {**metrics, "phase": jnp.float32(k)}


def _scaled(fn: Callable[[jax.Array], jax.Array] | None, scale: float
            ) -> Callable[[jax.Array], jax.Array] | None:
    return None if fn is None else (lambda step: fn(step) * scale)


def make_step(phases: Sequence[Phase], loss_fn: LossFn, tx: optax.GradientTransformation,
              mesh: Mesh, shardings: TrainState, steps_per_epoch: int,
              learning_rate_fn: Callable[[jax.Array], jax.Array] | None = None,
              gather: Any = None) -> Any:
    """The loop's train step: the plain one without phases, a `PhasedStep` with them
    (`gather`: device-resident data, see `train_step.make_train_step`)."""
    if not phases:
        return make_train_step(loss_fn, tx, mesh, shardings, learning_rate_fn=learning_rate_fn,
                               gather=gather)
    return PhasedStep(phases, tx, mesh, shardings, steps_per_epoch, learning_rate_fn, gather)

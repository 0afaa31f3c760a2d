"""Train state and jitted, sharded train/eval steps built from a pure loss function.

The one contract a user needs::

    def loss_fn(params, model_state, batch, rng) -> (loss, (metrics, new_model_state))

`model_state` holds mutable collections (e.g. {"batch_stats": ...}; `{}` when there are
none). `metrics` is a dict of scalars averaged into the logs. Everything else (sharding,
donation, optimizer, rng handling) is the factory's job.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from jaxtrain import sharding as shd
from jaxtrain.data import device

PyTree = Any
LossFn = Callable[[PyTree, PyTree, PyTree, jax.Array], tuple[jax.Array, tuple[dict, PyTree]]]
PredictFn = Callable[[PyTree, PyTree, PyTree], dict[str, jax.Array]]

# Train-step outputs that are bookkeeping, not metrics: 1.0 when the step's loss / gradient
# norm was not finite (summed: counts), and the step itself when either was (NO_STEP when
# not; combined with min, not sum).
NONFINITE = {"loss": "nonfinite/loss", "grad_norm": "nonfinite/grad_norm"}
FIRST_NONFINITE_STEP = "nonfinite/first_step"
NO_STEP = 2**31 - 1


@flax.struct.dataclass
class TrainState:
    """Everything that changes during training; a pytree, saved whole in checkpoints."""

    step: jax.Array
    params: PyTree  # float32 master weights
    opt_state: PyTree
    model_state: PyTree  # mutable collections, e.g. batch_stats
    rng: jax.Array  # raw uint32 key data (checkpoint-friendly); folded with step each step
    # {"params", "model_state"} averaged over the steps (`ema_decay` > 0), else None.
    ema: PyTree = None
    rng_impl: str = flax.struct.field(pytree_node=False, default="threefry2x32")
    ema_decay: float = flax.struct.field(pytree_node=False, default=0.0)

    @classmethod
    def create(cls, params: PyTree, tx: optax.GradientTransformation, *, rng: jax.Array,
               model_state: PyTree | None = None, ema_decay: float = 0.0) -> TrainState:
        """`rng`: a typed key (its impl, e.g. "rbg", is kept) or raw threefry key data.
        `ema_decay` > 0 keeps an exponential moving average of the weights, which evaluation,
        checkpoints' best-step choice, test and export then use (`inference_variables`)."""
        typed = jnp.issubdtype(rng.dtype, jax.dtypes.prng_key)
        model_state = model_state if model_state is not None else {}
        ema = None
        if ema_decay:
            ema = jax.tree.map(jnp.copy, {"params": params, "model_state": model_state})
        return cls(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                   model_state=model_state, ema=ema, ema_decay=float(ema_decay),
                   rng=jax.random.key_data(rng) if typed else rng,
                   rng_impl=str(jax.random.key_impl(rng)) if typed else "threefry2x32")

    def inference_variables(self) -> tuple[PyTree, PyTree]:
        """(params, model_state) to evaluate, test and export: the moving average if kept."""
        if self.ema is not None:
            return self.ema["params"], self.ema["model_state"]
        return self.params, self.model_state

    def step_key(self) -> jax.Array:
        """This step's dropout/augmentation key: the run's key folded with the step."""
        return jax.random.fold_in(jax.random.wrap_key_data(self.rng, impl=self.rng_impl),
                                  self.step)


def update_ema(ema: PyTree, params: PyTree, model_state: PyTree, step: jax.Array,
               decay: float) -> PyTree:
    """One step of the weights' moving average (floating leaves; others are copied).

    The decay ramps up as (1 + step) / (10 + step) (TensorFlow's ExponentialMovingAverage
    with num_updates), so the average forgets the random initialization within a few hundred
    steps instead of ~1 / (1 - decay) of them.
    """
    d = jnp.minimum(decay, (1.0 + step) / (10.0 + step))

    def average(old: jax.Array, new: jax.Array) -> jax.Array:
        if not jnp.issubdtype(new.dtype, jnp.floating):
            return new
        return (d * old + (1.0 - d) * new).astype(new.dtype)

    return jax.tree.map(average, ema, {"params": params, "model_state": model_state})


def rng_with_impl(key: jax.Array, impl: str) -> jax.Array:
    """`key` itself if it already is of `impl`, else a key of `impl` seeded from it."""
    if str(jax.random.key_impl(key)) == impl:
        return key
    return jax.random.key(jax.random.bits(key, (), jnp.uint32), impl=impl)


def state_sharding(state: TrainState, mesh: Mesh, fsdp_min_size: int = 2**18) -> TrainState:
    """Replicated state, except large params and their optimizer moments over "fsdp"."""
    return shd.fsdp_sharding(state, mesh, fsdp_min_size)


def create_sharded_state(init_fn: Callable[[], TrainState], mesh: Mesh,
                         fsdp_min_size: int = 2**18) -> tuple[TrainState, TrainState]:
    """Runs `init_fn` under jit so every array is created directly in its final sharding."""
    abstract = jax.eval_shape(init_fn)
    shardings = state_sharding(abstract, mesh, fsdp_min_size)
    return jax.jit(init_fn, out_shardings=shardings)(), shardings


def make_train_step(loss_fn: LossFn, tx: optax.GradientTransformation, mesh: Mesh,
                    state_shardings: TrainState, *,
                    learning_rate_fn: Callable[[jax.Array], jax.Array] | None = None,
                    donate: bool = True, gather: device.GatherFn | None = None
                    ) -> Callable[..., tuple[TrainState, dict]]:
    """Jitted `(state, batch[, data]) -> (state, metrics)`: batch sharded over the data axes.

    Gradients are all-reduced by XLA from the shardings alone (no pmap, no explicit psum).
    The state buffers are donated, so the update happens in place. With `gather` the batch
    holds record positions and `data` the device-resident arrays (`jaxtrain.data.device`,
    replicated, never donated): the records are gathered here, inside the step.
    """

    def train_step(state: TrainState, batch: PyTree, data: PyTree = None
                   ) -> tuple[TrainState, dict]:
        rng = state.step_key()
        batch = device.gathered(gather, batch, data)

        def compute_loss(params):
            return loss_fn(params, state.model_state, batch, rng)

        (loss, (metrics, model_state)), grads = jax.value_and_grad(
            compute_loss, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        grad_norm = optax.tree.norm(grads)
        # A non-finite value would poison the epoch means; the flags below report it.
        metrics = jax.tree.map(lambda v: jnp.where(jnp.isfinite(v), v, 0.0),
                               {**metrics, "loss": loss, "grad_norm": grad_norm})
        metrics = {**metrics,
                   # Summed on device by the loop and checked when read: divergence is seen
                   # without a host sync per step (train.py, _DeviceSums).
                   NONFINITE["loss"]: (~jnp.isfinite(loss)).astype(jnp.float32),
                   NONFINITE["grad_norm"]: (~jnp.isfinite(grad_norm)).astype(jnp.float32),
                   FIRST_NONFINITE_STEP: jnp.where(
                       jnp.isfinite(loss) & jnp.isfinite(grad_norm), NO_STEP,
                       state.step + 1).astype(jnp.int32)}
        if learning_rate_fn is not None:
            metrics["learning_rate"] = learning_rate_fn(state.step)
        ema = state.ema
        if ema is not None:
            ema = update_ema(ema, params, model_state, state.step, state.ema_decay)
        new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                                  model_state=model_state, ema=ema)
        return new_state, metrics

    return jax.jit(train_step,
                   in_shardings=_in_shardings(state_shardings, mesh, gather),
                   out_shardings=(state_shardings, shd.replicated(mesh)),
                   donate_argnums=(0,) if donate else ())


def _in_shardings(state_shardings: TrainState, mesh: Mesh, gather: Any) -> tuple:
    """(state, batch) shardings, and the replicated device data's when there is a gather."""
    data = (shd.replicated(mesh),) if gather is not None else ()
    return (state_shardings, shd.batch_sharding(mesh), *data)


def make_eval_step(predict_fn: PredictFn, mesh: Mesh, state_shardings: TrainState,
                   gather: device.GatherFn | None = None
                   ) -> Callable[..., dict[str, jax.Array]]:
    """Jitted `(state, batch[, data]) -> outputs`, outputs sharded like the batch (`gather`:
    see `make_train_step`)."""

    def eval_step(state: TrainState, batch: PyTree, data: PyTree = None
                  ) -> dict[str, jax.Array]:
        return predict_fn(*state.inference_variables(), device.gathered(gather, batch, data))

    return jax.jit(eval_step, in_shardings=_in_shardings(state_shardings, mesh, gather),
                   out_shardings=shd.batch_sharding(mesh))


def runs_in_step(where: str, key: str) -> bool:
    """For host work a jitted step can take over (normalization, augmentation): "step" puts
    it in the step, "host" keeps it in the input pipeline, "auto" is the step on GPU/TPU and
    the host on CPU, where XLA and the pipeline share the same cores (BUILD_NOTES).
    `key` names the config entry in the error."""
    if where not in ("auto", "step", "host"):
        raise ValueError(f"{key} must be auto, step or host, got {where!r}")
    return where == "step" or (where == "auto" and jax.default_backend() != "cpu")


def compute_dtype(name: str) -> jnp.dtype:
    """'auto' -> bfloat16 on GPU/TPU, float32 on CPU (no native bf16 there: slower, not faster).

    Parameters stay float32 either way (the master copy the optimizer updates); modules take
    this as their `dtype` and losses upcast logits to float32.
    """
    if name == "auto":
        return jnp.float32 if jax.default_backend() == "cpu" else jnp.bfloat16
    if name not in ("float32", "bfloat16"):
        raise ValueError(f"train.compute_dtype must be auto, float32 or bfloat16, got {name!r}")
    return jnp.dtype(name)

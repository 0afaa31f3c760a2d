"""Reference models any system can report next to its network (results.json "baseline"):
a margin over a cheap model shows what the network learned."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxtrain import losses


def fit_logistic_regression(features: np.ndarray, labels: np.ndarray, num_classes: int, *,
                            class_weights: np.ndarray | None = None, l2: float = 1e-3,
                            steps: int = 200
                            ) -> Callable[[np.ndarray], np.ndarray]:
    """Fits on standardised features with L-BFGS; returns `predict(features) -> probs`."""
    mean, std = features.mean(0), features.std(0) + 1e-6
    x = jnp.asarray((features - mean) / std, jnp.float32)
    y = jnp.asarray(labels, jnp.int32)
    w = None if class_weights is None else jnp.asarray(class_weights, jnp.float32)
    params = {"w": jnp.zeros((x.shape[1], num_classes)), "b": jnp.zeros((num_classes,))}

    def objective(p):
        logits = x @ p["w"] + p["b"]
        return losses.softmax_cross_entropy(logits, y, class_weights=w) + l2 * jnp.sum(p["w"] ** 2)

    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(objective)

    @jax.jit
    def run(params):
        def body(carry, _):
            p, s = carry
            value, grad = value_and_grad(p, state=s)
            updates, s = opt.update(grad, s, p, value=value, grad=grad, value_fn=objective)
            return (optax.apply_updates(p, updates), s), None

        (params, _), _ = jax.lax.scan(body, (params, opt.init(params)), None, length=steps)
        return params

    params = jax.device_get(run(params))

    def predict(new_features: np.ndarray) -> np.ndarray:
        z = (new_features - mean) / std
        return np.asarray(jax.nn.softmax(z @ params["w"] + params["b"]))

    return predict

"""Training-only augmentation of normalized DAS windows, on the host or in the train step.

Per window: a time shift by an integer in [-max_shift, max_shift] with zero padding (not a
roll: wrapping would move the window's tail to its start and fake an arrival there; zero is
the mean of a normalized channel); one amplitude factor in `scale`; Gaussian noise of `noise`
times each channel's std (dead channels stay flat, as they would in real data).

`augment` does it to one window with numpy in the input pipeline, `augment_batch` to a whole
batch with jax inside the jitted train step; `config.augment.where` picks one. Why both: on a
GPU the step takes the host's costliest per-window work off the input pipeline; on a CPU
XLA's Gaussian draws cost more than numpy's.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def augment(x: np.ndarray, rng: np.random.Generator, *, noise: float = 0.05,
            scale: tuple[float, float] = (0.9, 1.1), max_shift: int = 50) -> np.ndarray:
    """One augmented copy of a (channels, time) window, drawn from `rng` (host, numpy)."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"augment expects one (channels, time) window, got shape {x.shape}")
    limit = min(max_shift, x.shape[1] - 1)
    shift = int(rng.integers(-limit, limit + 1)) if limit > 0 else 0
    out = np.zeros_like(x)
    if shift >= 0:
        out[:, shift:] = x[:, : x.shape[1] - shift]
    else:
        out[:, :shift] = x[:, -shift:]
    out *= np.float32(rng.uniform(*scale))
    if noise > 0:
        std = out.std(axis=1, keepdims=True)
        out += (rng.standard_normal(out.shape) * (noise * std)).astype(np.float32)
    return out


def augment_batch(x: jax.Array, key: jax.Array, *, noise: float = 0.05,
                  scale: tuple[float, float] = (0.9, 1.1), max_shift: int = 50) -> jax.Array:
    """`augment` for every window of a (batch, channels, time) batch, drawn from `key`
    (device, in the train step)."""
    if x.ndim != 3:
        raise ValueError(f"augment_batch expects (batch, channels, time), got shape {x.shape}")
    b, _, t = x.shape
    k_shift, k_scale, k_noise = jax.random.split(key, 3)
    limit = min(max_shift, t - 1)
    if limit > 0:
        shift = jax.random.randint(k_shift, (b,), -limit, limit + 1)
        padded = jnp.pad(x, ((0, 0), (0, 0), (limit, limit)))
        # out[j] = x[j - shift]: a slice of the padded window starting at limit - shift.
        x = jax.vmap(lambda w, s: jax.lax.dynamic_slice_in_dim(w, limit - s, t, axis=1))(
            padded, shift)
    x = x * jax.random.uniform(k_scale, (b, 1, 1), x.dtype, scale[0], scale[1])
    if noise > 0:
        std = x.std(axis=2, keepdims=True)
        x = x + jax.random.normal(k_noise, x.shape, x.dtype) * (noise * std)
    return x

"""Config values checked at start-up, before any data are generated or read.

Each system declares its rules in one place (`System.validate`); the shared keys (train,
optim, early stopping, checkpoint, mesh) are checked here. A broken value stops the run
with one line naming the key, the value and what is allowed::

    config_checks.check(config, {
        "data.seq_len": config_checks.positive_int,
        "model.dropout": config_checks.probability,
        "data.normalization": config_checks.one_of("robust", "zscore"),
    })
    config_checks.require(config.model.d_model % config.model.num_heads == 0,
                          "model.num_heads", config.model.num_heads,
                          f"a divisor of model.d_model={config.model.d_model}")
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import ml_collections

# A rule returns None for a good value, else what is allowed ("an integer >= 1").
Rule = Callable[[Any], str | None]


class ConfigValueError(ValueError):
    """A config value that cannot work, said in one line."""

    def __init__(self, key: str, value: Any, allowed: str):
        super().__init__(f"config.{key}={value!r} is not allowed: expected {allowed}")
        self.key = key


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (isinstance(v, int | float) and not isinstance(v, bool)
            and math.isfinite(float(v)))


def int_at_least(low: int) -> Rule:
    return lambda v: None if _is_int(v) and v >= low else f"an integer >= {low}"


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def positive(v: Any) -> str | None:
    return None if _is_number(v) and v > 0 else "a finite number > 0"


def non_negative(v: Any) -> str | None:
    return None if _is_number(v) and v >= 0 else "a finite number >= 0"


def probability(v: Any) -> str | None:
    return None if _is_number(v) and 0 <= v <= 1 else "a number in [0, 1]"


def fraction_below_one(v: Any) -> str | None:
    return None if _is_number(v) and 0 <= v < 1 else "a number in [0, 1)"


def one_of(*allowed: Any) -> Rule:
    return lambda v: None if v in allowed else "one of " + ", ".join(map(repr, allowed))


def boolean(v: Any) -> str | None:
    return None if isinstance(v, bool) else "True or False"


def string(v: Any) -> str | None:
    return None if isinstance(v, str) else "a string"


def ints_at_least(low: int, min_len: int = 0) -> Rule:
    """A tuple/list of integers >= low, at least `min_len` long."""

    def rule(v: Any) -> str | None:
        ok = (isinstance(v, tuple | list) and len(v) >= min_len
              and all(_is_int(x) and x >= low for x in v))
        return None if ok else (f"a tuple of integers >= {low}"
                                + (f" with at least {min_len} entries" if min_len else ""))

    return rule


def parse_step_range(v: Any) -> tuple[int, int] | None:
    """`"FIRST,LAST"` (1 <= FIRST <= LAST) as (FIRST, LAST); "" -> None; else ValueError."""
    if not isinstance(v, str):
        raise ValueError(v)
    if not v.strip():
        return None
    parts = v.split(",")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(v)
    first, last = (int(p) for p in parts)
    if not 1 <= first <= last:
        raise ValueError(v)
    return first, last


def step_range(v: Any) -> str | None:
    try:
        parse_step_range(v)
    except ValueError:
        return '"FIRST,LAST" steps with 1 <= FIRST <= LAST (e.g. "10,20"), or "" (off)'
    return None


def fractions(count: int) -> Rule:
    """`count` non-negative numbers summing to 1 (split fractions)."""

    def rule(v: Any) -> str | None:
        ok = (isinstance(v, tuple | list) and len(v) == count
              and all(_is_number(x) and x >= 0 for x in v) and abs(sum(v) - 1) < 1e-6)
        return None if ok else f"{count} fractions >= 0 summing to 1"

    return rule


def get(config: ml_collections.ConfigDict, key: str) -> Any:
    """`config`'s value at the dotted `key`."""
    value: Any = config
    for part in key.split("."):
        value = value[part]
    return value


def require(ok: bool, key: str, value: Any, allowed: str) -> None:
    """A cross-key rule: raises `ConfigValueError` unless `ok`."""
    if not ok:
        raise ConfigValueError(key, value, allowed)


def check(config: ml_collections.ConfigDict, rules: Mapping[str, Rule]) -> None:
    """Every `key: rule` pair; the first broken one raises `ConfigValueError`."""
    for key, rule in rules.items():
        value = get(config, key)
        allowed = rule(value)
        if allowed is not None:
            raise ConfigValueError(key, value, allowed)


SHARED_RULES: dict[str, Rule] = {
    "seed": non_negative_int,
    "data.worker_count": non_negative_int,
    "data.read_threads": positive_int,
    "data.on_device": one_of("auto", "always", "never"),
    "data.device_memory_fraction": probability,
    "train.batch_size": positive_int,
    "train.eval_batch_size": positive_int,
    "train.epochs": positive_int,
    "train.compute_dtype": one_of("auto", "float32", "bfloat16"),
    "train.log_every_s": positive,
    "train.report": boolean,
    "train.rng_impl": one_of("rbg", "threefry2x32", "unsafe_rbg"),
    "train.profile_steps": step_range,
    "optim.learning_rate": positive,
    "optim.warmup_steps": non_negative_int,
    "optim.warmup_epochs": non_negative,
    "optim.end_lr_factor": probability,
    "optim.weight_decay": non_negative,
    "optim.grad_clip_norm": non_negative,  # 0 = no clipping
    "optim.b1": fraction_below_one,
    "optim.b2": fraction_below_one,
    "optim.ema_decay": fraction_below_one,
    "optim.skip_nonfinite_steps": non_negative_int,
    "train.check_finite_every": positive_int,
    "early_stopping.metric": string,
    "early_stopping.mode": one_of("min", "max"),
    "early_stopping.patience": non_negative_int,
    "early_stopping.min_delta": non_negative,
    "reduce_on_plateau.enabled": boolean,
    "reduce_on_plateau.factor": fraction_below_one,
    "reduce_on_plateau.patience": positive_int,
    "checkpoint.every_steps": non_negative_int,
    "checkpoint.keep_every_steps": non_negative_int,
    "mesh.fsdp": positive_int,
    "mesh.fsdp_min_size": non_negative_int,
}


def check_shared(config: ml_collections.ConfigDict) -> None:
    """The keys every config has (jaxtrain/config.py), and how they fit the devices."""
    check(config, SHARED_RULES)
    es = config.early_stopping
    require(es.metric.startswith("val/"), "early_stopping.metric", es.metric,
            "a validation metric, 'val/<name>' (see history.csv)")


def check_devices(config: ml_collections.ConfigDict, device_count: int) -> None:
    """Sizes that must split evenly over the devices of the mesh."""
    fsdp = config.mesh.fsdp
    require(device_count % fsdp == 0, "mesh.fsdp", fsdp,
            f"a divisor of the device count {device_count}")
    for key in ("train.batch_size", "train.eval_batch_size"):
        value = get(config, key)
        require(value % device_count == 0, key, value,
                f"a multiple of the device count {device_count}")

"""The fire config's own keys, checked at start-up (`System.validate`)."""

from __future__ import annotations

import ml_collections

from jaxtrain import config_checks as cc


def validate(config: ml_collections.ConfigDict) -> None:
    d, m = config.data, config.model
    cc.check(config, {
        "data.path": cc.string,
        "data.samples_per_area": cc.positive_int,
        "data.num_areas": cc.positive_int,
        "data.seed": cc.non_negative_int,
        "data.seq_len": cc.int_at_least(2),
        "data.blocks_per_area": cc.positive_int,
        "data.split": cc.fractions(3),
        "data.train_stride": cc.positive_int,
        "data.eval_stride": cc.positive_int,
        "data.normalization": cc.one_of("robust", "zscore"),
        "data.diff_lags": cc.ints_at_least(1),
        "data.in_memory_gib": cc.non_negative,
        "data.normalize_in": cc.one_of("auto", "step", "host"),
        "model.d_model": cc.positive_int,
        "model.num_heads": cc.positive_int,
        "model.num_layers": cc.positive_int,
        "model.d_ff": cc.positive_int,
        "model.dropout": cc.fraction_below_one,
        "train.class_weight_power": cc.non_negative,
        "train.label_smoothing": cc.fraction_below_one,
        "train.risk_weight": cc.non_negative,
    })
    cc.require(m.d_model % m.num_heads == 0, "model.num_heads", m.num_heads,
               f"a divisor of model.d_model={m.d_model}")
    cc.require(all(lag < d.seq_len for lag in d.diff_lags), "data.diff_lags",
               tuple(d.diff_lags), f"lags shorter than data.seq_len={d.seq_len}")
    if config.get("ensemble") is not None:  # the ML ensemble (tasks/fire/ensemble.py)
        cc.check(config, {
            "ensemble.enabled": cc.boolean,
            "ensemble.rf_trees": cc.positive_int,
            "ensemble.rf_max_depth": cc.positive_int,
            "ensemble.gb_iterations": cc.positive_int,
            "ensemble.gb_max_depth": cc.positive_int,
            "ensemble.gb_learning_rate": cc.positive,
            "ensemble.importance_repeats": cc.positive_int,
            "ensemble.importance_windows": cc.positive_int,
        })
        step = config.ensemble.weight_step
        cc.require(isinstance(step, float) and 0 < step <= 1 and abs(1 / step - round(1 / step))
                   < 1e-9, "ensemble.weight_step", step, "1/k for an integer k >= 1 (0.1, 0.25)")

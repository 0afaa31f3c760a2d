"""The DAS config's own keys, checked at start-up (`System.validate`)."""

from __future__ import annotations

import ml_collections

from jaxtrain import config_checks as cc
from jaxtrain.tasks.das.reader import LAYOUTS

# Per model: its keys and their rules (configs/das.py MODELS).
MODEL_RULES: dict[str, dict[str, cc.Rule]] = {
    "tcn": {"width": cc.positive_int, "stem_kernel": cc.positive_int,
            "stem_stride": cc.positive_int, "kernel_size": cc.positive_int,
            "dilations": cc.ints_at_least(1, min_len=1)},
    "bilstm": {"hidden": cc.positive_int, "num_layers": cc.positive_int,
               "stem_width": cc.positive_int, "stem_strides": cc.ints_at_least(1)},
    "transformer": {"patch_size": cc.positive_int, "d_model": cc.positive_int,
                    "num_heads": cc.positive_int, "num_layers": cc.positive_int,
                    "d_ff": cc.positive_int},
}


def validate(config: ml_collections.ConfigDict) -> None:
    d, m, a = config.data, config.model, config.augment
    cc.check(config, {
        "data.path": cc.string,
        "data.layout": cc.one_of(*LAYOUTS),
        "data.num_files": cc.positive_int,
        "data.duration_s": cc.positive,
        "data.num_channels": cc.positive_int,
        "data.sampling_rate": cc.positive,
        "data.seed": cc.non_negative_int,
        "data.window": cc.int_at_least(8),
        "data.stride": cc.positive_int,
        "data.eval_stride": cc.positive_int,
        "data.split": cc.fractions(3),
        "data.min_event_overlap_s": cc.non_negative,
        "data.event_threshold": cc.probability,
        "data.max_open_files": cc.positive_int,
        "data.stream": cc.one_of("auto", "blocks", "windows"),
        "data.stream_block_samples": cc.positive_int,
        "data.stream_shuffle_blocks": cc.positive_int,
        "data.stream_memory_mb": cc.positive_int,
        "augment.enabled": cc.boolean,
        "augment.noise": cc.non_negative,
        "augment.max_shift": cc.non_negative_int,
        "augment.where": cc.one_of("auto", "step", "host"),
        "model.name": cc.one_of(*MODEL_RULES),
        "model.dropout": cc.fraction_below_one,
        "train.class_weight_power": cc.non_negative,
        "train.label_smoothing": cc.fraction_below_one,
    })
    cc.check(config, {f"model.{k}": rule for k, rule in MODEL_RULES[m.name].items()})
    cc.require(not (d.stream == "blocks" and a.enabled and a.where == "host"), "data.stream",
               d.stream, "auto or windows with augment.where=host (block reads augment in "
               "the step)")
    scale = tuple(a.scale)
    cc.require(len(scale) == 2 and 0 < scale[0] <= scale[1], "augment.scale", scale,
               "(low, high) with 0 < low <= high")
    if m.name == "transformer":
        cc.require(m.d_model % m.num_heads == 0, "model.num_heads", m.num_heads,
                   f"a divisor of model.d_model={m.d_model}")
        cc.require(d.window % m.patch_size == 0, "model.patch_size", m.patch_size,
                   f"a divisor of data.window={d.window}")

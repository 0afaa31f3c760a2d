"""The debris config's own keys, checked at start-up (`System.validate`)."""

from __future__ import annotations

import ml_collections

from jaxtrain import config_checks as cc


def validate(config: ml_collections.ConfigDict) -> None:
    d, p = config.data, config.predict
    cc.check(config, {
        "data.path": cc.string,
        "data.num_patches": cc.positive_int,
        "data.size": cc.int_at_least(16),
        "data.seed": cc.non_negative_int,
        "data.crop_size": cc.non_negative_int,
        "data.crops_per_patch": cc.positive_int,
        "data.focus_prob": cc.probability,
        "model.base_width": cc.positive_int,
        "model.dropout": cc.fraction_below_one,
        "model.bottleneck_dropout": cc.fraction_below_one,
        "model.se_ratio": cc.positive_int,
        "loss.dice_weight": cc.non_negative,
        "loss.focal_weight": cc.non_negative,
        "loss.ce_weight": cc.non_negative,
        "loss.focal_alpha": cc.probability,
        "loss.focal_gamma": cc.non_negative,
        "loss.dice_smooth": cc.non_negative,
        "loss.class_weight_power": cc.non_negative,
        "eval.threshold_bins": cc.int_at_least(2),
        "predict.window": cc.int_at_least(16),
        "predict.overlap": cc.non_negative_int,
        "predict.threshold": cc.probability,
    })
    cc.require(d.crop_size % 16 == 0, "data.crop_size", d.crop_size,
               "a multiple of 16 (the U-Net halves it 4 times), or 0 for whole patches")
    cc.require(d.size % 16 == 0, "data.size", d.size, "a multiple of 16")
    cc.require(d.crop_size <= d.size, "data.crop_size", d.crop_size,
               f"at most data.size={d.size}")
    cc.require(p.window % 16 == 0, "predict.window", p.window, "a multiple of 16")
    cc.require(p.overlap < p.window, "predict.overlap", p.overlap,
               f"less than predict.window={p.window}")
    loss = config.loss
    cc.require(loss.dice_weight + loss.focal_weight + loss.ce_weight > 0, "loss.dice_weight",
               loss.dice_weight, "loss weights that are not all 0")

"""The glaucoma config's own keys, checked at start-up (`System.validate`)."""

from __future__ import annotations

import ml_collections

from jaxtrain import config_checks as cc


def _pair(low: float, high: float) -> cc.Rule:
    def rule(v) -> str | None:
        ok = (isinstance(v, tuple | list) and len(v) == 2 and all(cc.positive(x) is None
                                                                   for x in v)
              and low <= v[0] <= v[1] <= high)
        return None if ok else f"(low, high) with {low} <= low <= high <= {high}"

    return rule


def _strings(v) -> str | None:
    ok = isinstance(v, tuple | list) and all(isinstance(x, str) and x for x in v)
    return None if ok else "a tuple of non-empty strings"


def validate(config: ml_collections.ConfigDict) -> None:
    d, f, m = config.data, config.finetune, config.model
    cc.check(config, {
        "data.path": cc.string,
        "data.labels_csv": cc.string,
        "data.on_missing": cc.one_of("error", "skip"),
        "data.on_unreadable": cc.one_of("error", "skip"),
        "data.image_size": cc.int_at_least(32),
        "data.clahe": cc.non_negative,
        "data.disc_crop": lambda v: None if isinstance(v, int | float) and (
            v == 0 or 0.1 <= v <= 1) else "0 (whole retina) or a fraction in [0.1, 1]",
        "data.split": cc.fractions(3),
        "data.seed": cc.non_negative_int,
        "data.in_memory_gib": cc.non_negative,
        "data.synthetic.num_images": cc.int_at_least(20),
        "data.synthetic.size": cc.int_at_least(32),
        "data.synthetic.rg_fraction": cc.fraction_below_one,
        "data.synthetic.ungradable": cc.fraction_below_one,
        "data.synthetic.per_folder": cc.positive_int,
        "model.weights": cc.string,
        "model.imagenet_input_fix": cc.boolean,
        "model.dropout": lambda v: None if isinstance(v, tuple | list) and len(v) == 3 and all(
            cc.fraction_below_one(x) is None for x in v) else "three numbers in [0, 1)",
        "model.hidden": cc.ints_at_least(1, 2),
        "model.drop_connect_rate": cc.fraction_below_one,
        "model.bn_momentum": cc.fraction_below_one,
        "loss.focal_alpha": cc.probability,
        "loss.focal_gamma": cc.non_negative,
        "loss.head_l2": cc.non_negative,
        "augment.enabled": cc.boolean,
        "augment.where": cc.one_of("auto", "step", "host"),
        "augment.rotation": cc.non_negative,
        "augment.shift": cc.fraction_below_one,
        "augment.zoom": cc.fraction_below_one,
        "augment.brightness": _pair(0.0, 10.0),
        "finetune.enabled": cc.boolean,
        "finetune.unfreeze_epoch": cc.positive_int,
        "finetune.unfreeze": _strings,
        "finetune.learning_rate": cc.positive,
        "eval.tta_passes": lambda v: None if isinstance(v, int) and 1 <= v <= 5 else
        "an integer in 1..5",
        "eval.baseline": cc.boolean,
    })
    cc.require(d.synthetic.rg_fraction + d.synthetic.ungradable < 1,
               "data.synthetic.rg_fraction", d.synthetic.rg_fraction,
               "a fraction that leaves room for NRG images with data.synthetic.ungradable")
    cc.require(not f.enabled or bool(m.weights), "finetune.enabled", f.enabled,
               "False unless model.weights names a Keras efficientnetb0_notop.h5 (a frozen "
               "randomly initialised backbone learns nothing)")
    cc.require(not f.enabled or f.unfreeze_epoch < config.train.epochs,
               "finetune.unfreeze_epoch", f.unfreeze_epoch,
               f"an epoch before train.epochs={config.train.epochs}")

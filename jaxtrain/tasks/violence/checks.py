"""The violence config's own keys, checked at start-up (`System.validate`)."""

from __future__ import annotations

import ml_collections

from jaxtrain import config_checks as cc
from jaxtrain.tasks.violence.task import FRAME_INPUTS


def validate(config: ml_collections.ConfigDict) -> None:
    """The violence keys (`System.validate`)."""
    d, s, e = config.data, config.data.synthetic, config.encoder
    cc.check(config, {
        "data.path": cc.string, "data.layout": cc.one_of("rwf2000", "seed"),
        "data.num_frames": cc.int_at_least(2), "data.min_frames": cc.positive_int,
        "data.val_fraction": cc.fraction_below_one, "data.split_seed": cc.non_negative_int,
        "data.decode_workers": cc.non_negative_int,
        "data.frame_inputs": cc.one_of(*FRAME_INPUTS), "data.reverse_prob": cc.probability,
        "data.feature_cache": cc.string,
        "data.progress_every_s": cc.positive,
        "data.synthetic.clips": cc.ints_at_least(1, min_len=2),
        "data.synthetic.fight_fraction": cc.probability,
        "data.synthetic.size": cc.int_at_least(32),
        "data.synthetic.frames": cc.ints_at_least(2, min_len=2),
        "data.synthetic.fps": cc.positive_int, "data.synthetic.seed": cc.non_negative_int,
        "data.synthetic.bit_rate": cc.int_at_least(10_000),
        "data.synthetic.workers": cc.non_negative_int,
        "encoder.output": cc.one_of("fc2", "fc1", "block1_pool", "block2_pool",
                                    "block3_pool", "block4_pool", "block5_pool"),
        "encoder.grid": cc.positive_int, "encoder.input_size": cc.int_at_least(32),
        "encoder.weights": cc.string, "encoder.seed": cc.non_negative_int,
        "encoder.batch_frames": cc.positive_int, "encoder.batch_clips": cc.positive_int,
        "model.lstm_units": cc.positive_int, "model.lstm_layers": cc.positive_int,
        "model.dense": cc.ints_at_least(1), "model.dense_batchnorm": cc.non_negative_int,
        "model.dropout": cc.fraction_below_one, "model.bn_momentum": cc.fraction_below_one,
        "loss.focal_alpha": cc.positive, "loss.focal_gamma": cc.non_negative,
        "loss.label_smoothing": cc.fraction_below_one,
        "loss.class_weights": cc.one_of("balanced", "none"),
        "eval.reverse_view": cc.boolean,
        "predict.threshold": cc.probability,
    })
    cc.require(min(s.frames) == s.frames[0] and len(s.frames) == 2, "data.synthetic.frames",
               s.frames, "(min, max) with min <= max")
    cc.require(d.min_frames <= min(s.frames) or bool(d.path), "data.min_frames",
               d.min_frames, f"at most the shortest synthetic clip ({min(s.frames)} frames)")
    cc.require(len(s.clips) == (2 if d.layout == "rwf2000" else 3), "data.synthetic.clips",
               s.clips, "2 counts (train, val) for layout rwf2000, 3 for layout seed")
    cc.require(d.layout == "seed" or d.val_fraction > 0, "data.val_fraction", d.val_fraction,
               "> 0 with the rwf2000 layout (validation is cut from train)")
    size = e.input_size
    if e.output in ("fc1", "fc2"):
        cc.require(size == 224, "encoder.input_size", size, f"224 for output {e.output}")
    else:
        block = int(e.output[len("block")])
        cells = size // 2 ** block
        cc.require(size % 2 ** block == 0 and cells % e.grid == 0, "encoder.grid", e.grid,
                   f"a divisor of the {e.output} map size {size}/{2 ** block}")
    cc.require(d.min_frames >= 1 and d.num_frames >= 2, "data.num_frames", d.num_frames,
               "at least 2")
    cc.require(e.batch_frames >= d.num_frames, "encoder.batch_frames", e.batch_frames,
               f">= data.num_frames={d.num_frames}")

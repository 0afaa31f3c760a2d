"""Marine-debris segmentation: an SE U-Net on 11-band Sentinel-2 patches.

    python -m jaxtrain.main --config=configs/debris.py --workdir=/tmp/debris
    python -m jaxtrain.main --config=configs/debris.py --workdir=/tmp/debris64 \
        --config.model.base_width=64                 # the reference 31.3M-parameter model
    python -m jaxtrain.main --config=configs/debris.py:seed --workdir=/tmp/debris_seed
                                                     # the reference recipe (GPU-sized)
    python -m jaxtrain.main --config=configs/debris.py --workdir=/tmp/marida \
        --config.data.path=/data/marida.h5           # debris.marida.convert_marida output

The default is sized for 2 CPU cores: base width 16 (1.96M parameters), training on random
64x64 crops (8 per patch and epoch, half of them centred near debris), evaluation on whole
256x256 patches.
"""

from ml_collections import ConfigDict

from jaxtrain.config import base_config

VARIANTS = ("seed",)  # --config=debris:seed: full width on whole patches (GPU-sized)


def get_config(arg: str | None = None) -> ConfigDict:
    c = base_config()
    c.task = "debris"

    c.data.path = ""  # a jaxtrain-debris-v1 HDF5 file; empty = synthetic, generated once
    c.data.num_patches = 80  # synthetic patches (split 70/15/15, stratified by debris)
    c.data.size = 256
    c.data.seed = 0
    c.data.crop_size = 64  # training crops (multiple of 16); 0 = whole patches
    c.data.crops_per_patch = 8  # records per patch and epoch when cropping
    c.data.focus_prob = 0.5  # share of crops centred near a debris pixel

    c.model = ConfigDict(dict(base_width=16, dropout=0.2, bottleneck_dropout=0.2, se_ratio=16))

    c.loss = ConfigDict(dict(dice_weight=0.4, focal_weight=0.4, ce_weight=0.2,
                             focal_alpha=0.25, focal_gamma=2.0, dice_smooth=1.0,
                             class_weight_power=1.0))  # inverse-frequency CE weights

    c.train.batch_size = 16
    c.train.eval_batch_size = 8
    c.train.epochs = 20  # 560 steps: 9m18s on 2 shared CPU cores (BUILD_NOTES)

    c.optim.learning_rate = 1e-3
    c.optim.warmup_epochs = 1.0
    c.optim.weight_decay = 1e-4
    c.optim.grad_clip_norm = 1.0

    c.eval = ConfigDict(dict(threshold_bins=100))  # thresholds swept: k / bins

    c.early_stopping.metric = "val/best_f1"  # or val/debris_f1 (at 0.5), val/best_iou
    c.early_stopping.mode = "max"
    c.early_stopping.patience = 15

    # Inference (jaxtrain.predict): windows, their overlap, and the mask threshold.
    c.predict = ConfigDict(dict(window=256, overlap=64, threshold=0.5))

    if arg == "seed":  # the reference recipe: full width, whole patches, 2000 train patches
        c.data.num_patches = 2858  # 70/15/15 -> 2000 train, 429 val, 429 test
        c.data.crop_size = 0
        c.data.focus_prob = 0.0
        c.model.base_width = 64
        c.train.epochs = 100
        c.optim.warmup_epochs = 10.0
    elif arg:
        raise ValueError(f"unknown debris config variant {arg!r} (known: seed)")
    return c

"""Referable-glaucoma screening: EfficientNet-B0 on fundus photographs (AIROGS).

    python -m jaxtrain.main --config=configs/glaucoma.py --workdir=/tmp/glaucoma
    python -m jaxtrain.main --config=configs/glaucoma.py --workdir=/tmp/airogs \
        --config.data.path=/data/airogs             # train_labels.csv + the JPEG parts
    python -m jaxtrain.main --config=configs/glaucoma.py:seed --workdir=/tmp/glaucoma_seed \
        --config.data.path=/data/airogs --config.model.weights=/models/efficientnetb0_notop.h5
                                                    # the reference recipe (GPU-sized)
    python -m jaxtrain.predict --workdir=/tmp/glaucoma --input=NEW_JPEGS --output=refer.csv

The default is sized for 2 CPU cores: synthetic photographs (JPEG, 128 px) decoded once to
a 32x32 crop around the optic disc (a fifth of the retina's width), EfficientNet-B0
trained from scratch (no weights file: every layer trains from the first step; freezing a
random backbone would learn nothing) with lighter dropout and a higher learning rate.
`:seed` is the reference recipe: the whole retina at 384x384, batch 32, CLAHE, Keras
ImageNet weights, the head alone for 5 epochs over a frozen backbone, then Keras's last 50
layers at learning rate 1e-5.
"""

from ml_collections import ConfigDict

from jaxtrain.config import base_config

VARIANTS = ("seed",)  # --config=glaucoma:seed: the reference recipe (GPU, ImageNet weights)

# Keras EfficientNetB0's last 50 layers (block6b_project_bn .. top_bn / avg_pool) as
# parameter paths below params/backbone: 2,305,680 parameters (tests/test_glaucoma.py).
LAST_50_KERAS_LAYERS = ("block6b/project_bn", "block6c", "block6d", "block7a", "top_conv",
                        "top_bn")


def get_config(arg: str | None = None) -> ConfigDict:
    c = base_config()
    c.task = "glaucoma"

    c.data.path = ""  # an AIROGS tree (labels CSV + JPEGs in any subfolders); "" = synthetic
    c.data.labels_csv = ""  # default: <path>/train_labels.csv
    c.data.on_missing = "error"  # a CSV id without an image file: error | skip (counted)
    c.data.on_unreadable = "error"  # an image that does not decode: error | skip (counted)
    c.data.image_size = 32  # decoded once to this square size into the HDF5 image cache
    c.data.clahe = 0.0  # CLAHE clip limit on the L channel (0 = off; the reference: 2.0)
    # A square of this fraction of the retina's width around the optic disc (its brightest
    # region), resized to image_size; 0 = the whole retina (the reference recipe).
    c.data.disc_crop = 0.2
    c.data.split = (0.7, 0.15, 0.15)  # stratified by class, grouped by patient_id if any
    c.data.seed = 0
    c.data.in_memory_gib = 2.0  # a split's cached images are held in RAM below this size
    c.data.synthetic = ConfigDict(dict(
        # 10% RG of 6,000 (420 RG training photographs, 90 in test): fewer RG photographs
        # left the from-scratch network short of the targets (BUILD_NOTES).
        num_images=6000, size=128, rg_fraction=0.10, ungradable=0.02, per_folder=1000))

    c.model = ConfigDict(dict(
        weights="",  # a Keras efficientnetb0_notop.h5 (ImageNet); "" = random initialization
        imagenet_input_fix=True,  # with weights: Keras's extra 1/sqrt(std) input scaling
        # From scratch in ~700 steps the reference's regularization (head dropout 0.3,
        # 0.3, 0.2; drop-connect 0.2) slows learning more than it prevents overfitting.
        dropout=(0.1, 0.1, 0.1), hidden=(256, 128), drop_connect_rate=0.0,
        # BatchNorm running-average momentum: Keras's 0.99 needs ~300 steps to forget its
        # initial statistics; a from-scratch run of ~50 steps per epoch evaluates with 0.9.
        bn_momentum=0.9))
    c.loss = ConfigDict(dict(focal_alpha=0.75, focal_gamma=1.5, head_l2=1e-4))
    c.augment = ConfigDict(dict(
        enabled=True, where="auto",  # auto: in the jitted step on GPU/TPU, on the host on CPU
        rotation=15.0, shift=0.1, zoom=0.1, brightness=(0.8, 1.2)))  # + h/v flips
    # Two phases over pretrained weights: the head alone (backbone frozen, BatchNorm in
    # inference mode), then also `unfreeze` from `unfreeze_epoch` at `learning_rate`.
    c.finetune = ConfigDict(dict(enabled=False, unfreeze_epoch=5, learning_rate=1e-5,
                                 unfreeze=LAST_50_KERAS_LAYERS))
    c.eval = ConfigDict(dict(tta_passes=5, baseline=True))
    c.predict = ConfigDict(dict(threshold=0.5))  # used only when the run has no tuned one

    c.train.batch_size = 64  # 32 px crops: batch 64 is ~1.3x the images/s of 32 on 2 cores
    c.train.eval_batch_size = 64
    c.train.epochs = 16
    c.optim.learning_rate = 4e-3  # from scratch; the reference's 1e-4 is for fine-tuning
    c.optim.warmup_epochs = 1.0
    c.optim.weight_decay = 0.0  # Adam as the reference; L2 on the head is in the loss
    c.optim.grad_clip_norm = 1.0
    # Evaluated on a moving average of the weights: validation AUC reaches its plateau in
    # about half the epochs, which buys 25% more photographs in the same time (BUILD_NOTES).
    c.optim.ema_decay = 0.99

    c.early_stopping.metric = "val/auc"
    c.early_stopping.mode = "max"
    c.early_stopping.patience = 6
    c.reduce_on_plateau.enabled = True
    c.reduce_on_plateau.factor = 0.5
    c.reduce_on_plateau.patience = 3

    if arg == "seed":  # the reference recipe
        c.data.image_size = 384
        c.data.clahe = 2.0
        c.data.disc_crop = 0.0
        c.data.in_memory_gib = 0.0  # ~100k images at 384 px: read from the HDF5 cache
        c.data.worker_count = 8
        c.model.weights = ""  # required: --config.model.weights=.../efficientnetb0_notop.h5
        c.finetune.enabled = True
        c.model.bn_momentum = 0.99  # Keras's (the backbone's BatchNorm is frozen anyway)
        c.loss.head_l2 = 5e-4  # the reference's L2 on the first head layer
        c.model.dropout, c.model.drop_connect_rate = (0.3, 0.3, 0.2), 0.2  # the reference's
        c.train.batch_size = 32
        c.train.eval_batch_size = 64
        c.train.epochs = 15
        c.optim.learning_rate = 1e-4
        c.optim.warmup_epochs = 2.0
        c.optim.ema_decay = 0.0  # the reference's: the weights as trained
    elif arg:
        raise ValueError(f"unknown glaucoma config variant {arg!r} (known: seed)")
    return c

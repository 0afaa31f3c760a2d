"""Fire detection: a transformer on 60-minute windows of 6 sensors in 5 areas.

    python -m jaxtrain.main --config=configs/fire.py --workdir=/tmp/fire
    python -m jaxtrain.main --config=configs/fire.py --workdir=/tmp/fire5m \
        --config.data.samples_per_area=1000000 --config.train.batch_size=4096

The default trains in minutes on 2 CPU cores; 5M readings (1M per area) are one override away.
"""

from ml_collections import ConfigDict

from jaxtrain.config import base_config

VARIANTS = ()  # --config=fire only


def get_config(arg: str | None = None) -> ConfigDict:
    c = base_config()
    c.task = "fire"

    c.data.path = ""  # a jaxtrain-fire-v1 HDF5 file; empty = synthetic, generated once
    c.data.samples_per_area = 20_000  # minutes per area (1_000_000: 5M readings in all)
    c.data.num_areas = 5
    c.data.seed = 0
    c.data.seq_len = 60  # minutes per window; label = state at the window's last minute
    c.data.blocks_per_area = 20  # contiguous time blocks, assigned whole to one split
    c.data.split = (0.7, 0.15, 0.15)
    c.data.train_stride = 12  # minutes between training windows (they still overlap 48/60)
    c.data.eval_stride = 8
    c.data.normalization = "robust"  # median/IQR + asinh tails ("zscore": mean/std)
    c.data.diff_lags = (5, 15)  # extra input channels: change over 5 and 15 minutes (() = off)
    c.data.in_memory_gib = 1.0  # per reading process: series held in RAM (rest read lazily)
    c.data.normalize_in = "auto"  # auto: inside the train step on GPU/TPU, on the host on CPU

    c.model = ConfigDict(dict(d_model=128, num_heads=4, num_layers=3, d_ff=512, dropout=0.1))

    c.train.batch_size = 128
    c.train.eval_batch_size = 512
    c.train.epochs = 4
    c.train.class_weight_power = 0.5  # sqrt inverse-frequency class weights
    c.train.label_smoothing = 0.0
    c.train.risk_weight = 0.5

    c.optim.learning_rate = 1e-3
    c.optim.warmup_epochs = 0.5
    c.optim.weight_decay = 0.01

    c.early_stopping.metric = "val/macro_f1"
    c.early_stopping.mode = "max"
    c.early_stopping.patience = 5

    # The ML ensemble beside the transformer (tasks/fire/ensemble.py), trained after it on
    # window features; RF and boosting settings are the seed's plan.
    c.ensemble = ConfigDict(dict(
        enabled=True,
        rf_trees=100, rf_max_depth=15,
        gb_iterations=100, gb_max_depth=6, gb_learning_rate=0.1,
        weight_step=0.1,  # soft-vote weights: a grid on the simplex, chosen on validation
        importance_repeats=3,  # shuffles per feature / channel for permutation importance
        # validation windows for the transformer's channel importance (1 + 6 x repeats passes
        # through the model: its cost; the tree members use up to 8192)
        importance_windows=1024,
    ))
    return c

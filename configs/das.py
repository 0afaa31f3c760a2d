"""DAS seismic events (earthquake / quarry blast / noise) from sliding windows of HDF5 recordings.

    python -m jaxtrain.main --config=configs/das.py:tcn --workdir=/tmp/das_tcn
    python -m jaxtrain.main --config=configs/das.py:bilstm --workdir=/tmp/das_bilstm
    python -m jaxtrain.main --config=configs/das.py:transformer --workdir=/tmp/das_tf
    python -m jaxtrain.predict --workdir=/tmp/das_tcn --input=NEW_DIR_OR_FILE --output=preds.csv

Your own recordings: --config.data.path=DIR (HDF5 files + labels.json) with
--config.data.layout=prodml|dasdae|jaxtrain and the files' --config.data.num_channels and
--config.data.sampling_rate. The defaults train in minutes on 2 CPU cores on synthetic data;
scale the model up with e.g. --config.model.width=128 (tcn), --config.model.hidden=128
(bilstm), --config.model.d_model=128 --config.model.num_layers=4 (transformer).
"""

from ml_collections import ConfigDict

from jaxtrain.config import base_config

MODELS = {
    # Dilated residual 1-D convs after a x4 strided stem; ~48k parameters.
    "tcn": dict(name="tcn", width=32, stem_kernel=8, stem_stride=4, kernel_size=3,
                dilations=(1, 2, 4, 8, 16), dropout=0.1),
    # x8 conv stem (1024 -> 128 steps), one scanned BiLSTM layer; ~38k parameters.
    "bilstm": dict(name="bilstm", hidden=32, num_layers=1, stem_width=32, stem_strides=(4, 2),
                   dropout=0.1),
    # 32 patches of 32 samples x all channels + CLS, 2 post-LN layers; ~200k parameters.
    "transformer": dict(name="transformer", patch_size=32, d_model=64, num_heads=4,
                        num_layers=2, d_ff=128, dropout=0.1),
}
VARIANTS = tuple(MODELS)  # --config=das:<model>; the default is tcn


def get_config(arg: str | None = None) -> ConfigDict:
    name = arg or "tcn"
    if name not in MODELS:
        raise ValueError(f"unknown DAS model {name!r}; use configs/das.py:{'|'.join(MODELS)}")
    c = base_config()
    c.task = "das"

    c.data.path = ""  # directory of recordings + labels.json; empty = synthetic, generated once
    c.data.layout = "jaxtrain"  # tasks/das/reader.py LAYOUTS: jaxtrain | prodml | dasdae
    c.data.num_files = 160  # synthetic: 40% earthquake, 40% blast, 20% noise -> 16 test files
    c.data.duration_s = 60.0  # synthetic file length (one event per event file)
    c.data.num_channels = 64  # the recordings' channel count (checked on every file)
    c.data.sampling_rate = 250.0  # Hz, the recordings' rate (checked on every file)
    c.data.seed = 0
    c.data.window = 1024  # samples per window (4.1 s at 250 Hz)
    c.data.stride = 512  # training windows overlap by half
    c.data.eval_stride = 512  # validation, test and inference windows
    c.data.split = (0.7, 0.2, 0.1)  # by file, stratified by file label
    c.data.min_event_overlap_s = 1.0  # a window is an event window from this much overlap on
    c.data.event_threshold = 0.5  # file = event when some window's 1 - p_noise reaches this
    c.data.max_open_files = 128  # h5py handles kept open per reading process (4 MiB cache each)
    # Recordings that do not fit on the device (data.on_device): auto | blocks | windows.
    # blocks (auto's pick unless augment.where=host): one h5py read per block of samples, an
    # epoch order local to groups of blocks; windows: one h5py read per window (slow).
    c.data.stream = "auto"
    c.data.stream_block_samples = 32768  # per block, rounded up to the files' chunk length
    c.data.stream_shuffle_blocks = 16  # blocks whose windows are shuffled together
    c.data.stream_memory_mb = 512  # RAM for cached blocks per reading process (>= 2 groups)

    c.augment = ConfigDict(dict(enabled=True, noise=0.05, scale=(0.9, 1.1), max_shift=50,
                                where="auto"))  # auto | step | host: auto = step on GPU

    c.model = ConfigDict(MODELS[name])

    c.train.batch_size = 32
    c.train.eval_batch_size = 128
    c.train.epochs = 6
    c.train.class_weight_power = 0.5  # sqrt inverse-frequency: events are ~12% of windows
    c.train.label_smoothing = 0.0

    c.optim.learning_rate = 2e-3
    c.optim.warmup_epochs = 0.5
    c.optim.weight_decay = 0.01

    c.early_stopping.metric = "val/macro_f1"
    c.early_stopping.mode = "max"
    c.early_stopping.patience = 3
    return c

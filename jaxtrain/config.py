"""Defaults shared by every config in configs/; each config overrides what its seed asks for."""

from ml_collections import ConfigDict


def base_config() -> ConfigDict:
    c = ConfigDict()
    c.task = ""
    c.seed = 0

    c.data = ConfigDict()
    c.data.cache_dir = "~/.cache/jaxtrain"  # where generated synthetic data are kept
    c.data.worker_count = 0  # grain worker processes (0 = read in the main process)
    c.data.read_threads = 2  # grain read-ahead threads per process
    # Data set in device memory, batches gathered in the step (jaxtrain/data/device.py):
    # auto = when it fits device_memory_fraction of one device (on CPU: of host RAM).
    c.data.on_device = "auto"  # auto | always | never
    c.data.device_memory_fraction = 0.4

    c.train = ConfigDict()
    c.train.batch_size = 64  # global, over all devices and processes
    c.train.eval_batch_size = 256
    c.train.epochs = 10
    c.train.compute_dtype = "auto"  # auto: bfloat16 on GPU/TPU, float32 on CPU
    c.train.log_every_s = 10.0
    c.train.report = True  # report.html at the end, TensorBoard images per epoch
    c.train.check_finite_every = 100  # steps between on-device divergence checks (at most)
    c.train.rng_impl = "rbg"  # dropout PRNG: rbg (XLA RngBitGenerator) | threefry2x32 | unsafe_rbg
    # "FIRST,LAST" (e.g. "10,20"): a jax.profiler trace of training steps FIRST..LAST (1 = the
    # first step) under <workdir>/tb/plugins/profile/, for TensorBoard's profile tab; "" = off.
    c.train.profile_steps = ""

    c.optim = ConfigDict()
    c.optim.learning_rate = 1e-3
    c.optim.warmup_steps = 0  # warmup_steps wins over warmup_epochs when > 0
    c.optim.warmup_epochs = 1.0
    c.optim.end_lr_factor = 0.01
    c.optim.weight_decay = 1e-4
    c.optim.grad_clip_norm = 1.0
    c.optim.b1 = 0.9
    c.optim.b2 = 0.999
    # > 0 (e.g. 0.99): validation, the best checkpoint, test, predict and export use an
    # exponential moving average of the weights and BatchNorm statistics (smoother than the
    # last step's); 0 = the weights as trained.
    c.optim.ema_decay = 0.0
    c.optim.skip_nonfinite_steps = 0  # > 0: drop non-finite updates, up to N in a row (logged)

    c.early_stopping = ConfigDict()
    c.early_stopping.metric = "val/loss"
    c.early_stopping.mode = "min"
    c.early_stopping.patience = 0  # 0 = never stop early
    c.early_stopping.min_delta = 0.0

    c.reduce_on_plateau = ConfigDict()
    c.reduce_on_plateau.enabled = False
    c.reduce_on_plateau.factor = 0.5
    c.reduce_on_plateau.patience = 2

    c.checkpoint = ConfigDict()
    c.checkpoint.every_steps = 0  # extra mid-epoch saves (0 = only at epoch ends)
    c.checkpoint.keep_every_steps = 0  # also keep every N-th step forever (0 = off)

    c.mesh = ConfigDict()
    c.mesh.fsdp = 1  # devices per parameter shard (1 = plain data parallelism)
    c.mesh.fsdp_min_size = 2**18  # arrays smaller than this stay replicated

    c.distributed = ConfigDict()
    c.distributed.enabled = False  # also on automatically under multi-task SLURM jobs
    c.distributed.coordinator_address = ""
    c.distributed.num_processes = 0
    c.distributed.process_id = -1
    return c

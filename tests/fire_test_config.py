"""A tiny fire config for tests: the real pipeline and model code, CPU-sized."""

import importlib.util
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config(name: str = "fire", arg: str | None = None):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "configs",
                                                                     f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg) if arg else module.get_config()


def tiny_fire_config(cache_dir: str, **train):
    c = load_config("fire")
    c.data.cache_dir = cache_dir
    c.data.samples_per_area = 4000
    c.data.blocks_per_area = 8
    c.data.train_stride = 8
    c.data.eval_stride = 8
    c.model.d_model = 32
    c.model.d_ff = 64
    c.model.num_layers = 1
    c.model.num_heads = 2
    c.train.batch_size = 32
    c.train.eval_batch_size = 256
    c.train.epochs = 2
    c.train.log_every_s = 1000.0
    c.optim.learning_rate = 3e-3
    c.ensemble.enabled = False  # its own tests (test_fire_ensemble.py) turn it on
    c.train.report = False  # ~5 s of pictures per run; test_fire_train's full run turns it on
    c.train.update(train)
    return c


def get_config(arg: str | None = None):
    """The tiny fire config as a config file, for tests that go through the command line
    (`--config=tests/fire_test_config.py --config.data.cache_dir=...`)."""
    return tiny_fire_config("~/.cache/jaxtrain")

"""Test-wide set-up: 8 fake CPU devices (sharding is tested for real), absl flags parsed,
one XLA compilation cache for the session, single-threaded BLAS."""

import atexit
import os
import shutil
import sys
import tempfile

# Must happen before jax is imported anywhere.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Many tests build the same small models: compile each once per session (results are
# identical; only compile time goes). Subprocess tests inherit it too.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="jaxtrain-test-xla-")
    atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], True)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
# Idle BLAS/OpenMP worker threads spin and starve XLA on a 2-core machine (a scikit-learn fit
# took 70 s with 2 threads, 5 s with 1); set before numpy loads.
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import pytest  # noqa: E402  (after the environment is set)
from absl import flags  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
flags.FLAGS.mark_as_parsed()  # grain reads absl flags; pytest never parses them


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> str:
    """Shared between tests: generated data."""
    return str(tmp_path_factory.mktemp("jaxtrain-cache"))


@pytest.fixture(scope="session")
def fire_ensemble_run(tmp_path_factory, cache_dir):
    """A finished tiny fire run with a small ML ensemble (test_fire_ensemble, test_export):
    (config, workdir, results)."""
    from jaxtrain import main
    from tests.fire_test_config import tiny_fire_config

    config = tiny_fire_config(cache_dir, epochs=1)
    config.ensemble.update(enabled=True, rf_trees=12, rf_max_depth=8, gb_iterations=12,
                           importance_repeats=1, importance_windows=256)
    workdir = str(tmp_path_factory.mktemp("fire_ensemble"))
    return config, workdir, main.run(config, workdir)


# The longest files (CI durations, 2 cores) go first: `--dist loadfile` hands whole files to
# the workers in collection order, and a long file collected last (test_wheel.py) would run
# alone at the end while the other worker idles.
LONGEST_FIRST = ("test_glaucoma.py", "test_multiprocess.py", "test_bad_input.py",
                 "test_debris_train.py", "test_wheel.py", "test_fire_train.py",
                 "test_train_step.py", "test_glaucoma_keras.py", "test_fire_ensemble.py")


def _duration_rank(item) -> int:
    name = os.path.basename(str(item.path))
    return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)


def pytest_collection_modifyitems(config, items):
    """Longest files first (stable within a file); `@pytest.mark.slow` tests (minutes on 2
    CPU cores) run with JAXTRAIN_SLOW_TESTS=1."""
    items.sort(key=_duration_rank)
    if os.environ.get("JAXTRAIN_SLOW_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="slow on CPU: set JAXTRAIN_SLOW_TESTS=1 to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)

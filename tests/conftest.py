"""Test-wide set-up: 8 fake CPU devices (sharding is tested for real), absl flags parsed."""

import os
import sys

# Must happen before jax is imported anywhere.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest
from absl import flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
flags.FLAGS.mark_as_parsed()  # grain reads absl flags; pytest never parses them


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> str:
    """Shared between tests: generated data and the XLA compilation cache."""
    return str(tmp_path_factory.mktemp("jaxtrain-cache"))

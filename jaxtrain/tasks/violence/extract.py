"""Feature extraction alone (main runs it too when the cache is missing or incomplete):

    python -m jaxtrain.tasks.violence.extract --config=configs/violence.py [--config.KEY=V]

Prints one JSON line: the cache's path, its clip count and the videos left out. The stage
itself is features.py (kept apart so that `-m` runs a module the package has not imported).
"""

from __future__ import annotations

import time

from absl import flags
from ml_collections import config_flags

from jaxtrain import config_files
from jaxtrain.cli import start
from jaxtrain.tasks.violence.checks import validate
from jaxtrain.tasks.violence.features import ensure_features
from jaxtrain.tasks.violence.task import dataset_root

_CONFIG = config_flags.DEFINE_config_file("config", None, "the violence config "
                                          "(configs/violence.py or violence:seed)")
flags.FLAGS["config"].parser = config_files.ConfigFlagParser()


def extract() -> dict:
    """The feature cache of --config, made unless it exists; a summary."""
    config = _CONFIG.value
    validate(config)
    t0 = time.monotonic()
    feats = ensure_features(config, dataset_root(config))
    return {"cache": feats.path, "clips": len(feats.names), "bad": len(feats.errors),
            "bad_videos": sorted(feats.errors), "seconds": round(time.monotonic() - t0, 1)}


if __name__ == "__main__":
    start(extract, required=("config",), doc=__doc__)

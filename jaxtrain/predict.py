"""Inference with a trained run: `python -m jaxtrain.predict --workdir=RUN --input=P --output=O`.

Loads RUN/config.json and the run's best checkpoint (else its latest; RUN may also be a bundle
of `jaxtrain.export`, a directory or an s3:// URL), then hands both to the
system's `predict(config, variables, input_path, output_path, batch_size, workdir=RUN) -> dict`
(`task.System.predict`), which reads the new data, writes OUT and returns a short summary
(printed as one JSON line).
`variables` is {"params": ..., "model_state": ...} as host numpy arrays. Input errors end with
one `jaxtrain: error:` line and exit status 2.
"""

from __future__ import annotations

import os

from absl import flags

from jaxtrain import export
from jaxtrain.cli import start
from jaxtrain.run_files import load_trained
from jaxtrain.task import load_system


def predict(workdir: str, input_path: str, output_path: str, batch_size: int = 0) -> dict:
    """Library form of the CLI. `workdir`: a run's workdir, or an exported bundle's directory
    or s3:// URL (downloaded first)."""
    if not os.path.exists(input_path):
        raise FileNotFoundError(f"input not found: {input_path}")
    workdir = export.local_bundle(workdir)
    config, variables, step = load_trained(workdir)
    summary = load_system(config.task).predict(config, variables, input_path, output_path,
                             batch_size or config.train.eval_batch_size,
                             workdir=os.path.abspath(os.path.expanduser(workdir)))
    return {"checkpoint_step": step, **summary}


if __name__ == "__main__":
    # Flags live here, not at import: jaxtrain.main defines --workdir too, and absl flags are
    # process-global, so both modules must be importable side by side (notebooks, tests).
    flags.DEFINE_string("workdir", None, "A training run's workdir, or an exported bundle "
                        "(its directory or s3:// URL, jaxtrain.export).")
    flags.DEFINE_string("input", None, "A file or a directory of files to predict on.")
    flags.DEFINE_string("output", None, "Where to write the predictions.")
    flags.DEFINE_integer("batch_size", 0, "Inference batch (0 = the run's eval batch).")
    f = flags.FLAGS
    start(lambda: predict(f.workdir, f.input, f.output, f.batch_size),
          required=("workdir", "input", "output"), doc=__doc__)

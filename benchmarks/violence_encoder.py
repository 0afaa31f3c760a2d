"""Frame-encoder throughput for the violence feature extraction: jaxtrain's jitted VGG19
(the configured output, input size and grid) beside torchvision's VGG19 cut at the same layer,
same frames, same process (PyTorch imported only here).

    python -m benchmarks.violence_encoder --config=configs/violence.py [--frames=256] [--record]
    python -m benchmarks.violence_encoder --config=configs/violence.py:seed   # fc2 at 224 px

Reports frames/s (median of --repeats timed calls after a warm-up call) for both, and the
ratio. Random weights on both sides: the cost does not depend on their values.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from jaxtrain.tasks.violence import encoder as encoder_lib

# torchvision's vgg19.features index just past each pooling layer
_TORCH_POOL_END = {"block1_pool": 5, "block2_pool": 10, "block3_pool": 19, "block4_pool": 28,
                   "block5_pool": 37}


def _timed(fn, repeats: int) -> float:
    fn()  # compile / warm up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def torch_encoder(output: str, grid: int):
    import torch
    import torchvision

    vgg = torchvision.models.vgg19(weights=None).eval()
    if output in _TORCH_POOL_END:
        trunk = vgg.features[:_TORCH_POOL_END[output]]
        return torch.nn.Sequential(trunk, torch.nn.AdaptiveAvgPool2d(grid),
                                   torch.nn.Flatten())
    return torch.nn.Sequential(vgg.features, vgg.avgpool, torch.nn.Flatten(),
                               *vgg.classifier[:5 if output == "fc2" else 2])


def main(argv: list[str]) -> None:
    import torch

    f = flags.FLAGS
    config = f.config
    e = config.encoder
    frames = np.random.default_rng(0).integers(0, 256, (f.frames, e.input_size, e.input_size,
                                                        3), dtype=np.uint8)
    config.encoder.batch_frames = f.frames
    encode = encoder_lib.make_encoder(config)
    jax_s = _timed(lambda: encode(frames), f.repeats)

    model = torch_encoder(e.output, e.grid).to(memory_format=torch.channels_last)
    mean = torch.tensor([123.68, 116.779, 103.939]).view(1, 3, 1, 1)  # the same caffe input
    x = (torch.from_numpy(frames).permute(0, 3, 1, 2).float() - mean)[:, [2, 1, 0]]
    x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        torch_s = _timed(lambda: model(x), f.repeats)
    result = {
        "benchmark": "violence_encoder", "config": e.to_dict(), "frames": f.frames,
        "device": jax.devices()[0].device_kind, "platform": platform.processor() or "cpu",
        "jax": jax.__version__, "torch": torch.__version__,
        "jax_frames_per_s": round(f.frames / jax_s, 1),
        "torch_frames_per_s": round(f.frames / torch_s, 1),
        "ratio_vs_torch": round(torch_s / jax_s, 3),
        "date": time.strftime("%Y-%m-%d"),
    }
    line = json.dumps(result)
    print(line)
    if f.record:
        with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "results.jsonl"),
                  "a") as out:
            out.write(line + "\n")


if __name__ == "__main__":
    config_flags.DEFINE_config_file("config", None, "A violence config.", lock_config=False)
    flags.DEFINE_integer("frames", 256, "Frames per encoder call.")
    flags.DEFINE_integer("repeats", 3, "Timed calls.")
    flags.DEFINE_bool("record", False, "Append the result to benchmarks/results.jsonl.")
    flags.mark_flag_as_required("config")
    app.run(main)

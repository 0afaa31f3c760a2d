"""What a run leaves in its workdir: TensorBoard events, history.csv, JSON files.

Only process 0 writes shared files; every process logs its own progress line.
"""

from __future__ import annotations

import csv
import os
import resource
import time
from typing import Any

import jax
import numpy as np
from absl import logging

from jaxtrain import files


def host_memory_mb() -> float:
    """Peak resident memory of this process (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def device_memory_mb() -> float | None:
    """Bytes in use on the first local device (None where the backend does not say, e.g. CPU)."""
    stats = jax.local_devices()[0].memory_stats()
    return stats["bytes_in_use"] / 2**20 if stats and "bytes_in_use" in stats else None


class MetricWriter:
    """Scalars to TensorBoard (tensorboardX) and one history.csv row per epoch."""

    def __init__(self, workdir: str):
        self.enabled = jax.process_index() == 0
        self.history_path = os.path.join(workdir, "history.csv")
        self._tb = None
        if self.enabled:
            from tensorboardX import SummaryWriter  # heavy import; only process 0 needs it

            self._tb = SummaryWriter(logdir=os.path.join(workdir, "tb"), flush_secs=30)

    def scalars(self, step: int, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        for k, v in values.items():
            if v is not None and np.ndim(v) == 0 and np.isfinite(v):
                self._tb.add_scalar(k, float(v), global_step=step)

    def images(self, step: int, images: dict[str, np.ndarray]) -> None:
        """(H, W, 3) uint8 pictures to TensorBoard's Images tab (`epoch_images.epoch_images`)."""
        if not self.enabled:
            return
        for tag, image in images.items():
            self._tb.add_image(tag, image, global_step=step, dataformats="HWC")

    def history(self, rows: list[dict[str, Any]]) -> None:
        """Rewrites history.csv from the full list (kept in checkpoints, so resumes agree)."""
        if not self.enabled or not rows:
            return
        keys = list(dict.fromkeys(k for r in rows for k in r))
        with files.atomic_path(self.history_path) as tmp, open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)

    def flush(self) -> None:
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


class Progress:
    """Throughput, ETA and a one-line status every `every_s` seconds. The clock restarts
    after the first step (`start` again): the ETA leaves compilation out."""

    def __init__(self, total_steps: int, batch_size: int, every_s: float = 10.0,
                 epochs: int | None = None):
        self.total, self.batch, self.every_s = total_steps, batch_size, every_s
        self.epochs = epochs
        self._t0 = self._last = time.monotonic()
        self._last_step: int | None = None

    def start(self, step: int) -> None:
        self._t0 = self._last = time.monotonic()
        self._last_step = self._first_step = step

    def due(self) -> bool:
        return time.monotonic() - self._last >= self.every_s

    def rate(self, step: int) -> dict[str, float]:
        """Steps/s and samples/s since the last call."""
        now = time.monotonic()
        dt, ds = now - self._last, step - (self._last_step or 0)
        self._last, self._last_step = now, step
        steps_per_s = ds / dt if dt > 0 else 0.0
        return {"perf/steps_per_s": steps_per_s, "perf/samples_per_s": steps_per_s * self.batch,
                "perf/step_time_ms": 1e3 / steps_per_s if steps_per_s else float("nan")}

    def line(self, step: int, epoch: int, loss: float, rate: dict[str, float]) -> str:
        """`epoch` counts from 1 (the one in progress); `loss` is the epoch's mean so far."""
        elapsed = time.monotonic() - self._t0
        done = max(step - self._first_step, 1)
        eta = elapsed / done * (self.total - step)
        of = f"/{self.epochs}" if self.epochs else ""
        msg = (f"[proc {jax.process_index()}] step {step}/{self.total} epoch {epoch}{of} "
               f"loss {loss:.4g} (epoch mean) {rate['perf/samples_per_s']:.0f} samples/s "
               f"elapsed {_hms(elapsed)} ETA {_hms(eta)}")
        logging.info(msg)
        return msg


def _hms(seconds: float) -> str:
    s = int(max(seconds, 0))
    return f"{s // 3600:d}:{s % 3600 // 60:02d}:{s % 60:02d}"

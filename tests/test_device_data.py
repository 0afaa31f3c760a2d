"""Device-resident data (jaxtrain/data/device.py): the host ships positions, the step gathers.

The device path must train on exactly the batches of the host path, resume exactly, and
give each of N processes its slice of the same global batches; the feeder's reading thread
must report the state of the first batch not yet consumed."""

import csv
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxtrain import main
from jaxtrain.data import device
from jaxtrain.data.pipeline import BatchFeeder, train_dataset
from jaxtrain.sharding import make_mesh
from jaxtrain.tasks.fire.task import build
from tests.fire_test_config import tiny_fire_config


def _history(workdir) -> list[dict]:
    with open(os.path.join(workdir, "history.csv")) as f:
        return list(csv.DictReader(f))


def test_fits_follows_the_setting_and_the_budget():
    assert device.fits("always", 10**15, 0.1) and not device.fits("never", 1, 0.9)
    budget = device.budget_bytes(0.5)
    assert budget > 0
    assert device.fits("auto", budget // 2, 0.5) and not device.fits("auto", budget * 4, 0.5)
    with pytest.raises(ValueError, match=r"data\.on_device"):
        device.fits("sometimes", 1, 0.5)


def test_slices_and_take_cut_what_numpy_cuts():
    series = np.arange(40, dtype=np.float32).reshape(20, 2)
    starts = np.array([0, 5, 13], np.int32)
    got = jax.jit(lambda s, i: device.slices(s, i, 7))(series, starts)
    np.testing.assert_array_equal(got, np.stack([series[s:s + 7] for s in starts]))
    rows = device.take({"a": series, "b": series[:, 0]}, jnp.array([3, 1]))
    np.testing.assert_array_equal(rows["a"], series[[3, 1]])


def test_fire_windows_gathered_on_device_equal_the_host_records(cache_dir, tmp_path):
    config = tiny_fire_config(cache_dir)
    task = build(config, str(tmp_path))
    assert task.device_data is not None  # auto: the tiny log fits
    data = task.device_data()
    assert data.nbytes < 2**22
    gather = jax.jit(data.gather)
    for split, source in (("train", task.train_source), ("test", task.test_source)):
        idx = np.array([0, 3, len(source) - 1])
        host = source.read_batch(idx)
        got = gather(data.arrays, data.splits[split][idx])
        assert set(got) == set(host)
        for k in host:
            np.testing.assert_array_equal(np.asarray(got[k]), host[k].astype(got[k].dtype), k)


def test_device_path_trains_the_host_paths_batches(cache_dir, tmp_path):
    """Same per-epoch permutation and the same normalization, on the device instead of the
    host: the same training curve, and results.json says which path ran."""
    runs = {}
    for where in ("never", "always"):
        config = tiny_fire_config(cache_dir, epochs=1)
        config.data.on_device = where
        config.data.normalize_in = "step"
        results = main.run(config, str(tmp_path / where))
        runs[where] = (_history(tmp_path / where)[0], results)
    (host, host_results), (dev, dev_results) = runs["never"], runs["always"]
    assert host_results["setup"]["train_read"] == "batches"
    assert dev_results["setup"]["train_read"] == "device"
    assert dev_results["setup"]["device_data_mib"] > 0
    assert float(dev["train/loss"]) == pytest.approx(float(host["train/loss"]), rel=1e-4)
    assert float(dev["val/macro_f1"]) == pytest.approx(float(host["val/macro_f1"]), abs=1e-3)


class _Counting:
    """A grain-like iterator of numbered batches with an integer state."""

    def __init__(self, n):
        self.n, self.i = n, 0

    def __next__(self):
        if self.i >= self.n:
            raise StopIteration
        self.i += 1
        return {"x": np.full((8,), self.i - 1, np.int32)}

    def get_state(self):
        return self.i

    def set_state(self, state):
        self.i = state


def test_feeder_thread_reports_the_first_unconsumed_batch():
    mesh = make_mesh()
    feeder = BatchFeeder(_Counting(10), mesh, ahead=3)
    assert int(next(feeder)["x"][0]) == 0 and int(next(feeder)["x"][0]) == 1
    assert feeder.get_state() == 2  # batches 2.. are read ahead, not consumed
    feeder.set_state(7)
    assert [int(b["x"][0]) for b in feeder] == [7, 8, 9]
    assert feeder.get_state() == 10
    feeder.close()


def test_feeder_thread_hands_on_a_reading_error():
    class Broken(_Counting):
        def __next__(self):
            raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        next(BatchFeeder(Broken(3), make_mesh()))


def test_positions_split_over_processes_as_one_process_reads_them():
    """Each of 2 processes reads its half of every global batch of positions."""
    mesh = make_mesh()
    src = device.PositionSource(np.arange(100, 164))
    def batches(process):
        it = iter(train_dataset(src, global_batch_size=16, mesh=mesh, seed=3, num_epochs=2,
                                process=process))
        return np.stack([b[device.POSITION] for b in it])
    one = batches((0, 1))
    halves = np.concatenate([batches((0, 2)), batches((1, 2))], axis=1)
    np.testing.assert_array_equal(halves, one)
    assert sorted(one[:4].ravel()) == list(range(100, 164))  # every record once per epoch

"""grain over HDF5: windows, leakage-free splits, per-process sharding, resumable iteration."""

import os
import pickle

import h5py
import jax
import numpy as np
import pytest

from jaxtrain import data as data_lib
from jaxtrain import sharding
from jaxtrain.data import BatchFeeder, HDF5WindowSource, eval_dataset, split_windows, train_dataset


@pytest.fixture(scope="module")
def h5(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("h5") / "streams.h5")
    with h5py.File(path, "w") as f:
        for s in range(2):
            g = f.create_group(f"s{s}")
            g["x"] = np.arange(500 * 3, dtype=np.float32).reshape(500, 3) + 10_000 * s
            g["y"] = (np.arange(500) % 7 == 0).astype(np.int8)
    return path


def _source(path, windows, length=10, **kwargs):
    return HDF5WindowSource([(path, "s0"), (path, "s1")], windows, length,
                            window_fields={"x": "x"}, point_fields={"y": "y"}, **kwargs)


def test_window_content_and_pickling(h5):
    src = _source(h5, np.array([[0, 9], [1, 499]]))
    r = src[1]
    with h5py.File(h5) as f:
        np.testing.assert_array_equal(r["x"], f["s1/x"][490:500])
        assert r["y"] == f["s1/y"][499]
    assert r["stream"] == 1
    clone = pickle.loads(pickle.dumps(src))  # what grain does to reach a worker process
    assert clone._files == {} and clone._arrays == {}
    np.testing.assert_array_equal(clone[0]["x"], src[0]["x"])


@pytest.mark.parametrize("budget", [0, 6_000, 2**30])  # none, s0's x only, everything in RAM
def test_in_memory_budget_changes_speed_not_records(h5, budget):
    windows = np.array([[0, 9], [1, 499], [0, 250], [1, 100]])
    src, lazy = _source(h5, windows, in_memory_bytes=budget), _source(h5, windows,
                                                                     in_memory_bytes=0)
    for i in range(len(windows)):
        a, b = src[i], lazy[i]
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    assert src._loaded_bytes <= budget
    in_ram = sum(isinstance(v, np.ndarray) for v in src._arrays.values())
    assert in_ram == {0: 0, 6_000: 1, 2**30: 4}[budget]  # x is 6,000 bytes, y 500
    src[0]["x"][:] = -1  # a record is a copy: changing it never changes the cached series
    assert src[0]["x"][0, 0] == 0


@pytest.mark.parametrize("budget", [0, 2**30])  # lazy h5py reads, series in RAM
def test_batched_reads_give_the_per_record_records(h5, budget):
    """`read_batch` (one gather per batch, numpy shuffle) is an optimization: the same
    records with the same keys and dtypes, each once per epoch; eval in the same order."""
    rng = np.random.default_rng(0)
    windows = np.stack([rng.integers(0, 2, 96), rng.choice(np.arange(9, 500), 96, False)], 1)
    src = _source(h5, windows, in_memory_bytes=budget)
    kw = dict(global_batch_size=16, mesh=sharding.make_mesh(), seed=3, num_epochs=2)
    per_record = list(train_dataset(src, **kw, transform=lambda r: r))
    batched = list(train_dataset(src, **kw))
    assert len(batched) == len(per_record) == 2 * 96 // 16
    for a, b in zip(batched, per_record, strict=True):
        assert a.keys() == b.keys()
        assert all(a[k].dtype == b[k].dtype and a[k].shape == b[k].shape for k in a)
    ids = [np.concatenate([b["x"][:, -1, 0] + 1e6 * b["stream"] for b in run])
           for run in (batched, per_record)]
    for epoch in range(2):  # the same 96 windows each epoch, in another order
        part = slice(96 * epoch, 96 * (epoch + 1))
        assert sorted(ids[0][part]) == sorted(ids[1][part]) and len(set(ids[0][part])) == 96
    for b in batched:  # every row is exactly the record it claims to be
        for row in range(16):
            i = np.flatnonzero((windows[:, 0] == b["stream"][row])
                               & (windows[:, 1] * 3 + 10_000 * b["stream"][row]
                                  == b["x"][row, -1, 0]))
            r = src[int(i[0])]
            np.testing.assert_array_equal(b["x"][row], r["x"])
            assert b["y"][row] == r["y"]
    kw.pop("seed"), kw.pop("num_epochs")
    for a, b in zip(eval_dataset(src, **kw), eval_dataset(src, **kw, transform=lambda r: r),
                    strict=True):
        for k in ("x", "y", "stream", "valid"):
            np.testing.assert_array_equal(a[k], b[k])


def test_split_has_no_overlapping_windows_and_is_stratified():
    length = 20
    keys = [np.zeros(1000, np.int8), np.zeros(1000, np.int8)]
    for k in keys:
        k[::97] = 2  # rare positives spread over the blocks
    splits = split_windows([1000, 1000], length, blocks_per_stream=10, seed=3,
                           strides=(1, 2, 2), block_keys=keys)
    covered = {}
    for name, w in splits.items():
        rows = {(int(s), int(t)) for s, e in w for t in range(e - length + 1, e + 1)}
        covered[name] = rows
    assert not covered["train"] & covered["val"]
    assert not covered["train"] & covered["test"]
    assert not covered["val"] & covered["test"]
    n = {k: len(v) for k, v in splits.items()}
    assert n["train"] > 3 * n["val"] / 2  # 70/15/15 with eval stride 2
    for name, w in splits.items():
        assert any(keys[s][e - length + 1:e + 1].max() == 2 for s, e in w), name


def test_process_slices_rebuild_the_global_batch(h5):
    windows = np.stack([np.zeros(200, int), np.arange(9, 209)], 1)
    src = _source(h5, windows)
    mesh = sharding.make_mesh()
    kw = dict(global_batch_size=16, mesh=mesh, seed=7, num_epochs=2)
    whole = list(train_dataset(src, **kw, process=(0, 1)))
    parts = [list(train_dataset(src, **kw, process=(p, 2))) for p in range(2)]
    assert len(whole) == len(parts[0]) == 2 * 200 // 16  # the stream runs on across epochs
    for b, (p0, p1) in zip(whole, zip(*parts, strict=True), strict=True):
        np.testing.assert_array_equal(b["x"], np.concatenate([p0["x"], p1["x"]]))
    stream = np.concatenate([b["x"][:, -1, 0] for b in whole])
    first_epoch, second_epoch = stream[:200], stream[200:400]
    assert len(set(first_epoch)) == 200  # each record exactly once per epoch
    assert set(first_epoch) == set(second_epoch)
    assert not np.array_equal(first_epoch, second_epoch)  # reshuffled


def test_feeder_state_resumes_at_the_next_unconsumed_batch(h5):
    windows = np.stack([np.ones(120, int), np.arange(9, 129)], 1)
    mesh = sharding.make_mesh()

    def make():
        it = iter(train_dataset(_source(h5, windows), global_batch_size=8, mesh=mesh, seed=1,
                                num_epochs=1))
        return BatchFeeder(it, mesh, ahead=3)

    feeder = make()
    seen = [np.asarray(next(feeder)["x"]) for _ in range(4)]
    state = feeder.get_state()  # taken with 3 more batches already prefetched
    expected = np.asarray(next(feeder)["x"])
    fresh = make()
    fresh.set_state(state)
    np.testing.assert_array_equal(np.asarray(next(fresh)["x"]), expected)
    assert not any(np.array_equal(expected, s) for s in seen)
    assert isinstance(jax.tree.leaves(expected)[0], np.ndarray)


def test_eval_pass_is_padded_and_masked(h5):
    windows = np.stack([np.zeros(37, int), np.arange(9, 46)], 1)
    batches = list(eval_dataset(_source(h5, windows), global_batch_size=16,
                                mesh=sharding.make_mesh()))
    valid = np.concatenate([b["valid"] for b in batches])
    assert len(valid) == 48 and valid.sum() == 37
    ends = np.concatenate([b["x"][:, -1, 0] for b in batches])[valid]
    np.testing.assert_array_equal(ends, np.arange(9, 46) * 3)  # in order, each once


def test_generated_once_reuses_until_the_generator_changes(tmp_path):
    generator = tmp_path / "gen.py"
    generator.write_text("v1")
    calls = []

    def make(path):
        calls.append(path)
        with open(path, "w") as f:
            f.write("data")

    kw = dict(cache_dir=str(tmp_path / "cache"), generator_file=str(generator), make=make)
    first = data_lib.generated_once("set-{version}.h5", **kw)
    assert data_lib.generated_once("set-{version}.h5", **kw) == first and len(calls) == 1
    generator.write_text("v2")  # an edited generator never reuses stale data
    second = data_lib.generated_once("set-{version}.h5", **kw)
    assert second != first and len(calls) == 2 and os.path.exists(second)
    assert data_lib.configured_or_generated("", "data", lambda: second) == second
    with pytest.raises(FileNotFoundError, match=r"nope\.h5"):
        data_lib.configured_or_generated(str(tmp_path / "nope.h5"), "data file", lambda: second)

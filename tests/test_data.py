"""grain over HDF5: windows, leakage-free splits, per-process sharding, resumable iteration."""

import os
import pickle

import h5py
import jax
import numpy as np
import pytest

from jaxtrain import files, sharding
from jaxtrain.data import splits, synthetic
from jaxtrain.data.block_order import BlockOrder, block_lengths, window_blocks
from jaxtrain.data.hdf5 import HDF5WindowSource, PerProcess
from jaxtrain.data.pipeline import BatchFeeder, eval_dataset, read_mode, train_dataset
from jaxtrain.data.splits import split_groups, split_windows


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


class _BlockOrdered(HDF5WindowSource):
    """The same windows in the streaming order (`block_order`): blocks of 32 rows, groups of
    2 blocks, through the source's `epoch_permutation`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        blocks, _ = window_blocks(self.windows, block_lengths(32, [16, 16]))
        self.epoch_permutation = BlockOrder(blocks, 2)


def _ordered_source(path, windows, order):
    return (_BlockOrdered if order == "blocks" else HDF5WindowSource)(
        [(path, "s0"), (path, "s1")], windows, 10, window_fields={"x": "x"},
        point_fields={"y": "y"})


def test_window_content_and_pickling(h5):
    src = _source(h5, np.array([[0, 9], [1, 499]]))
    r = src[1]
    with h5py.File(h5) as f:
        np.testing.assert_array_equal(r["x"], f["s1/x"][490:500])
        assert r["y"] == f["s1/y"][499]
    assert r["stream"] == 1
    clone = pickle.loads(pickle.dumps(src))  # what grain does to reach a worker process
    assert len(clone._files) == 0 and len(clone._arrays) == 0
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
    in_ram = sum(isinstance(v, np.ndarray) for v in src._arrays._items().values())
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
    assert read_mode(src) == "batches" and read_mode(src, lambda r: r) == "records"
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


@pytest.mark.parametrize("order", ["uniform", "blocks"])
def test_process_slices_rebuild_the_global_batch(h5, order):
    windows = np.stack([np.zeros(200, int), np.arange(9, 209)], 1)
    src = _ordered_source(h5, windows, order)
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
    if order == "blocks":  # the source's order, not a uniform one
        for epoch, seen in enumerate((first_epoch, second_epoch)):
            np.testing.assert_array_equal(seen, windows[src.epoch_permutation(7, epoch), 1] * 3)


@pytest.mark.parametrize("order", ["uniform", "blocks"])
def test_feeder_state_resumes_at_the_next_unconsumed_batch(h5, order):
    windows = np.stack([np.ones(120, int), np.arange(9, 129)], 1)
    mesh = sharding.make_mesh()

    def make():
        it = iter(train_dataset(_ordered_source(h5, windows, order), global_batch_size=8,
                                mesh=mesh, seed=1, num_epochs=1))
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


def test_generated_once_reuses_until_the_generator_or_its_parameters_change(tmp_path):
    module = tmp_path / "jt_fake_generator.py"
    module.write_text("VERSION = 1\n")
    import importlib.util
    import sys

    def load():
        spec = importlib.util.spec_from_file_location("jt_fake_generator", module)
        mod = importlib.util.module_from_spec(spec)
        sys.modules["jt_fake_generator"] = mod  # inspect.getsource looks modules up here
        spec.loader.exec_module(mod)
        return mod

    calls = []

    def make(path):
        calls.append(path)
        with open(path, "w") as f:
            f.write("data")

    def generated(params):
        return synthetic.generated_once("set-{version}.h5", cache_dir=str(tmp_path / "cache"),
                                        generator=load(), params=params, make=make)

    first = generated({"n": 1})
    assert generated({"n": 1}) == first and len(calls) == 1
    assert generated({"n": 2}) != first and len(calls) == 2  # other parameters: other data
    module.write_text("VERSION = 2\n")  # an edited generator never reuses stale data
    second = generated({"n": 1})
    assert second != first and len(calls) == 3 and os.path.exists(second)
    assert synthetic.configured_or_generated("", "data", lambda: second) == second
    # Runs started side by side on a fresh cache: one makes the data, the others wait for it.
    import threading
    import time

    def slow_make(path):
        calls.append(path)
        time.sleep(0.5)  # the other thread arrives while this one is still writing
        with open(path, "w") as f:
            f.write("data")

    def side_by_side():
        synthetic.generated_once("set-{version}.h5", cache_dir=str(tmp_path / "cache"),
                                 generator=load(), params={"n": 3}, make=slow_make)

    threads = [threading.Thread(target=side_by_side) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 4
    # A maker that takes the same lock itself (glaucoma's image cache) does not wait on its
    # own caller.
    from jaxtrain import files

    def nested_make(path):
        with files.made_by_one(path, "nested"):
            make(path)

    synthetic.generated_once("set-{version}.h5", cache_dir=str(tmp_path / "cache"),
                             generator=load(), params={"n": 4}, make=nested_make)
    assert len(calls) == 5
    with pytest.raises(FileNotFoundError, match=r"nope\.h5"):
        synthetic.configured_or_generated(str(tmp_path / "nope.h5"), "data file", lambda: second)


def test_split_groups_is_stratified_grouped_and_deterministic():
    strata = ["quake"] * 20 + ["blast"] * 10 + ["noise"] * 5
    a = split_groups(strata, (0.7, 0.2, 0.1), rng=np.random.default_rng(4))
    b = split_groups(list(reversed(strata))[::-1], (0.7, 0.2, 0.1), rng=np.random.default_rng(4))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    groups = np.concatenate(list(a.values()))
    assert sorted(groups) == list(range(35))  # every group in exactly one split
    count = {k: {c: sum(strata[g] == c for g in v) for c in set(strata)} for k, v in a.items()}
    assert count["train"] == {"quake": 14, "blast": 7, "noise": 3}  # each class cut 70/20/10
    assert count["val"] == {"quake": 4, "blast": 2, "noise": 1}
    assert count["test"] == {"quake": 2, "blast": 1, "noise": 1}  # at least one per split


def test_split_groups_names_the_class_and_split_it_cannot_fill():
    with pytest.raises(ValueError, match=r"the val split holds no 'fire': only 2 of 12 files"):
        split_groups([0] * 10 + [1] * 2, (0.7, 0.15, 0.15), rng=np.random.default_rng(0),
                     class_names={1: "fire"}, what="files")
    # a split with fraction 0 needs nothing; a class held by other groups' members is enough
    split_groups([0] * 10 + [1] * 2, (0.8, 0.2, 0.0), rng=np.random.default_rng(0))
    split_groups([0] * 9 + [1], (0.7, 0.2, 0.1), rng=np.random.default_rng(0),
                 classes=[{0, 1}] * 9 + [{1}])


def test_split_counts_round_by_largest_remainder_with_one_per_split():
    assert splits.split_counts(10, (0.7, 0.15, 0.15)) == [7, 1, 2]  # ties: the later split
    assert splits.split_counts(3, (0.98, 0.01, 0.01)) == [1, 1, 1]
    assert splits.split_counts(2, (0.5, 0.5, 0.0)) == [1, 1, 0]


class _Handle:
    def __init__(self, key):
        self.key, self.closed = key, False

    def close(self):
        self.closed = True


def test_per_process_handles_are_lru_bounded_and_never_pickled(h5, tmp_path):
    cache = PerProcess(_Handle, max_open=2)
    a, b = cache.get("a"), cache.get("b")
    assert cache.get("a") is a  # reused
    cache.get("c")  # evicts the least recently used: b
    assert b.closed and not a.closed and len(cache) == 2
    clone = pickle.loads(pickle.dumps(cache))
    assert len(clone) == 0 and clone.get("a") is not a
    files_cache = PerProcess(h5py.File)
    assert files_cache.get(h5)["s0/x"].shape == (500, 3)
    files_cache.close()
    assert len(files_cache) == 0


def test_atomic_path_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "results.json"
    files.write_json_atomic(path, {"a": np.float32(1.5), "b": np.arange(2)})
    before = path.read_bytes()
    with pytest.raises(RuntimeError), files.atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write("half")
        raise RuntimeError("crash mid-write")
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["results.json"]

"""Streaming DAS input: block-local epoch order, block-cached reads, the wiring into training."""

import collections
import pickle

import h5py
import jax
import numpy as np
import pytest

from jaxtrain import main, sharding
from jaxtrain.data.block_order import BlockOrder, block_lengths, epoch_order, window_blocks
from jaxtrain.data.pipeline import eval_dataset, read_mode, train_dataset
from jaxtrain.tasks.das.reader import list_recordings
from jaxtrain.tasks.das.stream import BlockCache, DASBlockSource, decode_windows
from jaxtrain.tasks.das.synthetic import generate
from jaxtrain.tasks.das.task import build
from jaxtrain.tasks.das.windows import DASWindowSource, build_window_index
from tests.test_das_train import tiny_das_config

CHANNELS, WINDOW, STRIDE = 8, 256, 64


@pytest.fixture(scope="module", params=["int16", "float32"])
def recordings(request, tmp_path_factory):
    """4 files of 4000 samples (chunks of 1024), one dead channel in file 1."""
    root = tmp_path_factory.mktemp(f"das_stream_{request.param}")
    generate(root, num_files=4, duration_s=16, num_channels=CHANNELS, seed=3,
             dtype=request.param)
    files = list_recordings(root)
    with h5py.File(files[1], "r+") as f:
        f["strain_rate"][:, 3] = 0
    return files, build_window_index(files, "jaxtrain", WINDOW, STRIDE)


def _blocks(files, index, **kw):
    kw = dict(block_samples=1000, shuffle_blocks=2) | kw  # 1000 -> one 1024-sample chunk
    return DASBlockSource(files, index, window=WINDOW, labels=np.arange(len(index)) % 3, **kw)


# ----------------------------------------------------------------------------- block order
def test_blocks_are_chunk_aligned_ranges_of_one_file():
    assert block_lengths(1000, [1024, 1, 300]).tolist() == [1024, 1000, 1200]
    index = np.array([[0, 0], [0, 512], [0, 1024], [2, 0], [2, 1500], [2, 2500]])
    blocks, firsts = window_blocks(index, np.array([1024, 0, 1200]))
    assert blocks.tolist() == [0, 0, 1, 2, 3, 4]
    assert firsts.tolist() == [[0, 0], [0, 1024], [2, 0], [2, 1200], [2, 2400]]


def test_every_window_once_per_epoch_in_bounded_groups():
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 30, 40)  # 40 blocks of 1..29 windows
    blocks = np.repeat(np.arange(40), sizes)
    group = 3
    orders = [epoch_order(blocks, group, seed=5, epoch=e) for e in range(3)]
    for order in orders:
        assert sorted(order.tolist()) == list(range(len(blocks)))  # each window once
        # Blocks by first appearance, cut in threes: each three fills one contiguous stretch.
        seq = blocks[order]
        first = {int(b): int(np.flatnonzero(seq == b)[0]) for b in np.unique(seq)}
        by_first = sorted(first, key=first.get)
        pos = 0
        for g in range(0, len(by_first), group):
            members = by_first[g:g + group]
            n = int(sizes[members].sum())
            assert set(seq[pos:pos + n].tolist()) == set(members)
            pos += n
        assert pos == len(blocks)
    assert not np.array_equal(orders[0], orders[1])  # reshuffled every epoch
    np.testing.assert_array_equal(orders[2], BlockOrder(blocks, group)(5, 2))  # pure function
    assert not np.array_equal(orders[0], epoch_order(blocks, group, seed=6, epoch=0))


# ----------------------------------------------------------------------------- block reads
def test_block_reads_equal_the_per_window_reads(recordings):
    files, index = recordings
    src = _blocks(files, index)
    ref = DASWindowSource(files, index, window=WINDOW, labels=src.labels)
    with h5py.File(files[0]) as f:
        stored = f["strain_rate"].dtype
    assert read_mode(src) == "batches" and src.exact == (stored == np.int16)
    idx = np.random.default_rng(1).permutation(len(src))[:50]
    batch = src.read_batch(idx)
    assert batch["x"].dtype == (np.int16 if src.exact else np.float16)
    assert batch["x"].shape == (50, WINDOW, CHANNELS) and batch["scale"].shape == (50, CHANNELS)
    assert batch["scale"].dtype == np.float32 and "start" not in batch
    x = np.asarray(jax.jit(decode_windows)(batch["x"], batch["scale"]))
    host = [ref[int(i)] for i in idx]
    tol = 1e-4 if src.exact else 3e-3  # float32 sums; float16 storage over the block peak
    np.testing.assert_allclose(x, np.stack([r["x"] for r in host]), atol=tol)
    np.testing.assert_array_equal(batch["label"], [r["label"] for r in host])
    np.testing.assert_array_equal(batch["file"], [r["file"] for r in host])
    assert not x[batch["file"] == 1, 3].any()  # the dead channel stays zeros
    # Raw values: physical = x * scale, as the per-window host read before normalization.
    raw = DASWindowSource(files, index, window=WINDOW, normalize=False)[int(idx[0])]["x"]
    np.testing.assert_allclose(batch["x"][0].T.astype(np.float32) * batch["scale"][0][:, None],
                               raw, rtol=1e-3, atol=1e-3 * np.abs(raw).max())
    clone = pickle.loads(pickle.dumps(src))  # what grain does to reach a worker process
    assert len(clone.cache) == 0 and len(src.cache) > 0
    np.testing.assert_array_equal(clone.read_batch(idx)["x"], batch["x"])


def test_channel_major_files_stream_the_same_windows(tmp_path):
    """A channel-major (dasdae) file, chunked along time: blocks come out time-major too."""
    data = np.random.default_rng(1).normal(size=(8, 3000)).astype(np.float32)
    path = str(tmp_path / "dasdae.h5")
    with h5py.File(path, "w") as f:
        g = f.create_group("waveforms/patch")
        g.attrs["_dims"] = "distance,time"
        g.create_dataset("data", data=data, chunks=(8, 500))
        g["_coord_time"] = np.arange(3000, dtype=np.int64) * 10**7
    index = build_window_index([path], "dasdae", WINDOW, STRIDE)
    src = DASBlockSource([path], index, "dasdae", WINDOW, block_samples=700, shuffle_blocks=2)
    assert set(src.lengths.tolist()) == {1000} and not src.exact  # 2 chunks of 500; floats
    batch = src.read_batch(np.arange(len(src)))
    ref = DASWindowSource([path], index, "dasdae", WINDOW)
    np.testing.assert_allclose(np.asarray(decode_windows(batch["x"], batch["scale"])),
                               np.stack([ref[i]["x"] for i in range(len(src))]), atol=3e-3)


def test_each_block_read_once_per_epoch(recordings, monkeypatch):
    files, index = recordings
    reads = []
    read_block = DASBlockSource._read_block

    def counting(self, block):  # direct (preadv) and h5py reads alike
        reads.append((int(self.block_file[block]), int(self.block_start[block])))
        return read_block(self, block)

    monkeypatch.setattr(DASBlockSource, "_read_block", counting)
    # Groups of 4 blocks hold >= 44 windows, more than the 4 batches of 8 that grain's 2 read
    # threads have in flight: they then span at most 2 groups, which the cache holds.
    group = 4
    src = _blocks(files, index, shuffle_blocks=group)
    need = 2 * group * CHANNELS * (2 * int((src.block_stop - src.block_start).max()) + 4)

    def make(budget):  # exactly 2 groups of the largest block, or less
        return _blocks(files, index, shuffle_blocks=group, cache=BlockCache(budget))

    with pytest.raises(ValueError, match="stream_memory_mb"):
        make(need - 1)
    src = make(need)
    num_blocks = len(src.block_file)
    assert num_blocks == 4 * 4  # 4000 samples: 4 blocks of 1024 per file
    mesh = sharding.make_mesh()
    kw = dict(global_batch_size=8, mesh=mesh, seed=2, read_threads=2)
    seen = np.concatenate([b["file"] * 10**6 + b["label"] for b in
                           train_dataset(src, **kw, num_epochs=1)])
    assert len(seen) == len(src) // 8 * 8
    assert len(reads) == num_blocks and len(set(reads)) == num_blocks  # each block once
    reads.clear()
    src = make(need)
    for _ in train_dataset(src, **kw, num_epochs=3):
        pass
    counts = collections.Counter(reads)
    assert len(counts) == num_blocks and max(counts.values()) <= 3  # once per epoch at most
    reads.clear()
    kw.pop("seed")
    ordered = np.concatenate([b["x"][b["valid"]] for b in eval_dataset(src, **kw)])
    assert len(ordered) == len(src) and len(reads) <= num_blocks  # ordered: one read a block
    np.testing.assert_array_equal(ordered[:5], src.read_batch(np.arange(5))["x"])


# ----------------------------------------------------------------------------- training
def test_training_streams_by_blocks_and_records_it(cache_dir, tmp_path):
    config = tiny_das_config(cache_dir, epochs=1)
    config.data.on_device = "never"
    config.data.stream_block_samples = 1024
    config.data.stream_shuffle_blocks = 4
    results = main.run(config, str(tmp_path / "run"))
    setup = results["setup"]
    assert setup["train_read"] == "batches" and setup["data.stream"] == "blocks"
    assert setup["augment.where"] == "step"
    assert np.isfinite(results["test"]["accuracy"])
    config.data.stream = "windows"  # the per-window path stays available
    task = build(config, str(tmp_path / "w"))
    assert task.choices["data.stream"] == "windows" and task.transform is not None
    config.data.on_device = "always"
    assert build(config, str(tmp_path / "d")).choices["data.stream"] == "off"


def test_stream_config_is_checked():
    from jaxtrain.config_checks import ConfigValueError
    from jaxtrain.tasks.das.checks import validate
    from tests.fire_test_config import load_config

    config = load_config("das", "tcn")
    validate(config)
    for key, value in (("stream", "gpu"), ("stream_memory_mb", 0),
                       ("stream_block_samples", -1), ("stream_shuffle_blocks", 0)):
        bad = config.copy_and_resolve_references()
        bad.data[key] = value
        with pytest.raises(ConfigValueError, match=rf"data\.{key}"):
            validate(bad)
    bad = config.copy_and_resolve_references()
    bad.data.stream, bad.augment.where = "blocks", "host"  # block reads augment in the step
    with pytest.raises(ConfigValueError, match=r"data\.stream"):
        validate(bad)

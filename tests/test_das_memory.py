"""Out-of-core DAS input, small version of benchmarks/das_memory: a data set larger than the
pipeline's whole memory streams through grain (0 and 2 workers) with memory that does not
grow with the data, every window exactly once; the watchdog kills a pass over its budget."""

import os

import numpy as np
import pytest

from benchmarks import das_memory
from jaxtrain.tasks.das.labels import load_labels
from jaxtrain.tasks.das.reader import open_recording
from jaxtrain.tasks.das.schema import CLASS_NAMES

GIB = das_memory.GIB
SIZE_GB = 0.4


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("das-memory") / "data")
    files = das_memory.make_dataset(d, SIZE_GB, file_gb=0.1, generated_files=2, channels=64,
                                    log=lambda s: None)
    yield d, files
    das_memory.delete_dataset(d)  # do not leave 0.4 GiB in pytest's kept tmp dirs


def test_dataset_is_readable_looped_labelled_and_reused(dataset, tmp_path):
    d, files = dataset
    size = das_memory.dataset_bytes(files)
    assert 0.99 * SIZE_GB * GIB < size < 1.01 * SIZE_GB * GIB  # plus a little HDF5 metadata
    long = [p for p in files if "das_long" in p]
    assert len(long) == 4 and len(files) == 6
    base, rec = open_recording(files[0]), open_recording(long[0])
    assert (rec.num_channels, rec.sampling_rate, rec.scale) == (64, base.sampling_rate,
                                                                 base.scale)
    n = base.num_samples
    np.testing.assert_array_equal(  # the long file loops the generated one seamlessly
        rec.read(n - 10, n + 10), np.concatenate([base.read(n - 10, n), base.read(0, 10)], 1))
    labels = load_labels(d)  # training can use the directory as it is
    assert sorted(labels) == sorted(os.path.basename(p) for p in files)
    assert all(v["label"] in CLASS_NAMES for v in labels.values())
    mtimes = [os.stat(p).st_mtime_ns for p in files]
    assert das_memory.make_dataset(d, SIZE_GB, file_gb=0.1, generated_files=2, channels=64,
                                   log=lambda s: None) == files
    assert [os.stat(p).st_mtime_ns for p in files] == mtimes  # reused, not rewritten
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.h5").write_text("precious")
    with pytest.raises(ValueError, match="not empty"):
        das_memory.make_dataset(str(foreign), 0.01)
    with pytest.raises(ValueError, match="not deleting"):
        das_memory.delete_dataset(str(foreign))
    assert (foreign / "thesis.h5").exists()


def test_every_window_once_in_memory_that_does_not_grow_with_the_data(dataset):
    d, files = dataset
    size = das_memory.dataset_bytes(files)
    common = dict(work_dir=d, limit_bytes=8 * GIB, stride=1024, batch_size=32, normalize=False)
    rows = []
    for workers in (0, 2):
        # The same pipeline over a quarter of the data (the two short files and one long
        # one, long enough to fill every buffer): memory that grew with the data would differ
        # by a good part of the other three quarters.
        part = das_memory.measure(files[:3], workers, **common)
        full = das_memory.measure(files, workers, **common)
        rows.append(full)
        print(f"workers={workers}: peak tree RSS {part['peak_tree_rss_bytes'] / 2**20:.0f} MiB "
              f"over {das_memory.dataset_bytes(files[:3]) / 2**20:.0f} MiB, "
              f"{full['peak_tree_rss_bytes'] / 2**20:.0f} MiB over {size / 2**20:.0f} MiB")
        for r in (part, full):
            assert r["returncode"] == 0, r.get("error_tail")
            assert r["exactly_once"] and r["windows_read"] == r["windows"], r
            assert r["content_mismatches"] == 0 and r["passed"]
        expected = sum((open_recording(p).num_samples - 1024) // 1024 + 1
                       for p in files)
        assert full["windows"] == expected
        assert full["peak_processes"] >= 1 + workers
        assert full["tree_read_bytes"] > 0.9 * size  # the page cache was dropped: real reads
        growth = full["peak_tree_rss_bytes"] - part["peak_tree_rss_bytes"]
        assert growth < 0.15 * size, (workers, growth / 2**20, size / 2**20)
        if workers == 0:  # the data set is larger than everything the process holds
            assert full["peak_tree_rss_bytes"] < size
    text = das_memory.table(rows, 8 * GIB, "rss")
    assert text.count("| PASS |") == 2 and f"{rows[0]['windows']:,} / " in text


def test_watchdog_kills_a_pass_over_budget(dataset):
    d, files = dataset
    r = das_memory.measure(files[:1], 0, work_dir=d, limit_bytes=48 * 2**20, normalize=False)
    assert r["killed_over_limit"] and not r["passed"] and r["returncode"] != 0
    assert r["peak_tree_rss_bytes"] > 48 * 2**20


def test_streaming_blocks_pass_reads_each_block_once_against_the_disk_rate(dataset):
    d, files = dataset
    r = das_memory.measure(files, 0, work_dir=d, limit_bytes=8 * GIB, path="blocks",
                           block_samples=8192, shuffle_blocks=4, stream_memory_mb=64,
                           stride=1024, batch_size=32)
    assert r["returncode"] == 0, r.get("error_tail")
    # every window of the epoch order once, the last partial batch dropped as in training
    assert r["exactly_once"] and r["content_mismatches"] == 0 and r["passed"], r
    assert r["windows_read"] == r["windows"] - r["dropped_last_batch"]
    assert r["dropped_last_batch"] < 32
    assert r["block_reads_main"] == r["blocks"]  # one read per block: the cache held 2 groups
    assert r["tree_read_bytes"] > 0.9 * das_memory.dataset_bytes(files)  # from storage
    disk = das_memory.sequential_read_rate(files)
    assert disk["bytes"] == das_memory.dataset_bytes(files) and disk["mb_per_s"] > 0

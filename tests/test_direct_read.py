"""Block reads outside h5py (`DirectRows`): the rows h5py reads, or None where h5py must read."""

import pickle
import threading

import h5py
import numpy as np
import pytest

from jaxtrain.data.direct_read import DirectRows
from jaxtrain.tasks.das.stream import DASBlockSource
from jaxtrain.tasks.das.windows import build_window_index

RANGES = [(0, 5000), (1000, 1030), (1023, 1025), (4999, 5000), (17, 4097)]


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("direct") / "rows.h5")
    x = np.random.default_rng(0).integers(-3000, 3000, (5000, 64)).astype(np.int16)
    with h5py.File(path, "w") as f:
        f.create_dataset("chunked", data=x, chunks=(1024, 64))
        f.create_dataset("contiguous", data=x)
        f.create_dataset("floats", data=x.astype(np.float32), chunks=(512, 64))
        f.create_dataset("gzip", data=x, chunks=(1024, 64), compression="gzip")
        f.create_dataset("split_columns", data=x, chunks=(1024, 32))
        f.create_dataset("unwritten", shape=(5000, 64), dtype="i2", chunks=(1024, 64))
        f.create_dataset("big_endian", data=x.astype(">i2"), chunks=(1024, 64))
    return path, x


@pytest.mark.parametrize("name", ["chunked", "contiguous", "floats"])
def test_plain_storage_reads_what_h5py_reads(stored, name):
    path, x = stored
    rows = DirectRows.open(path, name)
    assert rows is not None
    for a, b in RANGES:
        np.testing.assert_array_equal(rows.rows(a, b), x[a:b].astype(rows.dtype))
    again = pickle.loads(pickle.dumps(rows))  # to grain workers as plain data
    np.testing.assert_array_equal(again.rows(3, 9), x[3:9].astype(rows.dtype))
    with pytest.raises(ValueError, match="outside"):
        rows.rows(10, 5001)


@pytest.mark.parametrize("name", ["gzip", "split_columns", "unwritten", "big_endian"])
def test_other_storage_is_left_to_h5py(stored, name):
    assert DirectRows.open(stored[0], name) is None


def test_threads_read_side_by_side(stored):
    path, x = stored
    rows = DirectRows.open(path, "chunked")
    errors = []

    def read(k):
        for _ in range(20):
            a = (k * 397) % 4000
            if not np.array_equal(rows.rows(a, a + 777), x[a:a + 777]):
                errors.append(k)

    threads = [threading.Thread(target=read, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_a_truncated_file_names_itself(stored, tmp_path):
    path, _ = stored
    cut = str(tmp_path / "cut.h5")
    with open(path, "rb") as f:
        data = f.read()
    with open(cut, "wb") as f:
        f.write(data)
    rows = DirectRows.open(cut, "chunked")
    last = int(rows.offsets.max())
    with open(cut, "r+b") as f:
        f.truncate(last + 100)  # the last chunk ends early
    with pytest.raises(ValueError, match=r"cut\.h5.*truncated"):
        rows.rows(4990, 5000)


def test_block_source_reads_directly_and_equals_h5py_reads(tmp_path):
    from jaxtrain.tasks.das.synthetic import generate

    files = generate(str(tmp_path), num_files=2, duration_s=6.0, num_channels=8,
                     dtype="int16", seed=1)
    index = build_window_index(files, "jaxtrain", 256, 128)
    kw = dict(block_samples=2048, shuffle_blocks=2, memory_bytes=64 * 2**20)
    direct = DASBlockSource(files, index, "jaxtrain", 256, **kw)
    plain = DASBlockSource(files, index, "jaxtrain", 256, direct_reads=False, **kw)
    picks = np.random.default_rng(0).permutation(len(index))[:64]
    a, b = direct.read_batch(picks), plain.read_batch(picks)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert all(r is not None for r in direct._direct_rows.values()) and direct._direct_rows
    assert not plain._direct_rows


def test_a_nan_read_directly_names_file_sample_and_channel(tmp_path):
    from jaxtrain.tasks.das.synthetic import generate

    files = generate(str(tmp_path), num_files=1, duration_s=6.0, num_channels=8,
                     dtype="float32", seed=2)
    with h5py.File(files[0], "r+") as f:
        f["strain_rate"][700, 3] = np.nan
    index = build_window_index(files, "jaxtrain", 256, 128)
    src = DASBlockSource(files, index, "jaxtrain", 256, block_samples=1024, shuffle_blocks=1,
                         memory_bytes=16 * 2**20)
    with pytest.raises(ValueError, match=r"non-finite value at sample 700, channel 3"):
        src.read_batch(np.arange(len(index)))
    assert src._direct_rows[0] is not None  # read outside h5py, checked all the same

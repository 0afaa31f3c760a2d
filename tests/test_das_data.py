"""DAS data layer: synthetic files, vendor layouts, cached window index, splits, transforms."""

import datetime as dt
import os
import pickle
import shutil

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxtrain.tasks.das import windows
from jaxtrain.tasks.das.augment import augment, augment_batch
from jaxtrain.tasks.das.labels import load_labels
from jaxtrain.tasks.das.reader import LAYOUTS, DASLayout, open_recording
from jaxtrain.tasks.das.schema import CLASS_NAMES, FORMAT
from jaxtrain.tasks.das.synthetic import generate
from jaxtrain.tasks.das.task import split_files
from jaxtrain.tasks.das.windows import build_window_index, normalize_per_channel

FS, SECONDS, CHANNELS = 250.0, 20.0, 16
TINY = dict(num_files=4, duration_s=SECONDS, num_channels=CHANNELS, sampling_rate=FS)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The same seed written as int16 and as float32."""
    root = tmp_path_factory.mktemp("das")
    return (generate(root / "i16", **TINY, dtype="int16", seed=0),
            generate(root / "f32", **TINY, dtype="float32", seed=0))


def _single_line(exc: pytest.ExceptionInfo, *needles: str) -> None:
    text = str(exc.value)
    assert "\n" not in text
    for needle in needles:
        assert needle in text, (needle, text)


# ----------------------------------------------------------------------------- generate
def test_generated_layout_attrs_and_chunking(tiny):
    i16, f32 = tiny
    n = int(SECONDS * FS)
    for path, dtype in [(p, "int16") for p in i16] + [(p, "float32") for p in f32]:
        with h5py.File(path) as f:
            ds = f["strain_rate"]
            assert ds.shape == (n, CHANNELS) and ds.dtype == dtype
            assert ds.chunks == (1024, CHANNELS)  # ~one window of all channels per chunk
            assert [str(v) for v in ds.attrs["dimensions"]] == ["time", "channel"]
            assert f.attrs["format"] == FORMAT
            assert f.attrs["sampling_rate_hz"] == FS and f.attrs["channel_spacing_m"] == 10.0
            start = dt.datetime.fromisoformat(f.attrs["start_time"])
            assert start.timestamp() == pytest.approx(f.attrs["start_time_unix"], abs=1e-3)
            assert ("scale_factor" in f.attrs) == (dtype == "int16")
    assert not [p for p in os.listdir(os.path.dirname(i16[0])) if ".tmp" in p]


def test_int16_scale_round_trip(tiny):
    for a, b in zip(*tiny, strict=True):
        r16, r32 = open_recording(a), open_recording(b)
        assert r16.scale != 1.0 and r32.scale == 1.0
        x16, x32 = r16.read(0, r16.num_samples), r32.read(0, r32.num_samples)
        assert x16.shape == (CHANNELS, int(SECONDS * FS))
        np.testing.assert_allclose(x16, x32, atol=0.51 * r16.scale + 1e-6 * np.abs(x32).max())


def test_labels_json(tiny):
    i16, _ = tiny
    labels = load_labels(os.path.dirname(i16[0]))
    assert sorted(labels) == sorted(os.path.basename(p) for p in i16)
    assert {v["label"] for v in labels.values()} == {"earthquake", "quarry_blast", "noise"}
    for name, entry in labels.items():
        assert (entry["label"] == "noise") == (not entry["events"])
        assert entry["dead_channels"] and entry["noisy_channels"]
        for ev in entry["events"]:
            assert ev["type"] == entry["label"]
            assert 0 <= ev["t0"] < ev["first_arrival_s"] < ev["end_s"]
            assert ev["first_arrival_s"] < SECONDS
        with h5py.File(os.path.join(os.path.dirname(i16[0]), name)) as f:
            assert not f["strain_rate"][:, entry["dead_channels"]].any()  # dead = flat zeros


def test_classes_and_separability(tmp_path):
    paths = generate(tmp_path, num_files=12, duration_s=SECONDS, num_channels=CHANNELS, seed=1)
    labels = load_labels(tmp_path)
    assert {v["label"] for v in labels.values()} == {"earthquake", "quarry_blast", "noise"}
    correct = total = 0
    for path in paths:
        entry = labels[os.path.basename(path)]
        start = dt.datetime.fromisoformat(entry["start_time"])
        for ev in entry["events"]:
            band = (2, 8.5) if ev["type"] == "earthquake" else (8, 25)
            assert band[0] <= ev["dominant_hz"] <= band[1]
            if ev["type"] == "quarry_blast":  # weekday daytime only
                when = start + dt.timedelta(seconds=ev["t0"])
                assert when.weekday() < 5 and 8 <= when.hour < 17
        if not entry["events"]:
            continue
        # One spectral feature: the centroid (1.5-40 Hz) of the first event's 4.5 s window.
        rec = open_recording(path)
        a = int(max(entry["events"][0]["first_arrival_s"] - 0.5, 0) * FS)
        x = rec.read(a, min(a + int(4.5 * FS), rec.num_samples))
        x -= x.mean(1, keepdims=True)
        power = (np.abs(np.fft.rfft(x * np.hanning(x.shape[1]), axis=1)) ** 2).mean(0)
        f = np.fft.rfftfreq(x.shape[1], 1 / FS)
        band = (f >= 1.5) & (f <= 40)
        centroid = (f[band] * power[band]).sum() / power[band].sum()
        correct += (centroid < 7.0) == (entry["label"] == "earthquake")
        total += 1
    assert total >= 6 and correct >= 0.9 * total, (correct, total)


def test_generate_is_deterministic_and_rejects_bad_dtype(tmp_path):
    a = generate(tmp_path / "a", num_files=1, duration_s=5, num_channels=4, seed=3)
    b = generate(tmp_path / "b", num_files=1, duration_s=5, num_channels=4, seed=3)
    np.testing.assert_array_equal(open_recording(a[0]).read(0, 1250),
                                  open_recording(b[0]).read(0, 1250))
    with pytest.raises(ValueError, match="dtype"):
        generate(tmp_path / "c", num_files=1, dtype="float16")


# ----------------------------------------------------------------------------- vendor layouts
def _write_prodml(path, data, rate=200.0, dims=(b"time", b"locus")):
    """The PRODML 2.0 tree of a Silixa iDAS file (reference-facts 1c), time-major int16."""
    with h5py.File(path, "w") as f:
        acq = f.create_group("Acquisition")
        acq.attrs["GaugeLength"] = 10.0
        acq.attrs["SpatialSamplingInterval"] = 1.0
        acq.attrs["NumberOfLoci"] = data.shape[1]
        acq.attrs["StartLocusIndex"] = 0
        acq.attrs["schemaVersion"] = b"2.0"
        raw = acq.create_group("Raw[0]")
        raw.attrs["NumberOfLoci"] = data.shape[1]
        raw.attrs["OutputDataRate"] = rate
        raw.attrs["RawDataUnit"] = b"(nm/m)/s * Hz/m"
        ds = raw.create_dataset("RawData", data=data, chunks=(1024, data.shape[1]))
        ds.attrs["Dimensions"] = list(dims)
        ds.attrs["PartStartTime"] = b"2019-05-31T12:00:00.000000+00:00"
        t = 1_559_304_000_000_000 + np.arange(data.shape[0], dtype=np.int64) * 5000
        raw.create_dataset("RawDataTime", data=t).attrs["PartStartTime"] = \
            b"2019-05-31T12:00:00.000000+00:00"


def test_prodml_file_reads_channel_major(tmp_path):
    data = np.random.default_rng(0).integers(-3000, 3000, (2500, 12)).astype(np.int16)
    path = tmp_path / "prodml.h5"
    _write_prodml(path, data)
    rec = open_recording(path, "prodml")
    assert (rec.num_samples, rec.num_channels, rec.sampling_rate) == (2500, 12, 200.0)
    assert rec.channel_spacing == 1.0 and rec.start_time.startswith("2019-05-31T12:00:00")
    window = rec.read(1000, 2024)
    assert window.dtype == np.float32 and window.shape == (12, 1024)
    np.testing.assert_array_equal(window, data[1000:2024].T.astype(np.float32))
    clone = pickle.loads(pickle.dumps(rec))  # grain ships sources to worker processes
    np.testing.assert_array_equal(clone.read(0, 10), rec.read(0, 10))
    _write_prodml(tmp_path / "flipped.h5", data, dims=(b"locus", b"time"))
    with pytest.raises(ValueError) as e:
        open_recording(tmp_path / "flipped.h5", LAYOUTS["prodml"])
    _single_line(e, "flipped.h5", "dimensions", "time_channel")


def test_dasdae_style_channel_major(tmp_path):
    data = np.random.default_rng(1).normal(size=(8, 600)).astype(np.float32)  # (distance, time)
    path = tmp_path / "dasdae.h5"
    with h5py.File(path, "w") as f:
        g = f.create_group("waveforms/DAS____2023_01_01T00_00_00__2023_01_01T00_00_06")
        g.attrs["_dims"] = "distance,time"
        g.attrs["_attrs_distance_step"] = 2.0
        g["data"] = data
        g["_coord_time"] = 1_672_531_200 * 10**9 + np.arange(600, dtype=np.int64) * 10**7
    rec = open_recording(path, "dasdae")
    assert (rec.num_samples, rec.num_channels, rec.sampling_rate) == (600, 8, 100.0)
    assert rec.channel_spacing == 2.0 and rec.start_time.startswith("2023-01-01T00:00:00")
    np.testing.assert_array_equal(rec.read(100, 300), data[:, 100:300])


# ----------------------------------------------------------------------------- window index
def test_window_index_counts_cache_and_rebuild(tiny, tmp_path, monkeypatch):
    files = [shutil.copy(p, tmp_path) for p in tiny[0][:3]]
    cache = tmp_path / "cache" / "index.npz"
    index = build_window_index(files, "jaxtrain", 1024, 512, cache_path=cache)
    per_file = (int(SECONDS * FS) - 1024) // 512 + 1
    assert index.shape == (3 * per_file, 2) and index.dtype == np.int64
    np.testing.assert_array_equal(index[:per_file, 1], np.arange(per_file) * 512)
    np.testing.assert_array_equal(np.bincount(index[:, 0]), [per_file] * 3)

    opened = []
    real_open = windows.open_recording

    def counting_open(*args, **kwargs):
        opened.append(args[0])
        return real_open(*args, **kwargs)

    monkeypatch.setattr(windows, "open_recording", counting_open)
    np.testing.assert_array_equal(build_window_index(files, "jaxtrain", 1024, 512,
                                                     cache_path=cache), index)
    assert opened == []  # served from the cache: no file was opened
    assert len(build_window_index(files, "jaxtrain", 2048, 512, cache_path=cache)) != len(index)
    opened.clear()

    with h5py.File(files[1], "w") as f:  # rewrite one file, shorter
        f.attrs["sampling_rate_hz"] = FS
        f["strain_rate"] = np.zeros((3000, CHANNELS), np.float32)
    st = os.stat(files[1])
    os.utime(files[1], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # coarse-mtime filesystems
    rebuilt = build_window_index(files, "jaxtrain", 1024, 512, cache_path=cache)
    assert len(opened) == 3
    np.testing.assert_array_equal(np.bincount(rebuilt[:, 0]),
                                  [per_file, (3000 - 1024) // 512 + 1, per_file])
    opened.clear()
    os.utime(files[0])  # touched only: still a rebuild, same result
    np.testing.assert_array_equal(build_window_index(files, "jaxtrain", 1024, 512,
                                                     cache_path=cache), rebuilt)
    assert len(opened) == 3


def test_window_index_short_file_has_no_windows(tmp_path):
    path = generate(tmp_path, num_files=1, duration_s=2.0, num_channels=4)[0]  # 500 samples
    assert build_window_index([path], "jaxtrain", 1024, 512).shape == (0, 2)


# ----------------------------------------------------------------------------- splits
def test_split_is_by_file_stratified_and_unchanged():
    labels = [CLASS_NAMES[i % 3] for i in range(30)]  # file i's label, files in name order
    splits = split_files(labels, (0.7, 0.2, 0.1), seed=0)
    assert set(splits) == {"train", "val", "test"}
    seen = np.concatenate(list(splits.values()))
    assert sorted(seen) == list(range(30))  # every file in exactly one split
    for files in splits.values():
        assert {labels[f] for f in files} == set(CLASS_NAMES)
    assert [len(v) for v in splits.values()] == [21, 6, 3]
    # the files the earlier DAS splitter chose for these seeds: runs keep their test files
    assert splits["val"].tolist() == [0, 17, 19, 22, 23, 24]
    assert splits["test"].tolist() == [3, 5, 10]
    assert split_files(labels, (0.7, 0.2, 0.1), seed=1)["test"].tolist() == [9, 13, 14]
    with pytest.raises(ValueError, match="split holds no 'noise': only 2 of 12 files"):
        split_files(["earthquake"] * 5 + ["quarry_blast"] * 5 + ["noise"] * 2, (0.7, 0.2, 0.1),
                    seed=0)


# ----------------------------------------------------------------------------- errors
def test_errors_are_one_line_and_name_the_file(tmp_path, tiny):
    with pytest.raises(FileNotFoundError) as e:
        open_recording(tmp_path / "missing.h5")
    _single_line(e, "missing.h5")

    text = tmp_path / "notes.h5"
    text.write_text("not hdf5")
    with pytest.raises(ValueError) as e:
        open_recording(text)
    _single_line(e, "notes.h5", "HDF5")

    with pytest.raises(ValueError) as e:
        open_recording(tiny[0][0], DASLayout(dataset="/Acquisition/Raw[0]/RawData",
                                             sampling_rate="..@OutputDataRate"))
    _single_line(e, tiny[0][0], "/Acquisition/Raw[0]/RawData")

    with pytest.raises(ValueError) as e:
        open_recording(tiny[0][0], DASLayout(dataset="/strain_rate", sampling_rate="/@rate"))
    _single_line(e, tiny[0][0], "'rate'")

    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as f:
        f.attrs["sampling_rate_hz"] = 0.0
        f["strain_rate"] = np.zeros((10, 2), np.float32)
        f["cube"] = np.zeros((4, 4, 4), np.float32)
    with pytest.raises(ValueError) as e:
        open_recording(bad)
    _single_line(e, "bad.h5", "sampling_rate_hz", "positive")
    with pytest.raises(ValueError) as e:
        open_recording(bad, DASLayout(dataset="/cube", sampling_rate="/@sampling_rate_hz"))
    _single_line(e, "bad.h5", "/cube", "2-D")


def test_nan_in_window_is_reported(tmp_path):
    data = np.ones((3000, 4), np.float32)
    data[2100, 3] = np.nan
    path = tmp_path / "nan.h5"
    with h5py.File(path, "w") as f:
        f.attrs["sampling_rate_hz"] = 100.0
        f["strain_rate"] = data
    rec = open_recording(path)
    assert rec.read(0, 1024).shape == (4, 1024)  # clean windows still read
    with pytest.raises(ValueError) as e:
        rec.read(1536, 2560)
    _single_line(e, "nan.h5", "sample 2100", "channel 3")
    assert np.isnan(rec.read(1536, 2560, check_finite=False)).sum() == 1
    with pytest.raises(ValueError, match="outside"):
        rec.read(2900, 3100)


# ----------------------------------------------------------------------------- transforms
def test_normalize_per_channel_is_safe_for_dead_channels():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(2, 5, 256)) * [[[3.0]], [[0.5]]] + 7.0).astype(np.float32)
    x[0, 2] = 0.0  # dead
    x[1, 4] = 4.2  # stuck at a constant
    y = normalize_per_channel(x)
    assert y.dtype == np.float32 and np.isfinite(y).all()
    live = np.ones((2, 5), bool)
    live[0, 2] = live[1, 4] = False
    np.testing.assert_allclose(y.mean(-1), 0.0, atol=1e-5)
    np.testing.assert_allclose(y.std(-1)[live], 1.0, rtol=1e-4)
    assert not y[0, 2].any() and not y[1, 4].any()


def _augmented(where: str, x: np.ndarray, seed: int, n: int = 20, **kw) -> np.ndarray:
    """n augmented copies of window x: host (`augment`, one rng per copy) or device (one
    `augment_batch` call on n stacked copies, one key)."""
    if where == "host":
        return np.stack([augment(x, np.random.default_rng(seed * 1000 + i), **kw)
                         for i in range(n)])
    return np.asarray(augment_batch(jnp.asarray(np.stack([x] * n)), jax.random.key(seed), **kw))


@pytest.mark.parametrize("where", ["host", "device"])
def test_augment_host_and_device(where):
    x = np.zeros((3, 400), np.float32)
    x[0, 200] = 1.0  # an impulse
    x[1] = np.arange(1, 401)  # a ramp: nonzero everywhere, so wrapping would show
    out = _augmented(where, x, 5)
    np.testing.assert_array_equal(out, _augmented(where, x, 5))  # seeded
    for w in out:
        peak = int(np.argmax(w[0]))
        assert abs(peak - 200) <= 50 and 0.85 <= w[0, peak] <= 1.15
        assert not w[2].any()  # noise is relative to each channel's std
    shifts = set()
    for w in _augmented(where, x, 0, noise=0.0, scale=(1.0, 1.0)):
        s = int(np.argmax(w[0])) - 200  # shifts pad with zeros instead of wrapping around
        shifts.add(s)
        assert -50 <= s <= 50 and w[0].sum() == 1.0
        t = np.arange(400)
        pad = (t < s) | (t >= 400 + s)
        assert not w[1][pad].any()
        np.testing.assert_array_equal(w[1][~pad], x[1][(t - s)[~pad]])
    assert len(shifts) > 5  # a different shift per window
    ratios = _augmented(where, x, 0, noise=0.0, max_shift=0)[:, 0, 200] / x[0, 200]
    assert np.all((ratios >= 0.9) & (ratios <= 1.1)) and ratios.std() > 0
    with pytest.raises(ValueError):
        _augmented(where, x[None] if where == "host" else x[None, None], 0)

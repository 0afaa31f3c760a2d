"""Tests for the synthetic fire-detection data generator and its validating reader."""

from __future__ import annotations

import contextlib
from pathlib import Path

import h5py
import numpy as np
import pytest

from jaxtrain.tasks.fire.baseline import summary_feature_names, summary_features
from jaxtrain.tasks.fire.layout import CHANNEL_NAMES, CHANNEL_UNITS, CLASS_NAMES, DATASETS
from jaxtrain.tasks.fire.reader import read_fire_file
from jaxtrain.tasks.fire.synthetic import AREA_NAMES, generate

WINDOW = 60
SAMPLES = 20_000


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fire") / "fire.h5"
    generate(path, samples_per_area=SAMPLES, seed=0)
    return path


@pytest.fixture(scope="module")
def areas(data_file: Path) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """area -> (readings float64, label, risk)."""
    with h5py.File(data_file, "r") as f:
        return {
            name: (
                f[f"areas/{name}/readings"][:].astype(np.float64),
                f[f"areas/{name}/label"][:],
                f[f"areas/{name}/risk"][:],
            )
            for name in AREA_NAMES
        }


@pytest.fixture()
def small_file(tmp_path: Path) -> Path:
    path = tmp_path / "small.h5"
    generate(path, samples_per_area=600, num_areas=2, seed=3)
    return path


# ----------------------------------------------------------------------------- layout
def test_layout_and_attrs(data_file: Path) -> None:
    with h5py.File(data_file, "r") as f:
        assert f.attrs["format"] == "jaxtrain-fire-v1"
        assert f.attrs["sample_period_s"] == 60
        assert list(f.attrs["channel_names"]) == list(CHANNEL_NAMES)
        assert list(f.attrs["channel_units"]) == list(CHANNEL_UNITS)
        assert list(f.attrs["class_names"]) == ["normal", "warning", "fire"]
        assert list(f.attrs["area_names"]) == list(AREA_NAMES)
        assert f.attrs["seed"] == 0
        assert sorted(f["areas"]) == sorted(AREA_NAMES)
        for name in AREA_NAMES:
            g = f[f"areas/{name}"]
            assert set(g) == {"readings", "timestamp", "label", "risk"}
            assert g["readings"].shape == (SAMPLES, 6) and g["readings"].dtype == np.float32
            assert g["readings"].chunks == (4096, 6)
            assert g["timestamp"].dtype == np.int64 and g["timestamp"].shape == (SAMPLES,)
            assert g["label"].dtype == np.int8 and g["risk"].dtype == np.float32
            ts = g["timestamp"][:]
            assert ts[0] == 1_704_067_200 and np.all(np.diff(ts) == 60)
            x, lab, risk = g["readings"][:], g["label"][:], g["risk"][:]
            assert np.isfinite(x).all() and set(np.unique(lab)) == {0, 1, 2}
            assert np.all(risk[lab == 0] == 0.0)
            assert risk[lab == 1].min() >= 0.3 - 1e-6 and risk[lab == 1].max() <= 0.7 + 1e-6
            assert risk[lab == 2].min() >= 0.8 - 1e-6 and risk[lab == 2].max() <= 1.0
    info = read_fire_file(data_file)
    assert info.area_names == list(AREA_NAMES) and info.lengths == [SAMPLES] * 5
    assert info.channel_names == list(CHANNEL_NAMES) and info.class_names == list(CLASS_NAMES)
    assert info.label_counts.shape == (5, 3) and info.label_counts.sum() == 5 * SAMPLES
    assert info.seed == 0 and info.sample_period_s == 60


def test_deterministic_per_seed(tmp_path: Path) -> None:
    def arrays(path: Path) -> list[np.ndarray]:
        with h5py.File(path, "r") as f:
            return [f[f"areas/{a}/{d}"][:] for a in f["areas"] for d in DATASETS]

    paths = [tmp_path / n for n in ("a.h5", "b.h5", "c.h5")]
    for path, seed in zip(paths, (7, 7, 8), strict=True):
        generate(path, samples_per_area=3000, num_areas=2, seed=seed)
    a, b, c = (arrays(p) for p in paths)
    assert all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5", "b.h5", "c.h5"]  # atomic


def test_extra_areas_are_named(tmp_path: Path) -> None:
    path = tmp_path / "seven.h5"
    generate(path, samples_per_area=200, num_areas=7)
    info = read_fire_file(path)
    assert info.area_names == [*AREA_NAMES, "area_5", "area_6"]


# ----------------------------------------------------------------------------- labels
def test_class_imbalance(data_file: Path) -> None:
    counts = read_fire_file(data_file).label_counts.sum(0)
    frac = counts / counts.sum()
    assert 0.015 <= frac[2] <= 0.05, frac
    assert 0.03 <= frac[1] <= 0.09, frac


def _runs(lab: np.ndarray, value: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and (exclusive) end indices of runs of `value`."""
    edges = np.diff(np.concatenate([[0], (lab == value).astype(np.int8), [0]]))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def test_every_fire_is_preceded_by_warning(areas: dict) -> None:
    n_fires = 0
    for _, lab, _ in areas.values():
        fire_start, fire_end = _runs(lab, 2)
        warn_start, warn_end = _runs(lab, 1)
        assert fire_start.size > 0 and np.all(fire_start > 0)
        assert np.all(lab[fire_start - 1] == 1)
        # One warning run per fire, ending where the fire starts; durations as specified.
        np.testing.assert_array_equal(warn_end, fire_start)
        assert np.all((warn_end - warn_start >= 15) & (warn_end - warn_start <= 45))
        assert np.all((fire_end - fire_start >= 10) & (fire_end - fire_start <= 40))
        n_fires += fire_start.size
    assert n_fires >= 100


# ----------------------------------------------------------------------------- difficulty
def _one_thread() -> contextlib.AbstractContextManager:
    """One BLAS/OpenMP thread: as fast for these small fits, and up to 15x faster when other
    processes share the cores (idle pool threads spin for their turn)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # comes with scikit-learn; without it, the libraries' defaults
        return contextlib.nullcontext()
    return threadpool_limits(1)


def _log_concentrations(x: np.ndarray) -> np.ndarray:
    """log1p of the concentration channels so fire-scale values do not swamp the rest."""
    x = x.copy()
    conc = [1, 2, 3, 5]
    x[:, conc] = np.log1p(np.maximum(x[:, conc], 0.0))
    return x


def _windows(x: np.ndarray) -> np.ndarray:
    """(T, C) -> (T - 59, 60, C) view of the windows ending at each minute >= 59."""
    return np.lib.stride_tricks.sliding_window_view(x, WINDOW, axis=0).transpose(0, 2, 1)


def _single_features(x: np.ndarray) -> np.ndarray:
    return _log_concentrations(x)[WINDOW - 1 :]


def _trend_features(x: np.ndarray) -> np.ndarray:
    """Change over the last 10 and 30 min, share of rising 3-minute steps over 5, 10, 20 min."""
    w = _windows(_log_concentrations(x))
    rising = np.sign(w[:, 3:] - w[:, :-3])
    change = [w[:, -1] - w[:, -1 - k] for k in (10, 30)]
    return np.concatenate(change + [rising[:, -k:].mean(1) for k in (5, 10, 20)], axis=1)


def _split(areas: dict, features) -> tuple[np.ndarray, ...]:
    """Time split per area: first 70% of windows train, the rest (after a gap) test."""
    xtr, ytr, xte, yte = [], [], [], []
    for x, lab, _ in areas.values():
        feats, y = features(x), lab[WINDOW - 1 :]
        cut = int(0.7 * len(y))
        xtr.append(feats[:cut])
        ytr.append(y[:cut])
        xte.append(feats[cut + WINDOW :])
        yte.append(y[cut + WINDOW :])
    return tuple(np.concatenate(a) for a in (xtr, ytr, xte, yte))


def _logreg_predict(
    xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, l2: float = 1e-3, iters: int = 30
) -> np.ndarray:
    """Multinomial logistic regression (Newton with backtracking) on standardised features."""
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-9
    a = np.c_[(xtr - mu) / sd, np.ones(len(xtr))]
    b = np.c_[(xte - mu) / sd, np.ones(len(xte))]
    n, d = a.shape
    k = 3
    onehot = np.eye(k)[ytr]
    w = np.zeros((d, k))

    def probs(w: np.ndarray) -> np.ndarray:
        z = a @ w
        z -= z.max(1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(1, keepdims=True)

    def loss(w: np.ndarray) -> float:
        return -np.log(probs(w)[np.arange(n), ytr] + 1e-300).mean() + 0.5 * l2 * (w**2).sum()

    current = loss(w)
    for _ in range(iters):
        p = probs(w)
        grad = a.T @ (p - onehot) / n + l2 * w
        hess = np.empty((d, k, d, k))
        for i in range(k):
            for j in range(k):
                c = p[:, i] * ((i == j) - p[:, j])
                hess[:, i, :, j] = (a * c[:, None]).T @ a / n
        hess = hess.reshape(d * k, d * k) + l2 * np.eye(d * k)
        step = np.linalg.solve(hess, grad.reshape(-1)).reshape(d, k)
        t = 1.0
        while loss(w - t * step) > current and t > 1e-4:
            t *= 0.5
        w = w - t * step
        new = loss(w)
        if current - new < 1e-7:
            break
        current = new
    return (b @ w).argmax(1)


def _f1(y: np.ndarray, pred: np.ndarray, cls: int) -> float:
    tp = np.sum((pred == cls) & (y == cls))
    return float(2 * tp / max(np.sum(pred == cls) + np.sum(y == cls), 1))


def test_single_reading_is_poor_and_trend_is_good(areas: dict) -> None:
    with _one_thread():
        xtr, ytr, xte, yte = _split(areas, _single_features)
        single = _f1(yte, _logreg_predict(xtr, ytr, xte), 1)
        xtr, ytr, xte, yte = _split(areas, _trend_features)
        pred = _logreg_predict(xtr, ytr, xte)
    trend = _f1(yte, pred, 1)
    print(f"logistic regression warning F1: last reading {single:.3f}, trend features {trend:.3f}")
    # Warning levels overlap normal ones, so one reading cannot tell them apart...
    assert single < 0.6
    # ...while the sustained joint rise over the window can, even for a linear model.
    assert trend >= 0.8
    assert trend - single >= 0.3
    assert _f1(yte, pred, 2) >= 0.9


def test_windowed_trend_model_is_learnable(areas: dict) -> None:
    ensemble = pytest.importorskip("sklearn.ensemble")

    def features(x: np.ndarray) -> np.ndarray:
        return np.concatenate([_trend_features(x), _single_features(x)], axis=1)

    xtr, ytr, xte, yte = _split(areas, features)
    model = ensemble.HistGradientBoostingClassifier(max_iter=100, random_state=0)
    with _one_thread():
        pred = model.fit(xtr[::2], ytr[::2]).predict(xte)  # every other window: faster, enough
    f1 = [_f1(yte, pred, k) for k in range(3)]
    fire_recall = np.mean(pred[yte == 2] == 2)
    print(f"boosted trees on trend features: F1 {np.round(f1, 3)}, fire recall {fire_recall:.3f}")
    assert f1[1] >= 0.85
    assert np.mean(f1) >= 0.93
    assert fire_recall >= 0.95


# ----------------------------------------------------------------------------- features
def test_summary_features() -> None:
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 60, 6)).astype(np.float32)
    f = summary_features(w)
    assert f.shape == (4, 30) and f.dtype == np.float32
    names = summary_feature_names()
    assert len(names) == 30 and names[6 + 1] == "smoke_std"
    np.testing.assert_allclose(f[:, 6 + 1], w[:, :, 1].std(1), rtol=1e-5)
    np.testing.assert_allclose(f[:, 18:24], w.max(1))
    np.testing.assert_array_equal(f[:, 24:], w[:, -1])
    with pytest.raises(ValueError):
        summary_features(w[0])


# ----------------------------------------------------------------------------- reader errors
def _assert_one_line(exc: pytest.ExceptionInfo, *parts: str) -> None:
    msg = str(exc.value)
    assert "\n" not in msg
    for part in parts:
        assert part in msg, msg


def test_read_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.h5"
    with pytest.raises(FileNotFoundError) as exc:
        read_fire_file(path)
    _assert_one_line(exc, str(path))


def test_read_text_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.h5"
    path.write_text("timestamp,temperature\n0,21.5\n")
    with pytest.raises(ValueError) as exc:
        read_fire_file(path)
    _assert_one_line(exc, str(path), "HDF5")


def test_read_missing_dataset(small_file: Path) -> None:
    with h5py.File(small_file, "r+") as f:
        del f["areas/warehouse/risk"]
    with pytest.raises(ValueError) as exc:
        read_fire_file(small_file)
    _assert_one_line(exc, str(small_file), "/areas/warehouse/risk", "missing")


def test_read_nan_reading(small_file: Path) -> None:
    with h5py.File(small_file, "r+") as f:
        f["areas/kitchen/readings"][123, 2] = np.nan
    with pytest.raises(ValueError) as exc:
        read_fire_file(small_file)
    _assert_one_line(exc, str(small_file), "/areas/kitchen/readings", "row 123", "co")


def test_read_bad_label(small_file: Path) -> None:
    with h5py.File(small_file, "r+") as f:
        f["areas/warehouse/label"][42] = 7
    with pytest.raises(ValueError) as exc:
        read_fire_file(small_file)
    _assert_one_line(exc, str(small_file), "/areas/warehouse/label", "value 7")


def test_read_wrong_shape(small_file: Path) -> None:
    with h5py.File(small_file, "r+") as f:
        del f["areas/kitchen/readings"]
        f["areas/kitchen/readings"] = np.zeros((600, 5), np.float32)
    with pytest.raises(ValueError) as exc:
        read_fire_file(small_file)
    _assert_one_line(exc, str(small_file), "/areas/kitchen/readings", "shape")

"""Tests for the marine-debris data layer: synthetic generator, validating reader, grain source,
band statistics, augmentation and the MARIDA converter."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import grain
import h5py
import jax
import numpy as np
import pytest

from jaxtrain.tasks.debris import layout, marida, reader, synthetic
from jaxtrain.tasks.debris.augment import augment_batch, augment_record

N, SIZE = 24, 128


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("debris") / "debris.h5"
    synthetic.generate(path, num_patches=N, size=SIZE, seed=0)
    return path


@pytest.fixture(scope="module")
def scenes() -> list:
    """Rendered scenes with their MARIDA class maps (the generator's ground truth)."""
    return [synthetic.render(np.random.default_rng([5, i]), 128) for i in range(16)]


# ----------------------------------------------------------------------------- layout
def test_layout_and_info(data_file: Path) -> None:
    with h5py.File(data_file, "r") as f:
        assert f.attrs["format"] == "jaxtrain-debris-v1"
        assert list(f.attrs["band_names"]) == [
            "B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12"]
        assert "Marine Debris" in f.attrs["debris_class"]
        assert f.attrs["source"] == "synthetic" and f.attrs["seed"] == 0
        assert f.attrs["generator_version"] == synthetic.code_version()
        assert f["images"].shape == (N, SIZE, SIZE, 11) and f["images"].dtype == np.float32
        assert f["images"].chunks == (1, SIZE, SIZE, 11)
        for name in ("masks", "confidence"):
            assert f[name].shape == (N, SIZE, SIZE) and f[name].dtype == np.uint8
            assert f[name].chunks == (1, SIZE, SIZE)
        assert f["split"].dtype == np.uint8 and set(np.unique(f["split"][:])) == {0, 1, 2}
        masks, conf = f["masks"][:], f["confidence"][:]
        names = [n.decode() for n in f["names"][:]]
    assert set(np.unique(masks)) == {0, 1, 255}
    assert set(np.unique(conf)) <= {0, 1, 2, 3}
    np.testing.assert_array_equal(conf == 0, masks == 255)  # confidence 0 exactly on unlabeled
    assert len(set(names)) == N
    info = reader.read_debris_file(data_file)
    assert (info.num_patches, info.height, info.width, info.num_bands) == (N, SIZE, SIZE, 11)
    assert info.names == names and info.has_confidence and info.source == "synthetic"
    assert sorted(np.concatenate(list(info.splits.values())).tolist()) == list(range(N))
    assert abs(len(info.splits["train"]) - 0.7 * N) <= 2
    assert min(len(info.splits["val"]), len(info.splits["test"])) >= 2
    counts = info.pixel_counts
    assert sum(counts.values()) == N * SIZE * SIZE
    assert counts["debris"] == int((masks == 1).sum()) and counts["ignore"] == int(
        (masks == 255).sum())
    assert info.patches_with_debris == int((masks == 1).any((1, 2)).sum())


def test_deterministic_and_atomic(tmp_path: Path) -> None:
    paths = [tmp_path / n for n in ("a.h5", "b.h5", "c.h5")]
    for path, seed in zip(paths, (3, 3, 4), strict=True):
        assert synthetic.generate(path, num_patches=3, size=32, seed=seed) == str(path)
    with h5py.File(paths[0]) as a, h5py.File(paths[1]) as b, h5py.File(paths[2]) as c:
        for k in ("images", "masks", "confidence", "split"):
            np.testing.assert_array_equal(a[k][:], b[k][:])
        assert not np.array_equal(a["images"][:], c["images"][:])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5", "b.h5", "c.h5"]  # no temp
    with pytest.raises(ValueError, match="num_patches"):
        synthetic.generate(tmp_path / "x.h5", num_patches=0)


def test_split_is_stratified_and_names_a_missing_kind() -> None:
    has = np.r_[np.ones(9, bool), np.zeros(14, bool)]
    split = synthetic._split_of(has, (0.7, 0.15, 0.15), seed=1)
    for kind in (has, ~has):  # each kind is cut 70/15/15 on its own
        counts = np.bincount(split[kind], minlength=3)
        assert counts.sum() == kind.sum() and (counts >= 1).all() and counts[0] >= 6
    np.testing.assert_array_equal(split, synthetic._split_of(has, (0.7, 0.15, 0.15), seed=1))
    with pytest.raises(ValueError, match=r"the val split holds no 'patch with debris': "
                                         r"only 2 of 8 patches do"):
        synthetic._split_of(np.r_[np.ones(2, bool), np.zeros(6, bool)], (0.7, 0.15, 0.15), 0)


# ----------------------------------------------------------------------------- realism
def _class_spectra(scenes: list) -> dict[int, np.ndarray]:
    """MARIDA class -> (n, 11) reflectance of the pixels of that class."""
    out: dict[int, list[np.ndarray]] = {}
    for s in scenes:
        for c in np.unique(s.marida):
            out.setdefault(int(c), []).append(s.image[s.marida == c])
    return {c: np.concatenate(v) for c, v in out.items()}


def test_reflectance_ranges_per_class(scenes: list) -> None:
    spec = _class_spectra(scenes)
    med = {c: np.median(v, 0) for c, v in spec.items()}
    b = {n: i for i, n in enumerate(layout.BAND_NAMES)}
    allpix = np.concatenate([s.image.reshape(-1, 11) for s in scenes])
    assert allpix.min() > 0 and allpix.max() < 1.0 and np.isfinite(allpix).all()
    for c in (1, 2, 5, 6, 7, 9):  # debris, dense sargassum, ship, cloud, water, foam present
        assert c in spec and len(spec[c]) > 50, c
    water = med[7]
    assert 0.02 < water[b["B2"]] < 0.08 and water[b["B8"]] < 0.025 and water[b["B12"]] < 0.01
    assert water[b["B2"]] > water[b["B4"]] > water[b["B8"]] > water[b["B11"]]  # falls into IR
    cloud = med[6]
    assert cloud[b["B2"]] > 0.15 and 0.8 < cloud[b["B8"]] / cloud[b["B2"]] < 1.2  # bright, flat
    sarg = med[2]  # red-edge step: B6/B7 far above B4, like vegetation
    assert sarg[b["B7"]] > 2 * sarg[b["B4"]] and sarg[b["B8"]] > 3 * water[b["B8"]]
    foam = med[9]  # brighter than water and flat over VIS/NIR
    assert foam[b["B2"]] > 1.3 * water[b["B2"]]
    assert 0.6 < foam[b["B8"]] / foam[b["B4"]] < 1.4
    ship = np.percentile(spec[5], 90, 0)  # bright compact cores
    assert ship[b["B8"]] > 0.1
    deb = med[1]  # NIR raised over water, rising from red to NIR, no red-edge step
    assert deb[b["B8"]] > 2 * water[b["B8"]] and deb[b["B8"]] > deb[b["B4"]]
    assert deb[b["B7"]] / deb[b["B4"]] < sarg[b["B7"]] / sarg[b["B4"]] / 2
    assert deb[b["B11"]] / deb[b["B8"]] > sarg[b["B11"]] / sarg[b["B8"]]  # SWIR not dark
    # Debris is thin: most debris pixels touch a non-debris pixel (4-neighbourhood).
    edge, total = 0, 0
    for s in scenes:
        d = np.pad(s.mask == 1, 1)
        inner = d[1:-1, 1:-1] & d[:-2, 1:-1] & d[2:, 1:-1] & d[1:-1, :-2] & d[1:-1, 2:]
        edge += int((d[1:-1, 1:-1] & ~inner).sum())
        total += int(d.sum())
    assert total > 0 and edge / total > 0.6


def test_debris_fraction(data_file: Path) -> None:
    info = reader.read_debris_file(data_file)
    assert 0.005 < info.debris_fraction < 1 / 14
    assert 0.25 * N <= N - info.patches_with_debris <= 0.7 * N  # many patches hold none
    with h5py.File(data_file) as f:
        has = (f["masks"][:] == 1).any((1, 2))
    for s in ("train", "val", "test"):  # stratified: every split sees both kinds
        assert has[info.splits[s]].any() and (~has[info.splits[s]]).any(), s


def _band(image: np.ndarray, name: str) -> np.ndarray:
    return image[..., layout.BAND_NAMES.index(name)].astype(np.float32)


def _fdi(image: np.ndarray) -> np.ndarray:
    """Floating Debris Index (Biermann et al. 2020) of (..., 11) reflectance:
    B8 - (B6 + (B11 - B6) * (842 - 665) / (1610 - 665) * 10)."""
    b6, b8, b11 = (_band(image, b) for b in ("B6", "B8", "B11"))
    return b8 - (b6 + (b11 - b6) * (842.0 - 665.0) / (1610.0 - 665.0) * 10.0)


def _ndvi(image: np.ndarray) -> np.ndarray:
    """(B8 - B4) / (B8 + B4) of (..., 11) reflectance."""
    b4, b8 = _band(image, "B4"), _band(image, "B8")
    return (b8 - b4) / np.maximum(b8 + b4, 1e-6)


def _box(x: np.ndarray, r: int) -> np.ndarray:
    c = np.cumsum(np.cumsum(np.pad(x, ((r + 1, r), (r + 1, r), (0, 0)), mode="edge"), 0), 1)
    k = 2 * r + 1
    return (c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]) / k**2


def _pixels(path: Path, idx: np.ndarray, spatial: bool, rng: np.random.Generator):
    """Features of all debris pixels and 600 background pixels per patch, with weights that
    restore the true prevalence of the labeled pixels."""
    xs, ys, ws = [], [], []
    with h5py.File(path) as f:
        for i in idx:
            x, m = f["images"][i].astype(np.float64), f["masks"][i].ravel()
            feats = [x, _fdi(x)[..., None], _ndvi(x)[..., None]]
            if spatial:  # local contrast: what a conv sees and a pixel classifier does not
                feats += [x - _box(x, 4), _box(x, 1) - _box(x, 4)]
            feat = np.concatenate(feats, -1)
            feat = feat.reshape(-1, feat.shape[-1])
            pos, neg = np.flatnonzero(m == 1), np.flatnonzero(m == 0)
            sub = rng.choice(neg, 600, replace=False)
            xs.append(feat[np.concatenate([pos, sub])])
            ys.append(np.r_[np.ones(pos.size, bool), np.zeros(sub.size, bool)])
            ws.append(np.r_[np.ones(pos.size), np.full(sub.size, neg.size / sub.size)])
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(ws)


def test_learnable_but_not_trivial(data_file: Path) -> None:
    """A per-pixel logistic regression beats chance by far but is imperfect; adding local
    spatial contrast helps, so the spatial shape carries signal; one index alone is weak."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import precision_recall_curve, roc_auc_score
    from threadpoolctl import threadpool_limits

    info = reader.read_debris_file(data_file)
    train, test = info.splits["train"], np.concatenate([info.splits["val"], info.splits["test"]])

    def best_f1(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> float:
        pr, rc, _ = precision_recall_curve(y, p, sample_weight=w)
        return float((2 * pr * rc / np.maximum(pr + rc, 1e-12)).max())

    scores = {}
    for spatial in (False, True):
        rng = np.random.default_rng(0)
        xtr, ytr, _ = _pixels(data_file, train, spatial, rng)
        xte, yte, wte = _pixels(data_file, test, spatial, rng)
        mu, sd = xtr.mean(0), xtr.std(0) + 1e-12
        with threadpool_limits(1):  # one BLAS thread: the fit is small, threads only add noise
            clf = LogisticRegression(max_iter=300).fit((xtr - mu) / sd, ytr)
        p = clf.predict_proba((xte - mu) / sd)[:, 1]
        scores[spatial] = (roc_auc_score(yte, p, sample_weight=wte), best_f1(yte, p, wte))
        if not spatial:
            fdi_f1 = best_f1(yte, xte[:, 11], wte)
            prevalence = float((wte * yte).sum() / wte.sum())
    (auc_px, f1_px), (_, f1_sp) = scores[False], scores[True]
    # A constant "debris" guess has F1 = 2p / (1 + p), about 2 x prevalence.
    assert auc_px > 0.9 and f1_px > 10 * prevalence, (scores, prevalence)
    assert f1_px < 0.85, scores  # look-alikes overlap debris pixel by pixel
    assert f1_sp > f1_px + 0.05, scores
    assert fdi_f1 < f1_px - 0.2, (fdi_f1, scores)


# ----------------------------------------------------------------------------- reader errors
def _copy(src: Path, dst: Path, edit) -> Path:
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        edit(f)
    return dst


def _set(name: str, index: tuple, value) -> callable:
    def edit(f: h5py.File) -> None:
        d = f[name]
        a = d[index[0]] if len(index) > 1 else d[:]
        a[index[1:] if len(index) > 1 else index] = value
        if len(index) > 1:
            d[index[0]] = a
        else:
            d[:] = a
    return edit


def _replace(name: str, data: np.ndarray) -> callable:
    def edit(f: h5py.File) -> None:
        del f[name]
        f.create_dataset(name, data=data)
    return edit


@pytest.mark.parametrize("case,edit,match", [
    ("format", lambda f: f.attrs.__setitem__("format", "other"), "root attribute 'format'"),
    ("bands", lambda f: f.attrs.__setitem__("band_names", ["B1"] * 11), "band_names"),
    ("missing", lambda f: f.__delitem__("masks"), "/masks: missing dataset"),
    ("shape", _replace("images", np.zeros((2, 8, 8, 10), np.float32)), r"/images: shape"),
    ("mask_shape", _replace("masks", np.zeros((N, 8, 8), np.uint8)), r"/masks: shape"),
    ("dtype", _replace("confidence", np.zeros((N, SIZE, SIZE), np.float32)),
     "/confidence: dtype"),
    ("nan", _set("images", (5, 3, 4, 7), np.nan), r"/images: non-finite value nan in patch 5 "
                                                   r"\(synthetic_0_00005\).*band B8"),
    ("label", _set("masks", (2, 0, 0), 7), r"/masks: value 7 in patch 2"),
    ("conf", _set("confidence", (1, 0, 0), 9), r"/confidence: value 9 in patch 1"),
    ("split", _set("split", (3,), 5), r"/split: value 5 at patch 3"),
])
def test_reader_rejects_bad_files(data_file: Path, tmp_path: Path, case: str, edit,
                                  match: str) -> None:
    bad = _copy(data_file, tmp_path / f"{case}.h5", edit)
    with pytest.raises(ValueError, match=match) as e:
        reader.read_debris_file(bad)
    assert str(bad) in str(e.value) and "\n" not in str(e.value)


def test_reader_missing_and_non_hdf5(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.h5"):
        reader.read_debris_file(tmp_path / "nope.h5")
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5 at all")
    with pytest.raises(ValueError, match=f"{junk}: not a readable HDF5 file"):
        reader.read_debris_file(junk)


# ----------------------------------------------------------------------------- source
def test_source_pickles_and_reads_lazily(data_file: Path) -> None:
    info = reader.read_debris_file(data_file)
    idx = info.splits["val"]
    src = reader.DebrisSource(data_file, idx)
    assert len(src) == len(idx) and len(src._files) == 0  # nothing opened yet
    clone = pickle.loads(pickle.dumps(src))
    rec = src[1]
    assert len(src._files) == 1
    clone2 = pickle.loads(pickle.dumps(src))  # an open handle is not pickled
    assert len(clone2._files) == 0
    with h5py.File(data_file) as f:
        row = int(idx[1])
        np.testing.assert_array_equal(rec["image"], f["images"][row])
        m = f["masks"][row].astype(np.int32)
        np.testing.assert_array_equal(rec["mask"], np.where(m == 255, layout.IGNORE, m))
        np.testing.assert_array_equal(rec["confidence"], f["confidence"][row])
    assert rec["image"].dtype == np.float32 and rec["image"].shape == (SIZE, SIZE, 11)
    assert rec["mask"].dtype == np.int32 and set(np.unique(rec["mask"])) <= {-1, 0, 1}
    assert rec["confidence"].dtype == np.int32 and int(rec["index"]) == int(idx[1])
    for other in (clone, clone2):
        np.testing.assert_array_equal(other[1]["image"], rec["image"])
    ds = grain.MapDataset.source(src).map(lambda r: {"n": int(r["index"])})
    assert [ds[i]["n"] for i in range(len(src))] == idx.tolist()


# ----------------------------------------------------------------------------- band stats
def test_band_stats_uses_only_given_patches(data_file: Path, tmp_path: Path) -> None:
    info = reader.read_debris_file(data_file)
    train = info.splits["train"]
    mean, std = reader.band_stats(data_file, train)
    with h5py.File(data_file) as f:
        x = f["images"][np.sort(train)].reshape(-1, 11).astype(np.float64)
    np.testing.assert_allclose(mean, x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(std, x.std(0), rtol=1e-4)
    assert mean.shape == std.shape == (11,) and mean.dtype == np.float32

    # Scaling every non-train patch changes nothing for the train statistics.
    def scale(f: h5py.File) -> None:
        for i in np.concatenate([info.splits["val"], info.splits["test"]]):
            f["images"][i] = f["images"][i] * 10
    other = _copy(data_file, tmp_path / "scaled.h5", scale)
    m2, s2 = reader.band_stats(other, train)
    np.testing.assert_array_equal(m2, mean)
    np.testing.assert_array_equal(s2, std)
    m_all, _ = reader.band_stats(other, range(N))
    assert (m_all > 2 * mean).all()
    with pytest.raises(ValueError, match="at least one"):
        reader.band_stats(data_file, [])


# ----------------------------------------------------------------------------- augmentation
def test_augment_keeps_alignment_and_covers_dihedral_group() -> None:
    h, w = 6, 5
    image = np.zeros((h, w, 11), np.float32)
    image[..., 0] = np.arange(h * w).reshape(h, w)  # asymmetric: every transform differs
    image[1, 3, 4] = 100.0  # marker
    mask = np.zeros((h, w), np.int32)
    mask[1, 3] = 1
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(200):
        out = augment_record({"image": image, "mask": mask, "index": np.int32(7)}, rng)
        im, m = out["image"], out["mask"]
        assert im.shape[:2] == m.shape and im.shape[2] == 11 and out["index"] == 7
        assert np.unravel_index(np.argmax(im[..., 4]), m.shape) == tuple(np.argwhere(m == 1)[0])
        assert im.flags.c_contiguous and m.flags.c_contiguous
        seen.add(im[..., 0].tobytes() + bytes(im.shape[:2]))
    assert len(seen) == 8


def test_augment_record_crops(data_file: Path) -> None:
    src = reader.DebrisSource(data_file, range(N))
    with h5py.File(data_file) as f:
        has = np.flatnonzero((f["masks"][:] == 1).any((1, 2)))
    rec = src[int(has[0])]
    rng = np.random.default_rng(1)
    for _ in range(20):  # focus_prob=1 always lands on debris
        out = augment_record(rec, rng, crop_size=32, focus_prob=1.0)
        assert out["image"].shape == (32, 32, 11) and (out["mask"] == 1).any()
    out = augment_record(rec, rng, crop_size=48)
    assert out["image"].shape == (48, 48, 11)
    assert out["mask"].shape == out["confidence"].shape == (48, 48)
    # Mask and confidence moved together: unlabeled pixels keep confidence 0.
    np.testing.assert_array_equal(out["mask"] == layout.IGNORE, out["confidence"] == 0)
    with pytest.raises(ValueError, match="crop size"):
        augment_record(rec, rng, crop_size=SIZE + 1)


def _crop_offsets(patch: np.ndarray, crop: np.ndarray) -> list[tuple[int, int]]:
    """Where `crop`, undone by one of the 8 dihedral moves, sits in `patch` (all matches)."""
    s = crop.shape[0]
    undo = [np.rot90(c, -k, axes=(0, 1)) for c in (crop, crop[:, ::-1]) for k in range(4)]
    return [(y, x) for y in range(patch.shape[0] - s + 1) for x in range(patch.shape[1] - s + 1)
            for u in undo if np.array_equal(patch[y:y + s, x:x + s], u)]


def test_augment_batch_crops_and_moves_as_the_host_does() -> None:
    """In the train step: every output is a crop of its own patch under a dihedral move, with
    its mask moved alike; all 8 moves occur; focus_prob=1 always keeps the debris pixel."""
    h = w = 12
    rng = np.random.default_rng(0)
    image = rng.standard_normal((3, h, w, 2)).astype(np.float32)
    mask = np.zeros((3, h, w), np.int32)
    mask[0, 9, 2] = 1  # one debris pixel; patch 1 has none (uniform crop), patch 2 unlabeled
    mask[2, :3] = -1
    run = jax.jit(lambda b, k: augment_batch(b, k, crop_size=6, focus_prob=1.0))
    seen = set()
    for seed in range(24):
        out = run({"image": image, "mask": mask}, jax.random.key(seed))
        im, m = np.asarray(out["image"]), np.asarray(out["mask"])
        assert im.shape == (3, 6, 6, 2) and m.shape == (3, 6, 6)
        assert (m[0] == 1).sum() == 1 and (m[1] == 0).all()
        for i in range(3):
            both = np.concatenate([image[i], mask[i][..., None].astype(np.float32)], -1)
            moved = np.concatenate([im[i], m[i][..., None].astype(np.float32)], -1)
            assert _crop_offsets(both, moved), (seed, i)
        seen.add(im[1].tobytes())
    assert len(seen) > 12  # patch 1's uniform crops and moves vary
    whole = jax.jit(lambda b, k: augment_batch(b, k))  # no crop: the 8 moves of a patch
    moves = {np.asarray(whole({"image": image[:1], "mask": mask[:1]}, jax.random.key(s))
                        ["image"]).tobytes() for s in range(64)}
    assert len(moves) == 8
    with pytest.raises(ValueError, match="crop size"):
        augment_batch({"image": image, "mask": mask}, jax.random.key(0), crop_size=13)


# ----------------------------------------------------------------------------- MARIDA
def _marida_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / "patches").rglob("*.tif")
                  if not p.name.endswith(("_cl.tif", "_conf.tif")))


def test_marida_sample_roundtrip(tmp_path: Path) -> None:
    import tifffile

    root = tmp_path / "marida"
    marida.write_marida_sample(root, num_tiles=2, patches_per_tile=3, size=32, seed=0, nan_pixels=6)
    files = _marida_files(root)
    assert len(files) == 6 and (root / "splits" / "train_X.txt").exists()
    first = files[0]
    assert first.parent.name == "S2_1-12-19_48MYU" and first.name == "S2_1-12-19_48MYU_0.tif"
    with tifffile.TiffFile(first) as t:  # a GeoTIFF, band-first like GDAL writes MARIDA
        assert t.series[0].shape == (11, 32, 32)
        assert 33550 in t.pages[0].tags and 34735 in t.pages[0].tags
    out = marida.convert_marida(root, tmp_path / "marida.h5")
    info = reader.read_debris_file(out)
    assert info.num_patches == 6 and info.source == "MARIDA" and info.has_confidence
    ids = {s: (root / "splits" / f"{s}_X.txt").read_text().split() for s in layout.SPLITS}
    assert info.names == ["S2_" + i for s in layout.SPLITS for i in ids[s]]
    for k, s in enumerate(layout.SPLITS):
        assert [info.names[i] for i in info.splits[s]] == ["S2_" + i for i in ids[s]]
        assert (info.split[info.splits[s]] == k).all()
    with h5py.File(out) as f:
        for row, name in enumerate(info.names):
            img_p, cl_p, conf_p = marida.marida_paths(root, name)
            img = np.moveaxis(tifffile.imread(img_p), 0, -1)
            cl, conf = tifffile.imread(cl_p), tifffile.imread(conf_p)
            nan = np.isnan(img).any(-1)
            want = np.where(cl == 0, 255, np.where(cl == 1, 1, 0))
            want[nan] = 255
            np.testing.assert_array_equal(f["masks"][row], want)
            np.testing.assert_array_equal(f["confidence"][row], np.where(want == 255, 0, conf))
            x = f["images"][row]
            np.testing.assert_array_equal(x[~nan], img[~nan])
            assert np.isfinite(x).all()
            if row == 0:
                assert nan.sum() == 6  # the NaN pixels went to ignore, the image was filled
                np.testing.assert_allclose(x[nan][0], np.nanmean(img.reshape(-1, 11), 0),
                                           rtol=1e-5)
        assert f.attrs["nan_pixels_set_to_ignore"] == 6
        masks = f["masks"][:]
    # Debris maps to 1 and other classes to 0; sparse annotation leaves most pixels ignored.
    assert (masks == 1).any() and (masks == 0).any() and (masks == 255).mean() > 0.2


def _write_sample(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "m"
    marida.write_marida_sample(root, num_tiles=1, patches_per_tile=3, size=16, seed=1)
    return root, _marida_files(root)[1]


def test_marida_corrupt_tiff(tmp_path: Path) -> None:
    root, img = _write_sample(tmp_path)
    img.write_bytes(b"II*\x00garbage" * 3)
    with pytest.raises(ValueError, match=f"{img}: not a readable TIFF") as e:
        marida.convert_marida(root, tmp_path / "o.h5")
    assert "\n" not in str(e.value) and not list(tmp_path.glob("o*"))  # nor a temp file


@pytest.mark.parametrize("case", ["bands", "mask_shape", "class", "missing_cl", "missing_conf",
                                  "splits"])
def test_marida_bad_inputs(tmp_path: Path, case: str) -> None:
    import tifffile

    root, img = _write_sample(tmp_path)
    cl = img.with_name(img.stem + "_cl.tif")
    if case == "bands":
        tifffile.imwrite(img, np.zeros((10, 16, 16), np.float32))
        err, match, named = ValueError, r"image shape \(10, 16, 16\), expected 11 bands", img
    elif case == "mask_shape":
        tifffile.imwrite(cl, np.zeros((8, 16), np.uint8))
        err, match, named = ValueError, r"class mask shape \(8, 16\), expected \(16, 16\)", cl
    elif case == "class":
        tifffile.imwrite(cl, np.full((16, 16), 20, np.uint8))
        err, match, named = ValueError, "class mask value 20, expected 0..15", cl
    elif case == "missing_cl":
        cl.unlink()
        err, match, named = FileNotFoundError, "no such MARIDA file", cl
    elif case == "missing_conf":
        conf = img.with_name(img.stem + "_conf.tif")
        conf.unlink()
        err, match, named = FileNotFoundError, "no such MARIDA confidence file", conf
    else:
        (root / "splits" / "val_X.txt").unlink()
        named = root / "splits" / "val_X.txt"
        err, match = FileNotFoundError, "no such MARIDA split list"
    with pytest.raises(err, match=match) as e:
        marida.convert_marida(root, tmp_path / "o.h5")
    assert str(named) in str(e.value)


def test_read_tiff_image_band_last(tmp_path: Path) -> None:
    import tifffile

    x = np.random.default_rng(0).random((16, 20, 11)).astype(np.float32)
    tifffile.imwrite(tmp_path / "hwc.tif", x)
    np.testing.assert_array_equal(marida.read_tiff_image(tmp_path / "hwc.tif"), x)
    tifffile.imwrite(tmp_path / "chw.tif", np.moveaxis(x, -1, 0), planarconfig="separate",
                     photometric="minisblack")
    np.testing.assert_array_equal(marida.read_tiff_image(tmp_path / "chw.tif"), x)

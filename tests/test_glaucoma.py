"""Glaucoma: EfficientNet-B0 size and unfrozen set, AIROGS metrics against scikit-learn,
image cache, augmentation, config checks, and an AIROGS tree trained end to end and predicted."""

import csv
import os
import re

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from configs import glaucoma as glaucoma_config
from jaxtrain import config_checks, main
from jaxtrain import predict as predict_cli
from jaxtrain.models.efficientnet import (
    EfficientNetB0,
    correct_pad,
    keras_layer_names,
)
from jaxtrain.phases import count_trainable
from jaxtrain.tasks.glaucoma import augment, evaluation, images, synthetic
from jaxtrain.tasks.glaucoma.airogs import read_airogs
from jaxtrain.tasks.glaucoma.checks import validate
from jaxtrain.tasks.glaucoma.model import GlaucomaNet, trainable_mask, unfrozen_prefixes


def _count(tree) -> int:
    return sum(x.size for x in jax.tree.leaves(tree))


# ----------------------------------------------------------------------------- model
@pytest.fixture(scope="module")
def net_params():
    """Parameter shapes of the whole network (backbone + head)."""
    return jax.eval_shape(lambda: GlaucomaNet().lazy_init(
        jax.random.key(0), jax.ShapeDtypeStruct((2, 64, 64, 3), jnp.float32)))["params"]


def test_efficientnet_b0_matches_keras_sizes_and_last_50_layers(net_params):
    v = jax.eval_shape(lambda: EfficientNetB0().lazy_init(
        jax.random.key(0), jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)))
    assert _count(v["params"]) == 4_007_548  # Keras: trainable, include_top=False
    # Keras's 42,023 non-trainable = BN moving mean/var + Normalization mean/var/count.
    assert _count(v["batch_stats"]) + _count(v["input_norm"]) + 1 == 42_023
    names = keras_layer_names()
    assert len(names) == 238 and names[-50] == "block6b_project_bn" and names[-1] == "avg_pool"
    assert tuple(unfrozen_prefixes(50)) == glaucoma_config.LAST_50_KERAS_LAYERS
    head = _count({k: v for k, v in net_params.items() if k != "backbone"})
    top = trainable_mask(net_params, "top", glaucoma_config.LAST_50_KERAS_LAYERS)
    assert count_trainable(net_params, top) - head == 2_305_680
    assert count_trainable(net_params, trainable_mask(net_params, "head")) == head
    assert count_trainable(net_params, trainable_mask(net_params, "all")) == _count(net_params)
    mask = flax.traverse_util.flatten_dict(top)
    on = {"/".join(k[1:3]) for k, m in mask.items() if m and k[0] == "backbone"}
    assert "block6b/project_bn" in on and "block6b/project_conv" not in on
    assert "backbone/top_bn/scale" in {"/".join(k) for k, m in mask.items() if m}
    assert not any(k[1].startswith(("block5", "stem", "block6a")) for k, m in mask.items()
                   if m and k[0] == "backbone")


@pytest.mark.parametrize("size", [7, 8, 15, 16])
@pytest.mark.parametrize("kernel", [3, 5])
def test_correct_pad_is_tf_same_padding(size, kernel):
    x = jnp.asarray(np.random.default_rng(0).normal(size=(1, size, size, 1)), jnp.float32)
    w = jnp.ones((kernel, kernel, 1, 1))
    pad = correct_pad((size, size), kernel)
    ours = jax.lax.conv_general_dilated(jnp.pad(x, ((0, 0), pad[0], pad[1], (0, 0))), w,
                                        (2, 2), "VALID",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    same = jax.lax.conv_general_dilated(x, w, (2, 2), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    np.testing.assert_allclose(ours, same, atol=1e-5)


def test_depthwise_taps_equal_grouped_convolution():
    from jaxtrain.models.efficientnet import DepthwiseConv

    x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 8, 8, 4)), jnp.float32)
    conv = DepthwiseConv(3, 2, "conv")  # stride 1 is checked against Keras (test_glaucoma_keras)
    v = conv.init(jax.random.key(0), x)
    np.testing.assert_allclose(DepthwiseConv(3, 2, "taps").apply(v, x), conv.apply(v, x),
                               atol=1e-5)


# ----------------------------------------------------------------------------- metrics
def _score_sets():
    rng = np.random.default_rng(3)
    y = (rng.random(400) < 0.1).astype(int)
    s = rng.normal(size=400) + 1.2 * y
    yield y, s
    yield y, np.round(s, 1)  # many ties
    yield y, np.zeros(400)  # constant
    yield np.array([0] * 7 + [1] * 5), np.array([.1, .2, .3, .4, .5, .6, .9, .9, .8, .7, .65, .3])


def test_screening_metrics_match_sklearn_and_the_airogs_definitions():
    skm = pytest.importorskip("sklearn.metrics")
    for y, s in _score_sets():
        got = evaluation.screening_scores(y, s)
        assert got["auc"] == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
        assert got["pauc"] == pytest.approx(skm.roc_auc_score(y, s, max_fpr=0.1), abs=1e-12)
        fpr, tpr, thr = skm.roc_curve(y, s, drop_intermediate=False)
        ours = evaluation.roc_curve(y, s)
        for a, b in zip(ours, (fpr, tpr, thr), strict=True):
            np.testing.assert_allclose(a, b)
        # AIROGS beta: brute force over every threshold, no interpolation.
        best = max(((s >= t) & (y == 1)).sum() / (y == 1).sum()
                   for t in [*np.unique(s), np.inf]
                   if ((s < t) & (y == 0)).sum() / (y == 0).sum() >= 0.95)
        assert got["sens_at_95_spec"] == pytest.approx(best)
    y = np.array([0, 1, 1, 1])
    assert evaluation.partial_auc(y, np.zeros(4)) == 0.5  # the AIROGS unit test
    y, s = list(_score_sets())[-1]
    assert evaluation.sensitivity_at_specificity(y, s) == 0.0  # the tie at 0.9


def test_threshold_chosen_on_validation_keeps_its_specificity():
    rng = np.random.default_rng(5)
    y = (rng.random(500) < 0.2).astype(int)
    s = rng.random(500) * 0.6 + 0.4 * y
    t = evaluation.threshold_at_specificity(y, s)
    at = evaluation.rates_at(y, s, t)
    assert at["specificity"] >= 0.95
    assert at["sensitivity"] == pytest.approx(evaluation.sensitivity_at_specificity(y, s))
    val = {"label": y, "probs": np.stack([1 - s, s], 1)}
    flat, report = evaluation.score(val, val)
    assert flat["tuned_threshold"] == t and report["threshold"]["val"]["specificity"] >= 0.95
    t_none = evaluation.threshold_at_specificity(y, np.full(500, 0.3))  # refer nobody
    assert np.isfinite(t_none) and evaluation.rates_at(y, np.full(500, 0.3), t_none)[
        "sensitivity"] == 0


# ----------------------------------------------------------------------------- images
def test_clahe_stretches_contrast_as_far_as_its_clip_limit_allows():
    ramp = np.tile(np.linspace(90, 110, 64).astype(np.uint8), (64, 1))
    mild, strong = images.clahe(ramp, 2.0, 8), images.clahe(ramp, 40.0, 8)
    assert ramp.std() < mild.std() < strong.std()
    assert mild.dtype == np.uint8 and mild.shape == ramp.shape


def test_host_and_step_augmentation_warp_alike():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (32, 32, 3)).astype(np.uint8)
    m = augment.matrix(np, 32, True, False, 12.0, 0.05, -0.05, 1.05).astype(np.float32)
    host = augment.warp(np, img, m, np.float32(1.1))
    step = jax.jit(lambda i, m: augment.warp(jnp, i, m, 1.1))(jnp.asarray(img), jnp.asarray(m))
    np.testing.assert_allclose(host, np.asarray(step), atol=1e-3)
    ident = augment.matrix(np, 32, False, False, 0.0, 0.0, 0.0, 1.0).astype(np.float32)
    np.testing.assert_array_equal(augment.warp(np, img, ident), img)
    views = jax.jit(augment.tta_views)(jnp.asarray(img[None], jnp.float32))
    assert len(views) == 5
    np.testing.assert_array_equal(views[1][0], img[:, ::-1])
    batch = jax.jit(augment.augment_batch)(jnp.asarray(np.stack([img] * 4)), jax.random.key(0))
    assert batch.shape == (4, 32, 32, 3) and float(batch.max()) <= 255


def _fundus_with_disc(size: int, disc: tuple[int, int], disc_r: int) -> Image.Image:
    """A dark red retina with an uneven illumination, a small bright reflex and a pale disc."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    img = np.stack([150 + 30 * xx / size, 60 + 0 * xx, 30 + 0 * xx], -1).astype(np.float32)
    img += rng.normal(0, 6, img.shape)
    img[np.hypot(xx - size * 0.3, yy - size * 0.7) < disc_r * 0.4] = 255  # a lens reflex
    img[np.hypot(xx - disc[0], yy - disc[1]) < disc_r] = (240, 190, 120)
    img[np.hypot(xx - size / 2, yy - size / 2) > size * 0.48] = 0  # the black surround
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


@pytest.mark.parametrize("disc", [(150, 100), (52, 140), (100, 40), (25, 100)])
def test_disc_crop_is_centred_on_the_optic_disc(disc, tmp_path):
    im = _fundus_with_disc(200, disc, 10)
    cx, cy = images.disc_centre(im)
    assert abs(cx - disc[0]) <= 3 and abs(cy - disc[1]) <= 3
    path = str(tmp_path / "f.jpg")
    im.save(path, quality=90)
    crop = images.decode(path, 40, disc_crop=0.3)  # 60 px of 200 -> 40 px
    pale = np.argwhere(crop[..., 1].astype(int) > 150)  # the disc's pixels
    x0, y0, _, _ = images.disc_box(im, (0, 0, 200, 200), 0.3)
    expected = ((disc[1] - y0) * 40 / 60, (disc[0] - x0) * 40 / 60)
    np.testing.assert_allclose(pale.mean(0), expected, atol=2.5)
    assert images.decode(path, 40).shape == crop.shape == (40, 40, 3)


def test_cache_key_follows_the_preprocessing(tmp_path):
    path = str(tmp_path / "f.jpg")
    _fundus_with_disc(64, (40, 30), 4).save(path)
    keys = {images.cache_key([path], 32, 0.0), images.cache_key([path], 32, 0.0, 0.3),
            images.cache_key([path], 32, 0.0, 0.4), images.cache_key([path], 48, 0.0),
            images.cache_key([path], 32, 2.0)}
    assert len(keys) == 5


@pytest.fixture(scope="session")
def airogs_tree(tmp_path_factory):
    """A small AIROGS tree: JPEGs in two folders, a labels CSV with U rows, one corrupt
    image and one listed id without a file."""
    root = str(tmp_path_factory.mktemp("airogs"))
    synthetic.generate(root, num_images=60, size=64, rg_fraction=0.25, ungradable=0.05,
                       per_folder=40, seed=1)
    with open(os.path.join(root, "1", "TRAIN000059.jpg"), "wb") as f:
        f.write(b"not a jpeg")
    with open(os.path.join(root, synthetic.LABELS_FILE), "a") as f:
        f.write("TRAIN999999,NRG\n")
    return root


def test_reader_drops_ungradable_and_reports_missing(airogs_tree):
    with pytest.raises(FileNotFoundError, match=r"1 image.*TRAIN999999.*on_missing"):
        read_airogs(airogs_tree)
    ds = read_airogs(airogs_tree, missing="skip")
    assert ds.counts() == {"NRG": 42, "RG": 15, "U_dropped": 3, "missing_skipped": 1}
    assert {os.path.basename(os.path.dirname(p)) for p in ds.paths} == {"0", "1"}


def test_image_cache_resumes_and_records_unreadable(airogs_tree, tmp_path, monkeypatch):
    ds = read_airogs(airogs_tree, missing="skip")
    whole = images.build_cache(str(tmp_path / "a.h5"), ds.paths, 32)
    calls = {"n": 0}
    real = images.decode

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > images.BLOCK // 2 + 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(images, "BLOCK", 16)
    monkeypatch.setattr(images, "decode", interrupted)
    with pytest.raises(KeyboardInterrupt):
        images.build_cache(str(tmp_path / "b.h5"), ds.paths, 32)
    assert os.path.exists(tmp_path / "b.h5.partial")
    monkeypatch.setattr(images, "decode", real)
    resumed = images.build_cache(str(tmp_path / "b.h5"), ds.paths, 32)
    import h5py

    with h5py.File(whole) as a, h5py.File(resumed) as b:
        np.testing.assert_array_equal(a["images"][:], b["images"][:])
    errors = images.read_errors(resumed)
    assert [os.path.basename(ds.paths[i]) for i, e in enumerate(errors) if e] == [
        "TRAIN000059.jpg"]


def test_validate_rejects_bad_values():
    validate(glaucoma_config.get_config())
    for key, value in [("data.on_missing", "ignore"), ("data.image_size", 8),
                       ("data.disc_crop", 0.05), ("data.disc_crop", 1.5),
                       ("augment.brightness", (1.2, 0.8)), ("eval.tta_passes", 6),
                       ("loss.focal_alpha", 1.5)]:
        c = glaucoma_config.get_config()
        section, name = key.split(".")
        c[section][name] = value
        with pytest.raises(config_checks.ConfigValueError, match=re.escape(key)):
            validate(c)
    with pytest.raises(config_checks.ConfigValueError, match=r"finetune\.enabled"):
        validate(glaucoma_config.get_config("seed"))  # needs a weights file


# ----------------------------------------------------------------------------- end to end
@pytest.fixture
def quick_compiles():
    """XLA:CPU without its expensive passes: EfficientNet's steps compile several times
    faster. For tests of what is computed, not how fast."""
    before = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", before)


def tiny_config(cache_dir: str, path: str = ""):
    c = glaucoma_config.get_config()
    c.data.cache_dir = cache_dir
    c.data.path = path
    c.data.on_missing = "skip"
    c.data.on_unreadable = "skip"
    c.data.image_size = 32
    c.data.split = (0.5, 0.25, 0.25)
    c.train.batch_size = 8
    c.train.eval_batch_size = 8
    c.train.epochs = 1
    c.train.log_every_s = 1000.0
    c.eval.tta_passes = 1
    c.eval.baseline = False
    c.train.report = False  # report.html is tested in test_report.py
    return c


def test_images_gathered_on_device_equal_the_host_records(airogs_tree, cache_dir, tmp_path):
    """The device copy holds only the usable rows (the corrupt image left out), uint8 as
    cached, and gives every split's records as its host ImageSource does."""
    from jaxtrain.tasks.glaucoma.task import build

    task = build(tiny_config(cache_dir, airogs_tree), str(tmp_path))
    data = task.device_data()
    assert data.arrays["image"].dtype == np.uint8
    assert len(data.arrays["index"]) == sum(
        len(s) for s in (task.train_source, task.val_source, task.test_source))
    gather = jax.jit(data.gather)
    for split, source in (("train", task.train_source), ("test", task.test_source)):
        idx = np.arange(len(source))[::-1]
        host = source.read_batch(idx)
        got = gather(data.arrays, data.splits[split][idx])
        assert set(got) == set(host)
        for k in host:
            np.testing.assert_array_equal(np.asarray(got[k]), host[k], k)


def test_airogs_tree_trains_end_to_end_and_predicts(airogs_tree, cache_dir, tmp_path,
                                                     quick_compiles):
    workdir = str(tmp_path / "run")
    results = main.run(tiny_config(cache_dir, airogs_tree), workdir)
    assert results["data"]["counts"]["U_dropped"] == 3
    # auto: the tiny cache fits, so the step gathered and augmented uint8 images.
    assert results["setup"]["train_read"] == "device"
    assert results["setup"]["augment.where"] == "step"
    assert results["data"]["splits"]["test"]["RG"] >= 1
    for key in ("auc", "pauc", "sens_at_95_spec", "tuned_threshold"):
        assert np.isfinite(results["test"][key])
    out = str(tmp_path / "pred.csv")
    summary = predict_cli.predict(workdir, airogs_tree, out)
    with open(out) as f:
        rows = list(csv.DictReader(f))
    by_id = {r["challenge_id"]: r for r in rows}
    assert summary["errors"] == 2 and len(rows) == 61  # the corrupt file and the missing id
    assert by_id["TRAIN000059"]["error"] and not by_id["TRAIN000059"]["probability"]
    assert by_id["TRAIN999999"]["error"] == "image file not found"
    good = [r for r in rows if not r["error"]]
    t = summary["threshold"]
    assert t == results["test_report"]["threshold"]["chosen"]
    assert all(int(r["referable"]) == (float(r["probability"]) >= t) for r in good)
    # A plain folder of JPEGs (no CSV) works as well.
    folder = tmp_path / "jpegs"
    folder.mkdir()
    for name in ("TRAIN000000.jpg", "TRAIN000001.jpg"):
        os.link(os.path.join(airogs_tree, "0", name), folder / name)
    summary = predict_cli.predict(workdir, str(folder), str(tmp_path / "p2.csv"))
    assert summary["predicted"] == 2 and summary["errors"] == 0

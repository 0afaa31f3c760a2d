"""Debris segmentation: SE-U-Net size, loss terms, threshold sweep, training, inference."""

import contextlib
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxtrain import checkpoint, main, metrics, optim, sharding, train_step
from jaxtrain.models.se_unet import SEUNet, init_variables, param_count
from jaxtrain.tasks.debris import evaluation, marida, predict, synthetic
from jaxtrain.tasks.debris.loss import debris_loss
from jaxtrain.tasks.debris.task import build
from tests.fire_test_config import load_config


@contextlib.contextmanager
def quick_compiles():
    """XLA:CPU without its expensive LLVM passes: the U-Net's training step compiles in about
    a third of the time. For tests of what is computed, not how fast; programs that run
    long (e.g. initialising 31M parameters) are better compiled as usual."""
    before = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    try:
        yield
    finally:
        jax.config.update("jax_disable_most_optimizations", before)


def tiny_debris_config(cache_dir: str, **data):
    c = load_config("debris")
    c.data.cache_dir = cache_dir
    c.data.num_patches = 16
    c.data.size = 64
    c.data.crop_size = 32
    c.data.crops_per_patch = 8
    c.data.update(data)
    c.model.base_width = 8
    c.model.dropout = 0.0
    c.model.bottleneck_dropout = 0.0
    c.train.batch_size = 8
    c.train.eval_batch_size = 8
    c.train.epochs = 3
    c.train.log_every_s = 1000.0
    c.train.report = False  # report.html is tested in test_report.py
    c.optim.learning_rate = 3e-3
    c.optim.warmup_epochs = 0.5
    c.predict.window = 32
    c.predict.overlap = 8
    return c


# ----------------------------------------------------------------------------- model
def test_full_width_parameter_count():
    """31,270,750 at width 64, the same as PyTorch's count of the same layers.

    The notes' SE-U-Net without the extra head conv had 31,252,318; the head conv (64->32,
    3x3, no bias) + its BN (64) + a 32->2 instead of 64->2 output conv add 18,432 + 64 - 64.
    """
    variables = jax.eval_shape(lambda: SEUNet(base_width=64).init(
        jax.random.key(0), jnp.zeros((1, 32, 32, 11))))
    count = sum(x.size for x in jax.tree.leaves(variables["params"]))
    assert count == 31_270_750
    assert count == param_count(base_width=64)
    assert count == 31_252_318 + 18_432 + 64 - 64
    # BN running mean + var (buffers in PyTorch): 2 x channels of the 19 BatchNorms.
    assert sum(x.size for x in jax.tree.leaves(variables["batch_stats"])) == 11_840
    assert param_count(base_width=16) == 1_958_521


def test_full_width_train_step_on_cpu():
    model = SEUNet(base_width=64)
    mesh = sharding.make_mesh(devices=jax.devices()[:1])
    cfg = load_config("debris").optim
    tx, _ = optim.make_optimizer(cfg, steps_per_epoch=10, total_steps=100)
    cw = jnp.array([0.5, 10.0])

    def init():
        v = init_variables(model, jax.random.key(0), (1, 16, 16, 11))
        return train_step.TrainState.create(v["params"], tx, rng=jax.random.key(1),
                                            model_state={"batch_stats": v["batch_stats"]})

    def loss_fn(params, model_state, batch, rng):
        logits, upd = model.apply({"params": params, **model_state}, batch["image"], train=True,
                                  rngs={"dropout": rng}, mutable=["batch_stats"])
        loss, terms = debris_loss(logits, batch["mask"], class_weights=cw)
        return loss, (terms, upd)

    state, shardings = train_step.create_sharded_state(init, mesh)
    before = jax.device_get(state.model_state)
    step = train_step.make_train_step(loss_fn, tx, mesh, shardings, donate=False)
    rng = np.random.default_rng(0)
    batch = {"image": rng.normal(size=(2, 16, 16, 11)).astype(np.float32),
             "mask": rng.integers(-1, 2, size=(2, 16, 16)).astype(np.int32)}
    with quick_compiles():
        new, m = step(state, sharding.make_global_batch(batch, mesh))
    assert np.isfinite(float(m["loss"])) and float(m["grad_norm"]) > 0
    assert int(new.step) == 1
    after = jax.device_get(new.model_state)
    assert not np.allclose(before["batch_stats"]["enc1"]["bn1"]["mean"],
                           after["batch_stats"]["enc1"]["bn1"]["mean"])


# ----------------------------------------------------------------------------- loss
def test_loss_terms_match_hand_computation():
    logits = np.array([[[[2.0, -1.0], [0.5, 0.3]], [[-0.2, 1.4], [9.0, 9.0]]]], np.float32)
    labels = np.array([[[0, 1], [1, -1]]], np.int32)  # the last pixel is ignored
    w = np.array([0.5, 4.0], np.float32)
    loss = jax.jit(lambda x: debris_loss(x, jnp.asarray(labels), class_weights=jnp.asarray(w)))
    total, terms = loss(jnp.asarray(logits))  # jitted: one compile, not one per operation
    lg = logits.reshape(-1, 2)[:3]
    y = labels.reshape(-1)[:3]
    p = np.exp(lg) / np.exp(lg).sum(-1, keepdims=True)
    py = p[np.arange(3), y]
    p1, t = p[:, 1], (y == 1).astype(np.float64)
    dice = 1 - (2 * (p1 * t).sum() + 1.0) / (p1.sum() + t.sum() + 1.0)
    focal = np.mean(0.25 * (1 - py) ** 2 * -np.log(py))
    ce = (w[y] * -np.log(py)).sum() / w[y].sum()
    np.testing.assert_allclose(float(terms["dice"]), dice, rtol=1e-5)
    np.testing.assert_allclose(float(terms["focal"]), focal, rtol=1e-5)
    np.testing.assert_allclose(float(terms["cross_entropy"]), ce, rtol=1e-5)
    np.testing.assert_allclose(float(total), 0.4 * dice + 0.4 * focal + 0.2 * ce, rtol=1e-5)
    # Ignored pixels carry no gradient.
    g = jax.jit(jax.grad(lambda x: loss(x)[0]))(jnp.asarray(logits))
    assert np.all(np.asarray(g)[0, 1, 1] == 0) and np.any(np.asarray(g)[0, 0, 0] != 0)


# ----------------------------------------------------------------------------- metrics
def _brute_f1(scores, labels, t):
    pred = scores >= t
    tp = np.sum(pred & labels)
    return 2 * tp / max(2 * tp + np.sum(pred & ~labels) + np.sum(~pred & labels), 1)


def test_threshold_sweep_picks_best_f1_threshold():
    scores = np.array([0.95, 0.85, 0.72, 0.64, 0.33, 0.80, 0.62, 0.41, 0.30, 0.12, 0.05])
    labels = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0], bool)
    pos, neg = metrics.threshold_histograms(scores, labels, 100)
    jpos, jneg = metrics.threshold_histograms(jnp.asarray(scores), jnp.asarray(labels), 100)
    np.testing.assert_array_equal(pos, np.asarray(jpos))
    np.testing.assert_array_equal(neg, np.asarray(jneg))
    sweep = metrics.threshold_sweep(pos, neg)
    brute = np.array([_brute_f1(scores, labels, k / 100) for k in range(100)])
    np.testing.assert_allclose(sweep["f1"], brute, atol=1e-12)
    best = metrics.best_threshold(sweep)
    # 0.63 / 0.64 keep 4 of 5 positives and 1 false positive: F1 0.8 (0.5 gives 0.727).
    assert best == 63 and sweep["f1"][best] == pytest.approx(0.8)
    assert sweep["f1"][50] == pytest.approx(8 / 11)
    assert sweep["iou"][best] == pytest.approx(4 / 6)
    # The threshold chosen on validation is the one applied to test.
    out = {"pos_hist": pos[None], "neg_hist": neg[None], "max_prob": np.array([0.95])}
    test_scores = scores * 0.5  # test behaves differently: its own best would be lower
    tpos, tneg = metrics.threshold_histograms(test_scores, labels, 100)
    flat, report = evaluation.score({"pos_hist": tpos[None], "neg_hist": tneg[None],
                                     "max_prob": np.array([0.475])}, tuning=out)
    assert report["threshold"]["chosen"] == pytest.approx(0.63)
    assert flat["tuned_f1"] == pytest.approx(_brute_f1(test_scores, labels, 0.63))
    assert flat["debris_f1"] == pytest.approx(_brute_f1(test_scores, labels, 0.5))
    assert flat["max_prob"] == pytest.approx(0.475)


# ----------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, cache_dir):
    workdir = str(tmp_path_factory.mktemp("debris_run"))
    config = tiny_debris_config(cache_dir)
    with quick_compiles():
        results = main.run(config, workdir)
    return config, workdir, results


def test_tiny_run_learns(tiny_run):
    _, workdir, results = tiny_run
    import csv

    with open(os.path.join(workdir, "history.csv")) as f:
        history = list(csv.DictReader(f))
    losses = [float(r["train/loss"]) for r in history]
    assert losses[-1] < losses[0]
    test = results["test"]
    assert test["debris_f1"] > 0 and test["tuned_f1"] > 0
    # Better than calling every pixel debris (the F1 floor of a useless detector).
    counts = results["data"]["train_pixel_counts"]
    prevalence = counts[1] / sum(counts)
    assert test["best_f1"] > 2 * prevalence / (1 + prevalence)
    with open(os.path.join(workdir, "results.json")) as f:
        on_disk = json.load(f)
    assert 0 < on_disk["test_report"]["threshold"]["chosen"] < 1
    # auto: the tiny file fits, so it trained device-resident with crops drawn in the step.
    assert on_disk["setup"]["train_read"] == "device"
    assert on_disk["setup"]["augment.where"] == "step"
    assert on_disk["setup"]["parameters"] == param_count(base_width=8)


def test_patches_gathered_on_device_equal_the_host_records(cache_dir, tmp_path):
    """The device copy (float16 standardized bands, int8 masks) gives each split's records
    as the host source and transform do; the train split repeats each patch per crop."""
    config = tiny_debris_config(cache_dir)
    task = build(config, str(tmp_path))
    data = task.device_data()
    gather = jax.jit(data.gather)
    for split, source in (("train", task.train_source), ("test", task.test_source)):
        idx = np.array([0, 1, len(source) - 1])
        host = [task.transform(source[int(i)]) for i in idx]
        got = gather(data.arrays, data.splits[split][idx])
        assert set(got) == {"image", "mask"}
        np.testing.assert_array_equal(np.asarray(got["mask"]), [r["mask"] for r in host])
        np.testing.assert_allclose(np.asarray(got["image"]), [r["image"] for r in host],
                                   rtol=1e-3, atol=1e-3)
    rows = data.splits["train"]
    assert len(rows) == len(task.train_source)
    np.testing.assert_array_equal(rows, np.tile(rows[:len(rows) // 8], 8))  # crops_per_patch


def _trained_variables(config, workdir: str) -> dict:
    """What jaxtrain.predict.load_run does (that module's absl flags clash with main's here)."""
    variables, _ = checkpoint.load_for_inference(os.path.join(workdir, "checkpoints"),
                                                 best_metric=config.early_stopping.metric,
                                                 best_mode=config.early_stopping.mode)
    return variables


def test_predict_blends_windows_and_writes_tiles(tiny_run, tmp_path):
    import tifffile

    config, workdir, _ = tiny_run
    variables = _trained_variables(config, workdir)
    rng = np.random.default_rng(0)
    tile = rng.uniform(0.0, 0.1, size=(11, 32, 80)).astype(np.float32)  # MARIDA: band-first
    tile[:, 3, 5] = np.nan
    inp = tmp_path / "in" / "patches" / "S2_1-1-20_ABC"
    inp.mkdir(parents=True)
    tifffile.imwrite(inp / "S2_1-1-20_ABC_0.tif", tile)
    tifffile.imwrite(inp / "S2_1-1-20_ABC_0_cl.tif", np.zeros((32, 80), np.uint8))  # skipped
    synthetic.generate(str(tmp_path / "in" / "more.h5"), num_patches=3, size=48)
    out = tmp_path / "out"
    summary = predict.predict(config, variables, str(tmp_path / "in"), str(out), batch_size=4)
    assert summary["inputs"] == 2 and summary["tiles"] == 4
    prob = tifffile.imread(out / "patches__S2_1-1-20_ABC__S2_1-1-20_ABC_0_prob.tif")
    mask = tifffile.imread(out / "patches__S2_1-1-20_ABC__S2_1-1-20_ABC_0_mask.tif")
    assert prob.shape == (32, 80) and mask.shape == (32, 80) and np.isfinite(prob).all()
    np.testing.assert_array_equal(mask, prob >= config.predict.threshold)
    assert np.load(out / "more_prob.npy").shape == (3, 48, 48)

    # Windows at x = 0, 24, 48 (window 32, overlap 8): where one window alone covers a pixel
    # the output is that window's direct model output; overlaps are a convex blend.
    norm = variables["model_state"]["normalization"]
    x = np.moveaxis(tile, 0, -1)
    x = np.where(np.isfinite(x), x, norm["mean"])
    x = (x - norm["mean"]) / norm["std"]
    direct = np.asarray(predict.make_predict_batch(config, variables)(  # batch 4, as above
        np.stack([x[:, s:s + 32] for s in (0, 24, 48, 0)]).astype(np.float32)))
    np.testing.assert_allclose(prob[:, :24], direct[0][:, :24], atol=1e-5)
    np.testing.assert_allclose(prob[:, 32:48], direct[1][:, 8:24], atol=1e-5)
    np.testing.assert_allclose(prob[:, 56:], direct[2][:, 8:], atol=1e-5)
    lo = np.minimum(direct[0][:, 24:32], direct[1][:, :8]) - 1e-5
    hi = np.maximum(direct[0][:, 24:32], direct[1][:, :8]) + 1e-5
    assert np.all((prob[:, 24:32] >= lo) & (prob[:, 24:32] <= hi))
    assert np.abs(prob[:, 24:32] - direct[0][:, 24:32]).max() > 0  # a real blend


def test_sliding_window_reassembles_identity():
    """With an identity "model" every blend must give back the input exactly."""
    img = np.random.default_rng(1).random((70, 101, 1)).astype(np.float32)
    out = dict(predict.sliding_window_predict(lambda b: b[..., 0], [("a", img), ("b", img[:20])],
                                             window=32, overlap=12, batch_size=5))
    np.testing.assert_allclose(out["a"], img[..., 0], atol=1e-6)
    np.testing.assert_allclose(out["b"], img[:20, :, 0], atol=1e-6)  # padded: smaller tile


def test_converted_marida_sample_builds_and_predicts(tiny_run, tmp_path):
    """A converted MARIDA tree is a training set like the synthetic one (the loop itself is
    data-agnostic and trained in `tiny_run`), and inference runs on the tree itself."""
    import tifffile

    root = marida.write_marida_sample(str(tmp_path / "marida"), num_tiles=2,
                                      patches_per_tile=3, size=64, nan_pixels=5)
    h5 = marida.convert_marida(root, str(tmp_path / "marida.h5"))
    config, workdir, _ = tiny_run
    marida_config = tiny_debris_config(config.data.cache_dir, path=h5)
    task = build(marida_config, str(tmp_path))
    assert task.data["source"] == "MARIDA" and task.data["patches"] == {
        "train": 2, "val": 2, "test": 2}
    assert len(task.train_source) // marida_config.train.batch_size == 2  # 2 x 8 crops / 8
    assert sum(task.data["train_pixel_counts"]) > 0
    with open(tmp_path / "normalization.json") as f:  # band statistics of the NaN-filled file
        norm = json.load(f)
    assert np.isfinite(norm["mean"]).all() and (np.asarray(norm["std"]) > 0).all()
    # Inference on the MARIDA tree: image tiles only, georeferencing carried over, the NaN
    # pixels of the first patch filled.
    summary = predict.predict(config, _trained_variables(config, workdir), root,
                              str(tmp_path / "pred"), batch_size=4)
    assert summary["inputs"] == summary["tiles"] == 6
    name = "patches__S2_1-12-19_48MYU__S2_1-12-19_48MYU_0_prob.tif"
    with tifffile.TiffFile(tmp_path / "pred" / name) as tf:
        assert tf.pages[0].shape == (64, 64)
        assert 33922 in tf.pages[0].tags  # ModelTiepoint copied from the input
        assert np.isfinite(tf.asarray()).all()

"""The violence system: video reading, extraction cache, model size, loss, and a tiny run
from an RWF-2000-layout folder (with a corrupt, an empty and a too-short video) through
training to predict."""

import csv
import os
import subprocess
import sys

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import violence as violence_config
from jaxtrain import config_checks
from jaxtrain.tasks.violence import features, synthetic, video
from jaxtrain.tasks.violence.checks import validate
from jaxtrain.tasks.violence.loss import (
    balanced_class_weights,
    focal_loss_per_clip,
    violence_loss,
)
from jaxtrain.tasks.violence.model import LSTMAttention, count_parameters
from jaxtrain.tasks.violence.task import FRAME_INPUTS, frame_inputs, reverse_time

NUM_FRAMES = 8


def test_parameter_count_matches_keras():
    """The seed's Keras model: 2,503,874 parameters, 2,502,338 trainable (4096-d input)."""
    variables = jax.eval_shape(lambda: LSTMAttention().init(
        jax.random.key(0), jnp.zeros((1, 20, 4096))))
    assert count_parameters(variables) == (2_503_874, 2_502_338)
    # The default reads size and sign of each change side by side: 8192-d, the first
    # LSTM's input kernel twice as wide.
    variables = jax.eval_shape(lambda: LSTMAttention().init(
        jax.random.key(0), jnp.zeros((1, 20, 8192))))
    assert count_parameters(variables) == (2_503_874 + 4096 * 512, 2_502_338 + 4096 * 512)


def test_frame_indices():
    np.testing.assert_array_equal(video.frame_indices(150, 20)[:4], [0, 7, 15, 23])
    assert video.frame_indices(150, 20)[-1] == 149
    np.testing.assert_array_equal(video.frame_indices(3, 5), [0, 0, 1, 1, 2])  # repeats
    with pytest.raises(ValueError):
        video.frame_indices(0, 20)


def test_focal_loss_matches_formula():
    logits = np.array([[2.0, -1.0], [0.3, 0.9], [-1.5, 1.0]], np.float32)
    labels = np.array([0, 1, 0])
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = np.eye(2)[labels] * 0.9 + 0.05
    expected = (0.25 * (1 - p) ** 2 * -y * np.log(p)).sum(1)
    got = np.asarray(focal_loss_per_clip(jnp.asarray(logits), jnp.asarray(labels)))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    w = balanced_class_weights(labels)
    np.testing.assert_allclose(w, [3 / 4, 3 / 2])  # n / (2 * count), sklearn 'balanced'
    total = violence_loss(jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(w),
                          alpha=0.25, gamma=2.0, label_smoothing=0.1)
    np.testing.assert_allclose(float(total), np.mean(w[labels] * expected), rtol=1e-5)


def test_frame_inputs_and_time_reversal():
    """What the LSTM reads: features, centred per clip, frame-to-frame changes (zero at the
    first frame) or their size, the same from numpy (statistics) and jax (the step); time
    reversal flips whole clips."""
    x = np.random.default_rng(0).normal(size=(3, 5, 4)).astype(np.float32)
    change = np.diff(x, axis=1)
    want = {"features": x, "centred": x - x.mean(1, keepdims=True),
            "differences": np.concatenate([np.zeros_like(x[:, :1]), change], 1),
            "motion": np.abs(np.concatenate([change[:, :1], change], 1))}
    want["motion_and_differences"] = np.concatenate([want["motion"], want["differences"]], -1)
    assert set(FRAME_INPUTS) == set(want)
    for kind in FRAME_INPUTS:
        np.testing.assert_allclose(frame_inputs(x, kind), want[kind], atol=1e-6)
        traced = jax.jit(frame_inputs, static_argnums=1)(jnp.asarray(x), kind)
        np.testing.assert_allclose(np.asarray(traced), want[kind], atol=1e-6)
    flipped = np.asarray(reverse_time(jnp.asarray(x), jax.random.key(0), 1.0))
    np.testing.assert_array_equal(flipped, x[:, ::-1])
    np.testing.assert_array_equal(np.asarray(reverse_time(jnp.asarray(x), jax.random.key(0),
                                                          0.0)), x)
    some = np.asarray(reverse_time(jnp.asarray(np.repeat(x, 20, 0)), jax.random.key(1), 0.5))
    flips = [np.array_equal(c, r[::-1]) for c, r in zip(some, np.repeat(x, 20, 0), strict=True)]
    assert 10 < sum(flips) < 50  # about half of 60 clips


def test_validate_rejects_bad_values():
    validate(violence_config.get_config())
    validate(violence_config.get_config("seed"))
    for key, value in (("data.layout", "ucf"), ("encoder.grid", 3), ("data.num_frames", 1),
                       ("loss.class_weights", "inverse"), ("encoder.input_size", 64),
                       ("data.frame_inputs", "deltas"), ("data.reverse_prob", 1.5)):
        c = violence_config.get_config("seed" if key == "encoder.input_size" else None)
        parent, _, leaf = key.rpartition(".")
        c[parent][leaf] = value  # (encoder.input_size 64 with fc2: fc1 needs 224)
        with pytest.raises(config_checks.ConfigValueError, match=key.replace(".", r"\.")):
            validate(c)


def tiny_config(root: str, cache_dir: str):
    c = violence_config.get_config()
    c.data.path = root
    c.data.cache_dir = cache_dir
    c.data.num_frames = NUM_FRAMES
    c.data.min_frames = NUM_FRAMES
    c.data.val_fraction = 0.25
    c.data.decode_workers = 0
    c.encoder.update(output="block1_pool", grid=2, input_size=32, batch_frames=64,
                     batch_clips=4)
    c.model.update(lstm_units=8, lstm_layers=1, dense=(8,), dense_batchnorm=1)
    c.train.update(batch_size=8, eval_batch_size=8, epochs=1, log_every_s=100.0, report=False)
    c.optim.warmup_epochs = 0.5
    return c


@pytest.fixture(scope="session")
def rwf_tree(tmp_path_factory) -> str:
    """A small RWF-2000 folder written by the generator, plus three bad videos."""
    root = str(tmp_path_factory.mktemp("rwf") / "RWF-mini")
    synthetic.generate(root, clips=(16, 8), fight_fraction=0.5, size=32, frames=(10, 14),
                       fps=15, seed=1, layout="rwf2000")
    with open(os.path.join(root, "train", "Fight", "corrupt.avi"), "wb") as f:
        f.write(b"RIFF\x00\x00\x00\x00AVI " + np.random.default_rng(0).bytes(3000))
    open(os.path.join(root, "val", "NonFight", "empty.avi"), "wb").close()
    short = synthetic.render_clip(np.random.default_rng(2), "walk", 32, 3)
    synthetic.write_video(os.path.join(root, "train", "NonFight", "short.avi"), short, 15,
                          100_000)
    return root


def test_read_frames_and_bad_videos(rwf_tree):
    clip = sorted(os.listdir(os.path.join(rwf_tree, "train", "Fight")))[-1]
    path = os.path.join(rwf_tree, "train", "Fight", clip)
    info = video.probe(path)
    assert 10 <= info.frames <= 14 and info.fps == 15 and info.width == 32
    frames = video.read_frames(path, NUM_FRAMES, 24)
    assert frames.shape == (NUM_FRAMES, 24, 24, 3) and frames.dtype == np.uint8
    for name, pattern in (("train/Fight/corrupt.avi",
                           "not a readable video|cannot decode|no video stream"),
                          ("val/NonFight/empty.avi", "empty file"),
                          ("train/NonFight/short.avi", "3 decodable frames")):
        with pytest.raises(video.VideoError, match=pattern):
            video.read_frames(os.path.join(rwf_tree, name), NUM_FRAMES, 24,
                              min_frames=NUM_FRAMES)


def test_extract_counts_bad_videos_resumes_and_invalidates(rwf_tree, tmp_path, monkeypatch):
    c = tiny_config(rwf_tree, str(tmp_path))
    c.data.decode_workers = 1  # the spawned-worker path
    path = features.extract(c, rwf_tree)
    feats = features.load(path)
    assert sorted(feats.errors) == ["train/Fight/corrupt.avi", "train/NonFight/short.avi",
                                    "val/NonFight/empty.avi"]
    assert len(feats.names) == 24 and feats.features.shape == (24, NUM_FRAMES, 256)
    assert feats.features.dtype == np.float16 and np.isfinite(feats.features).all()
    # A rerun finds every clip done and never builds an encoder.
    monkeypatch.setattr(features.encoder_lib, "make_encoder", lambda *_: pytest.fail("re-ran"))
    assert features.extract(c, rwf_tree) == path
    # ... also while another run reads it (HDF5 refuses a writer then: the cache is neither
    # deleted nor extracted again, as it was when two seeds started side by side).
    reader = subprocess.Popen([sys.executable, "-c", "import h5py, sys, time; "
                               "f = h5py.File(sys.argv[1], 'r'); print('open', flush=True); "
                               "time.sleep(60)", path], stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().strip() == "open"
        assert features.extract(c, rwf_tree) == path
    finally:
        reader.kill()
        reader.wait()
    monkeypatch.undo()
    # An interrupted extraction resumes: only the clips not marked done are encoded.
    with h5py.File(path, "a") as f:
        f["done"][:3] = False
        f["features"][:3] = 0
    features.extract(c, rwf_tree)
    np.testing.assert_array_equal(features.load(path).features, feats.features)
    # Another encoder seed is another identity: the same cache file is rebuilt.
    c.data.feature_cache = path
    c.encoder.seed = 1
    features.extract(c, rwf_tree)
    with h5py.File(path) as f:
        assert '"random-he-normal-seed1"' in f.attrs["encoder"]
    assert not np.array_equal(features.load(path).features, feats.features)


def test_train_and_predict_end_to_end(rwf_tree, tmp_path):
    from jaxtrain import main
    from jaxtrain import predict as predict_lib

    c = tiny_config(rwf_tree, str(tmp_path / "cache"))
    results = main.run(c, str(tmp_path / "run"))
    assert results["data"]["clips"] == {"train": 12, "val": 4, "test": 8}
    assert len(results["data"]["videos_left_out"]) == 3
    for key in ("accuracy", "violent_f1", "roc_auc", "loss"):
        assert key in results["test"]
    assert results["test_report"]["confusion_matrix"] and "accuracy" in results["baseline"]
    with open(results["test_clips"]) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8
    assert abs(sum(float(rows[0][f"attention_{k}"]) for k in range(NUM_FRAMES)) - 1) < 1e-3
    out = str(tmp_path / "pred.csv")
    summary = predict_lib.predict(str(tmp_path / "run"), os.path.join(rwf_tree, "val"), out)
    assert summary["videos"] == 9 and summary["errors"] == 1
    with open(out) as f:
        rows = {os.path.basename(r["video"]): r for r in csv.DictReader(f)}
    assert "empty file" in rows["empty.avi"]["error"] and not rows["empty.avi"]["prob_violent"]
    ok = [r for r in rows.values() if not r["error"]]
    assert all(0 <= float(r["prob_violent"]) <= 1 and len(r["top_frames"].split()) == 3
               for r in ok)
    threshold = c.predict.threshold  # the decision is the written probability's
    assert all(r["decision"] == ("violent" if float(r["prob_violent"]) >= threshold
                                 else "nonviolent") for r in ok)

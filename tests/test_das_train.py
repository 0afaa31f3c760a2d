"""DAS system end to end on tiny configs: models, window source, training, plots, inference."""

import csv
import json
import os
import pickle
import shutil
import subprocess
import sys

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxtrain import main, plots
from jaxtrain.tasks.das.evaluation import aggregate_files, file_decision
from jaxtrain.tasks.das.labels import load_labels, window_labels
from jaxtrain.tasks.das.model import build_model
from jaxtrain.tasks.das.reader import list_recordings, open_recording
from jaxtrain.tasks.das.schema import CLASS_NAMES, NOISE
from jaxtrain.tasks.das.synthetic import generate
from jaxtrain.tasks.das.task import build
from jaxtrain.tasks.das.windows import DASWindowSource, build_window_index, window_device_data
from tests.fire_test_config import ROOT, load_config

CHANNELS, WINDOW = 8, 256


def tiny_das_config(cache_dir: str, model: str = "tcn", **train):
    c = load_config("das", model)
    c.data.cache_dir = cache_dir
    c.data.num_files = 15  # 6 earthquake, 6 blast, 3 noise files: each class in each split
    c.data.duration_s = 20.0
    c.data.num_channels = CHANNELS
    c.data.window = WINDOW  # ~1 s
    c.data.stride = 128
    c.data.eval_stride = 128
    c.data.min_event_overlap_s = 0.5
    if model == "tcn":
        c.model.update(width=16, dilations=(1, 2, 4))
    elif model == "bilstm":
        c.model.update(hidden=16, stem_width=16)
    else:
        c.model.update(patch_size=16, d_model=32, num_heads=2, num_layers=1, d_ff=64)
    c.train.batch_size = 16
    c.train.eval_batch_size = 64
    c.train.epochs = 3
    c.train.log_every_s = 1000.0
    c.train.report = False  # report.html is tested in test_report.py
    c.optim.learning_rate = 3e-3
    c.train.update(train)
    return c


def _numpy_params(shapes):
    """Random parameters of the given shapes, drawn with numpy: a model's own init compiles
    one threefry draw per weight (seconds each on CPU), and these tests need only values."""
    rng = np.random.default_rng(0)
    return jax.tree.map(lambda s: jnp.asarray(
        rng.normal(size=s.shape) / np.sqrt(max(1, np.prod(s.shape[:-1]))), s.dtype), shapes)


# ----------------------------------------------------------------------------- models
@pytest.mark.parametrize("name,low,high", [("tcn", 30_000, 80_000), ("bilstm", 20_000, 60_000),
                                           ("transformer", 100_000, 300_000)])
def test_default_models_shapes_and_sizes(name, low, high):
    config = load_config("das", name)
    model = build_model(config)
    full = jax.ShapeDtypeStruct((1, 64, 1024), jnp.float32)  # the default window, shapes only
    shapes = jax.eval_shape(lambda x: model.init({"params": jax.random.key(0)}, x), full)
    n = sum(p.size for p in jax.tree.leaves(shapes["params"]))
    assert low <= n <= high, n  # small enough for 2 CPU cores, not trivially small
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 64, 256)), jnp.float32)
    params = _numpy_params(jax.eval_shape(
        lambda: model.init({"params": jax.random.key(0)}, x[:1]))["params"])
    apply = jax.jit(model.apply, static_argnames="train")
    logits = apply({"params": params}, x)
    assert logits.shape == (2, 3) and logits.dtype == jnp.float32
    assert np.isfinite(np.asarray(logits)).all()
    assert not np.allclose(logits[0], logits[1])  # not constant in its input
    # dropout is active in training mode only
    train_out = apply({"params": params}, x, train=True, rngs={"dropout": jax.random.key(1)})
    assert not np.allclose(train_out, logits)
    config.train.compute_dtype = "bfloat16"
    out16 = jax.eval_shape(build_model(config).apply, {"params": params}, x)
    assert out16.dtype == jnp.float32  # logits upcast whatever the compute dtype


def test_unknown_model_is_rejected():
    config = load_config("das", "tcn")
    config.model.name = "cnn"
    with pytest.raises(ValueError, match="cnn"):
        build_model(config)
    with pytest.raises(ValueError, match="gru"):
        load_config("das", "gru")


@pytest.mark.parametrize("where", ["step", "host"])
def test_augmentation_runs_where_configured(where, cache_dir, tmp_path):
    config = tiny_das_config(cache_dir)
    config.augment.where = where
    config.data.on_device = "never"  # resident data are always augmented in the step
    config.data.stream = "windows"  # so are streamed blocks (tests/test_das_stream.py)
    config.model.dropout = 0.0  # the key then only drives the augmentation
    task = build(config, str(tmp_path))
    assert (task.random_transform is None) == (where == "step")
    records = [task.transform(task.train_source[i]) for i in range(8)]
    batch = {k: jnp.stack([r[k] for r in records]) for k in records[0]}
    params, model_state = jax.eval_shape(task.init_fn, jax.random.key(0))
    params = _numpy_params(params)
    loss = jax.jit(task.loss_fn)
    a, b = (float(loss(params, model_state, batch, jax.random.key(k))[0]) for k in (1, 2))
    assert np.isfinite(a) and np.isfinite(b)
    assert (a != b) == (where == "step")  # host path: the batch came in already augmented
    assert task.choices["augment.where"] == where
    config.augment.where = "gpu"
    with pytest.raises(ValueError, match=r"augment\.where"):
        build(config, str(tmp_path))


# ----------------------------------------------------------------------------- data
@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("das_src")
    generate(root, num_files=4, duration_s=16, num_channels=CHANNELS, seed=2)
    return root


def test_window_source_records_labels_and_pickling(tiny_dir, tmp_path):
    files = list_recordings(tiny_dir)
    index = build_window_index(files, "jaxtrain", WINDOW, 128, cache_path=tmp_path / "idx.npz")
    labels = load_labels(tiny_dir)
    src = DASWindowSource(files, index, window=WINDOW, max_open_files=2,
                          labels=window_labels(index, files, labels, WINDOW, 250.0))
    assert len(src) == 4 * ((16 * 250 - WINDOW) // 128 + 1)
    r = src[7]
    assert r["x"].shape == (CHANNELS, WINDOW) and r["x"].dtype == np.float32
    assert r["label"].dtype == np.int32 and r["file"].dtype == np.int32
    assert r["start"].dtype == np.int64 and int(r["start"]) == int(src.index[7, 1])
    live = r["x"].std(-1) > 0
    np.testing.assert_allclose(r["x"][live].std(-1), 1.0, rtol=1e-3)  # normalized
    for i in range(len(src)):  # more files than handles: the LRU closes and reopens
        src[i]
    assert len(src._recordings) == 2
    clone = pickle.loads(pickle.dumps(src))
    assert len(clone._recordings) == 0
    np.testing.assert_array_equal(clone[5]["x"], src[5]["x"])
    # window labels follow the events: event windows overlap [first_arrival, end]
    for f, path in enumerate(src.files):
        entry = labels[os.path.basename(path)]
        mine = src.labels[src.index[:, 0] == f]
        if entry["label"] == "noise":
            assert (mine == NOISE).all()
            continue
        assert (mine == CLASS_NAMES.index(entry["label"])).any()
        starts = src.index[src.index[:, 0] == f, 1] / 250.0
        for s, lab in zip(starts, mine, strict=True):
            overlap = max(min(s + WINDOW / 250, ev["end_s"]) - max(s, ev["first_arrival_s"])
                          for ev in entry["events"])
            assert (lab != NOISE) == (overlap >= 1.0), (s, lab, overlap)


@pytest.mark.parametrize("dtype", ["int16", "float32"])
def test_windows_gathered_on_device_equal_the_host_records(dtype, tmp_path):
    """Resident recordings (int16 counts exact, float files as float16 over each channel's
    peak): the step's windows are the host source's, scaled and normalized."""
    generate(tmp_path, num_files=3, duration_s=8, num_channels=CHANNELS, seed=1, dtype=dtype)
    files = list_recordings(tmp_path)
    index = build_window_index(files, "jaxtrain", WINDOW, 100)
    with h5py.File(files[1], "r+") as f:  # a dead channel stays zeros, not NaN
        f["strain_rate"][:, 3] = 0
    splits = {"a": DASWindowSource(files, index[::2], window=WINDOW,
                                   labels=np.arange(len(index[::2])) % 3),
              "b": DASWindowSource(files, index[1::2], window=WINDOW)}
    data = window_device_data(splits)
    assert data.arrays["series"].dtype == (np.int16 if dtype == "int16" else np.float16)
    assert data.nbytes < 2 * 3 * 8 * 250 * CHANNELS + 12 * len(index) + 200
    gather = jax.jit(data.gather)
    for name, src in splits.items():
        idx = np.arange(len(src))
        got = gather(data.arrays, data.splits[name][idx])
        host = [src[i] for i in idx]
        np.testing.assert_array_equal(got["label"], [r["label"] for r in host])
        np.testing.assert_array_equal(got["file"], [r["file"] for r in host])
        tol = 1e-4 if dtype == "int16" else 3e-3  # float32 sums; float16 storage
        np.testing.assert_allclose(got["x"], np.stack([r["x"] for r in host]), atol=tol)
        assert not np.asarray(got["x"])[np.asarray(got["file"]) == 1, 3].any()


def test_file_decision_rule():
    noise_only = np.array([[0.1, 0.1, 0.8], [0.2, 0.1, 0.7]])
    assert file_decision(noise_only)[0] == NOISE
    blast = np.array([[0.05, 0.05, 0.9], [0.2, 0.7, 0.1], [0.1, 0.5, 0.4], [0.3, 0.1, 0.6]])
    decision, scores = file_decision(blast)
    assert decision == 1 and scores.argmax() == 1 and scores.sum() == pytest.approx(1.0)
    assert file_decision(blast, event_threshold=0.95)[0] == NOISE
    ids, dec, _ = aggregate_files(np.array([3, 3, 0, 0]), np.concatenate(
        [noise_only, blast[1:3]])[[2, 3, 0, 1]])
    assert ids.tolist() == [0, 3] and dec.tolist() == [NOISE, 1]


def test_confusion_png_is_valid(tmp_path):
    path = plots.confusion_matrix_png(tmp_path / "cm.png", np.array([[3, 1], [0, 4]]),
                                      ["earthquake", "quarry_blast"], "test")
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError):
        plots.confusion_matrix_png(tmp_path / "x.png", np.eye(3), ["a", "b"])


# ----------------------------------------------------------------------------- training
def _history(workdir):
    with open(os.path.join(workdir, "history.csv")) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def tcn_run(tmp_path_factory, cache_dir):
    workdir = str(tmp_path_factory.mktemp("das_tcn"))
    results = main.run(tiny_das_config(cache_dir, "tcn"), workdir)
    return workdir, results


def _check_learned(workdir, results):
    history = _history(workdir)
    losses = [float(r["train/loss"]) for r in history]
    assert losses[-1] < losses[0], losses
    test = results["test"]
    print("learned:", {k: test[k] for k in ("accuracy", "macro_f1", "file_accuracy")}, losses)
    counts = np.array(results["data"]["train_window_label_counts"])
    # always answering "noise" has macro F1 = F1(noise) / 3 < 0.33
    assert test["macro_f1"] > 0.45, test
    assert 0.0 <= test["file_accuracy"] <= 1.0
    assert counts[NOISE] == counts.max()


def test_tcn_learns_and_writes_report_and_png(tcn_run):
    workdir, results = tcn_run
    _check_learned(workdir, results)
    with open(os.path.join(workdir, "results.json")) as f:
        on_disk = json.load(f)
    report = on_disk["test_report"]
    assert np.array(report["window"]["confusion_matrix"]).shape == (3, 3)
    file_cm = np.array(report["file"]["confusion_matrix"])
    assert file_cm.sum() == len(on_disk["data"]["splits"]["test"]) == len(report["files"])
    assert on_disk["test"]["file_accuracy"] == pytest.approx(np.trace(file_cm) / file_cm.sum())
    assert set(on_disk["test"]) >= {"file_accuracy", "file_macro_f1", "roc_auc_ovr",
                                    "earthquake_precision", "file_quarry_blast_recall"}
    from jaxtrain.report import build_report

    build_report(workdir)  # both confusion matrices, per file and per window, on the page
    for name in ("confusion_file.png", "confusion_window.png"):
        with open(os.path.join(workdir, "report", name), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    splits = on_disk["data"]["splits"]
    assert not set(splits["train"]) & set(splits["test"])  # whole files per split
    assert {row["true"] for row in report["files"]} == set(CLASS_NAMES)  # each class tested
    assert on_disk["setup"]["model"] == "tcn" and on_disk["setup"]["augment.where"] == "step"
    assert on_disk["setup"]["train_read"] == "device"  # auto: the tiny recordings fit
    assert on_disk["headline"][:2] == ["file_accuracy", "file_macro_f1"]


@pytest.mark.parametrize("model", ["bilstm", "transformer"])
def test_other_models_learn(model, tmp_path, cache_dir):
    results = main.run(tiny_das_config(cache_dir, model), str(tmp_path))
    _check_learned(str(tmp_path), results)


# ----------------------------------------------------------------------------- inference
def _predict_cli(workdir, input_path, output):
    return subprocess.run([sys.executable, "-m", "jaxtrain.predict", f"--workdir={workdir}",
                           f"--input={input_path}", f"--output={output}", "--batch_size=8"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"})


def test_predict_cli_reports_bad_files_and_predicts_good_ones(tcn_run, tmp_path):
    workdir, results = tcn_run
    data_dir = results["data"]["path"]
    good_name = results["data"]["splits"]["test"][0]
    inputs = tmp_path / "new"
    inputs.mkdir()
    good = shutil.copy(os.path.join(data_dir, good_name), inputs / "a_good.h5")
    x = open_recording(good).read(0, 3000).T.copy()
    x[1500, 2] = np.nan
    with h5py.File(inputs / "b_nan.h5", "w") as f:  # right layout, float32, one NaN
        f.attrs["sampling_rate_hz"] = 250.0
        f["strain_rate"] = x
    with h5py.File(inputs / "c_layout.h5", "w") as f:  # another vendor's tree
        f.create_group("Acquisition").create_dataset("RawData", data=x[:, :4])
    (inputs / "notes.txt").write_text("ignored: not .h5")
    out = tmp_path / "preds.csv"
    r = _predict_cli(workdir, inputs, out)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Metadata file does not exist" not in r.stderr, r.stderr  # orbax's, when reading
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["files"] == 3 and summary["processed"] == 1 and len(summary["errors"]) == 2
    with open(out) as f:
        rows = {os.path.basename(row["file"]): row for row in csv.DictReader(f)}
    assert rows["a_good.h5"]["status"] == "ok"
    assert rows["a_good.h5"]["prediction"] in CLASS_NAMES
    assert rows["b_nan.h5"]["status"] == "error" and "b_nan.h5" in rows["b_nan.h5"]["error"]
    assert "sample 1500" in rows["b_nan.h5"]["error"]
    assert rows["c_layout.h5"]["status"] == "error"
    assert "strain_rate" in rows["c_layout.h5"]["error"]
    with open(tmp_path / "preds.windows.csv") as f:
        windows = list(csv.DictReader(f))
    n_samples = open_recording(good).num_samples
    assert len(windows) == int(rows["a_good.h5"]["num_windows"]) == (n_samples - WINDOW) // 128 + 1
    assert {os.path.basename(w["file"]) for w in windows} == {"a_good.h5"}
    probs = np.array([[float(w[f"p_{c}"]) for c in CLASS_NAMES] for w in windows])
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-4)
    decision, _ = file_decision(probs)
    assert rows["a_good.h5"]["prediction"] == CLASS_NAMES[decision]
    # streamed block reads give the decision the training run's test pass gave this file
    tested = {row["file"]: row for row in results["test_report"]["files"]}[good_name]
    assert rows["a_good.h5"]["prediction"] == tested["predicted"]

    only_bad = tmp_path / "bad_only"
    only_bad.mkdir()
    shutil.copy(inputs / "b_nan.h5", only_bad)
    r = _predict_cli(workdir, only_bad, tmp_path / "bad.csv")
    assert r.returncode == 2
    assert "no file could be processed" in r.stderr and "b_nan.h5" in r.stderr
    with open(tmp_path / "bad.csv") as f:
        assert [row["status"] for row in csv.DictReader(f)] == ["error"]

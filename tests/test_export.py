"""Versioned export: bundles in a local directory and on a real S3-compatible server (moto's,
on localhost), two versions each, never overwritten; predictions from a bundle equal the
run's own."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from jaxtrain import export, run_files
from jaxtrain.predict import predict
from jaxtrain.tasks.fire.synthetic import generate
from tests.fire_test_config import ROOT


@pytest.fixture(scope="module")
def new_log(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("export_log") / "new.h5")
    generate(path, samples_per_area=300, num_areas=3, seed=21)
    return path


@pytest.fixture(scope="module")
def workdir_predictions(fire_ensemble_run, new_log, tmp_path_factory):
    out = tmp_path_factory.mktemp("export_pred") / "from_workdir.csv"
    summary = predict(fire_ensemble_run[1], new_log, str(out))
    return summary, out.read_text()


def _same_predictions(bundle, new_log, tmp_path, workdir_predictions):
    summary, text = workdir_predictions
    out = tmp_path / "from_bundle.csv"
    got = predict(bundle, new_log, str(out))
    assert out.read_text() == text  # every window, class, probability and member column
    assert got["combination"] == summary["combination"]
    assert got["checkpoint_step"] == summary["checkpoint_step"]


def test_variables_round_trip(tmp_path):
    variables = {"params": {"dense": {"kernel": np.arange(6.0).reshape(2, 3),
                                      "bias": np.zeros(3, np.float32)}, "scale": np.ones(2)},
                 "model_state": {}}
    run_files.save_variables(str(tmp_path / "v.npz"), variables)
    back = run_files.load_variables(str(tmp_path / "v.npz"))
    assert back["model_state"] == {}
    np.testing.assert_array_equal(back["params"]["dense"]["kernel"],
                                  variables["params"]["dense"]["kernel"])
    assert back["params"]["dense"]["bias"].dtype == np.float32


def test_local_export_two_versions(fire_ensemble_run, new_log, tmp_path, workdir_predictions):
    _, workdir, results = fire_ensemble_run
    to = tmp_path / "models"
    r = subprocess.run([sys.executable, "-m", "jaxtrain.export", f"--workdir={workdir}",
                        f"--to={to}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "Metadata file does not exist" not in r.stderr, r.stderr  # orbax's, when reading
    first = json.loads(r.stdout.strip().splitlines()[-1])
    second = export.export(workdir, str(to))
    assert first["version"] != second["version"]
    assert export.store(str(to)).versions() == sorted([first["version"], second["version"]])
    bundle = first["url"]
    with open(os.path.join(bundle, run_files.METADATA)) as f:
        meta = json.load(f)
    chosen = results["ensemble"]["chosen"]
    assert meta["deployed"] == chosen
    assert meta["test"] == results["ensemble"]["models"][chosen]["test"]
    assert meta["target_achieved"] == (meta["test"]["accuracy"] >= 0.95)
    assert meta["target"] == {"metric": "accuracy", "threshold": 0.95,
                              "value": meta["test"]["accuracy"]}
    assert meta["versions"]["libraries"]["scikit-learn"] and meta["versions"]["python"]
    assert meta["models"] == ["transformer", "random_forest", "gradient_boosting",
                              "hard_vote", "soft_vote"]
    for name in ("variables.npz", "config.json", "normalization.json",
                 "ensemble/ensemble.json", "ensemble/random_forest.joblib"):
        assert name in meta["files"]
    assert not os.path.exists(os.path.join(bundle, "checkpoints"))
    _same_predictions(bundle, new_log, tmp_path, workdir_predictions)


def test_export_refuses_an_unfinished_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="export a finished run"):
        export.export(str(tmp_path), str(tmp_path / "models"))
    with pytest.raises(ValueError, match="expected a local directory"):
        export.store("ftp://host/x")


@pytest.fixture
def s3_server(monkeypatch):
    """moto's S3 server on a free localhost port, reached through the AWS_* variables."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    for key, value in {"AWS_ENDPOINT_URL": f"http://{host}:{port}",
                       "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    try:
        yield
    finally:
        server.stop()


def test_s3_export_two_versions(fire_ensemble_run, new_log, tmp_path, workdir_predictions,
                                s3_server):
    import boto3

    _, workdir, _ = fire_ensemble_run
    boto3.client("s3").create_bucket(Bucket="models")
    first = export.export(workdir, "s3://models/fire/prod")
    second = export.export(workdir, "s3://models/fire/prod")
    assert first["url"] == f"s3://models/fire/prod/{first['version']}"
    assert first["version"] != second["version"]
    assert export.store("s3://models/fire/prod").versions() == sorted(
        [first["version"], second["version"]])
    _same_predictions(first["url"], new_log, tmp_path, workdir_predictions)
    with pytest.raises(OSError, match="s3://missing-bucket"):
        export.export(workdir, "s3://missing-bucket/x")

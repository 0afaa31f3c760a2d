"""`--config` by name or by path (jaxtrain.config_files), its errors, `jaxtrain --help`."""

import os
import subprocess
import sys

import pytest

from jaxtrain import config_files
from jaxtrain.config_files import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cli(*args, cwd):
    """`python -m jaxtrain.main ARGS` run from `cwd` (outside the checkout in these tests)."""
    return subprocess.run([sys.executable, "-m", "jaxtrain.main", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_shipped_configs_are_the_checkouts_configs():
    assert {"das", "debris", "fire"} <= set(config_files.names())
    for name in config_files.names():
        assert os.path.isfile(os.path.join(ROOT, "configs", f"{name}.py"))


def test_a_name_loads_the_same_config_as_its_path():
    for spec in ("fire", "das", "das:bilstm", "debris:seed"):
        name, _, variant = spec.partition(":")
        path = os.path.join(ROOT, "configs", f"{name}.py") + (f":{variant}" if variant else "")
        assert config_files.load(spec).to_dict() == config_files.load(path).to_dict()
    assert config_files.load("das").model.name == "tcn"
    assert config_files.load("das:transformer").model.name == "transformer"


def test_every_shipped_config_declares_its_variants_and_each_loads():
    for name in config_files.names():
        module = config_files.load_module(config_files.find(name))
        assert config_files.variants(module) is not None, f"configs/{name}.py lacks VARIANTS"
        for spec in (name, *(f"{name}:{v}" for v in config_files.variants(module))):
            assert config_files.load(spec).task, spec
    assert config_files.variants(config_files.load_module(config_files.find("das"))) == (
        "tcn", "bilstm", "transformer")


@pytest.fixture
def bad_configs(tmp_path):
    (tmp_path / "syntax.py").write_text("def get_config(:\n    pass\n")
    (tmp_path / "empty.py").write_text("X = 1\n")
    (tmp_path / "plain_dict.py").write_text("def get_config():\n    return {'a': 1}\n")
    return tmp_path


@pytest.mark.parametrize("spec, message", [
    ("nope", "unknown config 'nope'; known: das, debris, fire"),
    ("{tmp}/missing.py", "config file {tmp}/missing.py not found"),
    ("{tmp}", "config {tmp} is a directory, not a config file"),
    ("{tmp}/syntax.py", "config file {tmp}/syntax.py, line 1: invalid syntax"),
    ("{tmp}/empty.py", "has no get_config()"),
    ("{tmp}/plain_dict.py", "returned dict, not a ConfigDict"),
    ("das:foo", "unknown variant 'foo' of config das; known: tcn, bilstm, transformer"),
    ("fire:foo", "unknown variant 'foo' of config fire; it has no variants"),
    ("{root}/configs/debris.py:foo", "unknown variant 'foo' of config {root}/configs/debris.py"),
])
def test_config_errors_are_one_line(bad_configs, spec, message):
    spec, message = (s.format(tmp=bad_configs, root=ROOT) for s in (spec, message))
    with pytest.raises(ConfigError) as e:
        config_files.load(spec)
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("spec, message", [
    ("nope", "unknown config 'nope'"),
    ("configs/missing.py", "config file configs/missing.py not found"),
    (".", "config . is a directory"),
    ("syntax.py", "config file syntax.py, line 1: invalid syntax"),
    ("{root}/configs/das.py:foo", "unknown variant 'foo' of config {root}/configs/das.py"),
])
def test_cli_config_errors_end_in_one_line_with_status_2(bad_configs, spec, message):
    spec, message = (s.format(root=ROOT) for s in (spec, message))
    r = _cli(f"--config={spec}", f"--workdir={bad_configs / 'run'}", "--config.seed=1",
             cwd=bad_configs)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip()], r.stderr  # one line, no trace
    assert r.stderr.startswith("jaxtrain: error: ") and message in r.stderr, r.stderr
    assert not (bad_configs / "run").exists()


def test_cli_flag_mistakes_end_in_one_line_with_status_2(tmp_path):
    for args, message in [((), "--config is required"),
                          (("--config=fire",), "--workdir is required"),
                          (("--config=fire", f"--workdir={tmp_path}", "--bogus"), "bogus"),
                          (("--config=fire", f"--workdir={tmp_path}", "--config.seed=x"),
                           "--config.seed=x")]:
        r = _cli(*args, cwd=tmp_path)
        assert r.returncode == 2, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and message in r.stderr, r.stderr


def test_help_lists_configs_variants_and_commands(tmp_path):
    r = _cli("--help", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for text in ("jaxtrain trains", "das:tcn", "das:bilstm", "das:transformer", "debris:seed",
                 f"--config={config_files.names()[0]} --workdir=", "Resume", "same --workdir",
                 "jaxtrain predict --workdir=", "--config ", "--workdir ", "--train_further ",
                 "jaxtrain config --config="):
        assert text in r.stdout, text
    for name in config_files.names():
        assert f"\n  {name} " in r.stdout, name


def _command(*args, cwd):
    """`python -m jaxtrain ARGS`: the `jaxtrain` command (jaxtrain.command)."""
    return subprocess.run([sys.executable, "-m", "jaxtrain", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_the_jaxtrain_command_has_version_config_and_subcommands(tmp_path):
    import json

    r = _command("--version", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith("jaxtrain "), r.stderr
    r = _command("config", "--config=fire", "--config.train.epochs=3", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    printed = json.loads(r.stdout)
    assert printed["task"] == "fire" and printed["train"]["epochs"] == 3
    assert printed == json.loads(config_files.load("fire").to_json_best_effort()) | {
        "train": printed["train"]}
    r = _command("config", "--config=fire", "--config.train.epochs=0", cwd=tmp_path)
    assert r.returncode == 2 and "config.train.epochs=0" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    for command, message in (("predict", "--workdir is required"),
                             ("export", "--workdir is required")):
        r = _command(command, cwd=tmp_path)
        assert r.returncode == 2 and message in r.stderr, (command, r.stderr)
    for command in ("predict", "evaluate", "export", "report"):
        r = _command(command, "--help", cwd=tmp_path)
        assert r.returncode == 0 and "--workdir " in r.stdout, (command, r.stdout, r.stderr)
        assert "--helpfull" in r.stdout and not r.stderr.strip(), (command, r.stderr)
    r = _command("--config=fire", cwd=tmp_path)  # no subcommand: train, as before
    assert r.returncode == 2 and "--workdir is required" in r.stderr, r.stderr
    assert not any(tmp_path.iterdir())  # nothing written by any of them

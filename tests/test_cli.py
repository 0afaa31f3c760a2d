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
    for args, message in [((), "--config must have a value"),
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
                 "--config=fire --workdir=", "Resume", "same --workdir",
                 "python -m jaxtrain.predict --workdir=", "--config ", "--workdir "):
        assert text in r.stdout, text
    for name in config_files.names():
        assert f"\n  {name} " in r.stdout, name

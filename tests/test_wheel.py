"""jaxtrain as a wheel: it ships every package and the configs, installs, and trains by name.

The wheel is built offline with the installed setuptools from a copy of the build inputs (a
checkout's stale build/ directory can never leak into it), installed with pip into a fresh
venv that sees the test environment's dependencies but not its (editable) jaxtrain, and run
from a directory outside the checkout.
"""

import glob
import os
import shutil
import site
import subprocess
import sys
import tomllib
import zipfile
from importlib.metadata import PackageNotFoundError, version

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD_INPUTS = ("pyproject.toml", "README.md", "jaxtrain", "configs")

TINY_FIRE = ["--config=fire", "--config.data.samples_per_area=2000",
             "--config.data.blocks_per_area=8", "--config.data.train_stride=16",
             "--config.data.eval_stride=16", "--config.model.num_layers=1",
             "--config.model.d_model=16", "--config.model.d_ff=32", "--config.model.num_heads=2",
             "--config.train.batch_size=32", "--config.train.epochs=1",
             "--config.train.log_every_s=1000"]


def _checkout_packages() -> set[str]:
    """Every package directory of the checkout, as the wheel must hold it."""
    found = {os.path.relpath(os.path.dirname(p), ROOT).replace(os.sep, ".")
             for p in glob.glob(os.path.join(ROOT, "jaxtrain", "**", "__init__.py"),
                                recursive=True)}
    return found | {"jaxtrain.configs"}


def _checkout_modules() -> set[str]:
    """Every module of the checkout, as its path in the wheel."""
    modules = {os.path.relpath(p, ROOT).replace(os.sep, "/")
               for p in glob.glob(os.path.join(ROOT, "jaxtrain", "**", "*.py"), recursive=True)}
    return modules | {f"jaxtrain/configs/{os.path.basename(p)}"
                      for p in glob.glob(os.path.join(ROOT, "configs", "*.py"))}


def test_pyproject_lists_every_package():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        listed = set(tomllib.load(f)["tool"]["setuptools"]["packages"])
    assert listed == _checkout_packages(), (
        "pyproject.toml [tool.setuptools] packages must list exactly the package directories: "
        f"missing {sorted(_checkout_packages() - listed)}, "
        f"gone {sorted(listed - _checkout_packages())}")


def _run(args, **kwargs):
    r = subprocess.run(args, capture_output=True, text=True, timeout=300, **kwargs)
    assert r.returncode == 0, f"{' '.join(map(str, args))}\n{r.stdout[-3000:]}{r.stderr[-3000:]}"
    return r


def _fresh_venv(path: str) -> str:
    """A venv without pip whose only jaxtrain is the one installed into it; its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", path], check=True)
    python = os.path.join(path, "bin", "python")
    venv_site = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
    ours = [p for p in (*site.getsitepackages(), site.getusersitepackages()) if os.path.isdir(p)]
    # Plain path lines: these directories' own .pth files (the editable finder) do not run.
    with open(os.path.join(venv_site.stdout.strip(), "test_dependencies.pth"), "w") as f:
        f.write("\n".join(ours) + "\n")
    return python


def _setuptools_version() -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in version("setuptools").split(".")[:2])
    except PackageNotFoundError:
        return ()


def test_wheel_installs_and_trains_by_config_name(tmp_path):
    assert _setuptools_version() >= (70, 1), (
        "building the wheel offline needs setuptools >= 70.1 here: pip install -e '.[dev]'")
    source = tmp_path / "source"
    source.mkdir()
    for name in BUILD_INPUTS:
        if os.path.isdir(os.path.join(ROOT, name)):
            shutil.copytree(os.path.join(ROOT, name), source / name,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(os.path.join(ROOT, name), source / name)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
          "--no-index", "-q", "-w", str(tmp_path / "dist"), str(source)])
    (wheel,) = glob.glob(str(tmp_path / "dist" / "jaxtrain-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        shipped = set(z.namelist())
    assert _checkout_modules() <= shipped, sorted(_checkout_modules() - shipped)

    python = _fresh_venv(str(tmp_path / "venv"))
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
          "-q", wheel])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(JAX_PLATFORMS="cpu", XLA_FLAGS="")
    where = _run([python, "-c", "import jaxtrain.configs; print(jaxtrain.configs.__file__)"],
                 cwd=elsewhere, env=env).stdout.strip()
    assert where.startswith(str(tmp_path / "venv")), where

    jaxtrain = str(tmp_path / "venv" / "bin" / "jaxtrain")
    usage = _run([jaxtrain, "--help"], cwd=elsewhere, env=env).stdout
    assert "das:transformer" in usage and os.path.dirname(where) in usage
    assert _run([jaxtrain, "--version"], cwd=elsewhere, env=env).stdout.startswith("jaxtrain ")

    workdir = tmp_path / "run"
    _run([jaxtrain, *TINY_FIRE, f"--workdir={workdir}",
          f"--config.data.cache_dir={tmp_path / 'cache'}"], cwd=elsewhere, env=env)
    assert (workdir / "results.json").is_file()

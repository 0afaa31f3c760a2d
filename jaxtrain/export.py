"""Versioned model export: `python -m jaxtrain.export --workdir=RUN --to=URL`.

Writes a self-contained bundle of a finished run under `URL/<UTC timestamp>/` and prints
its address. URL is a local directory or S3-compatible object storage, `s3://bucket/prefix`
(endpoint and credentials from the usual AWS environment variables: AWS_ENDPOINT_URL,
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION; `pip install 'jaxtrain[s3]'`).
An existing version is never overwritten: a second export in the same second gets `-1`.

A bundle holds:
  variables.npz    the best checkpoint's params and model_state (plain numpy, no orbax needed)
  config.json, normalization.json, ensemble/ ...  every other file the run keeps at its top
                   level (what its system's predict reads), except checkpoints/, tb/ and
                   predictions/
  metadata.json    written last (a version without it is incomplete): when, which run and
                   checkpoint, the deployed model's test metrics (and the network's when
                   another model is deployed), the target check (`target_achieved`: the
                   system's metric and threshold, `System.export_target`, unless
                   --target_metric/--target say otherwise), the models, the versions of
                   jaxtrain (and its git commit), Python and the libraries, a sha256 per file.

`python -m jaxtrain.predict --workdir=BUNDLE` takes a bundle (a directory or its s3:// URL)
wherever it takes a workdir.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import importlib.metadata
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from typing import Any

from jaxtrain import files
from jaxtrain.cli import one_line
from jaxtrain.run_files import (
    METADATA,
    NETWORK,
    RESULTS_FILE,
    VARIABLES,
    deployed,
    is_bundle,
    load_trained,
    save_variables,
)
from jaxtrain.task import load_system

SKIPPED = ("checkpoints", "tb", "predictions")  # what inference does not read
LIBRARIES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "h5py",
             "ml-collections", "scikit-learn", "grain")


# ----------------------------------------------------------------------------- metadata
def _git_commit() -> str | None:
    """The checkout's commit (+"-dirty" when it has changes), or None outside a checkout."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not os.path.isdir(os.path.join(root, ".git")):
        return None

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", root, *args], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()

    try:
        return git("rev-parse", "HEAD") + ("-dirty" if git("status", "--porcelain") else "")
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict[str, Any]:
    """jaxtrain (and its git commit), Python, and the installed libraries' versions."""
    libs = {}
    for name in LIBRARIES:
        try:
            libs[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            libs[name] = None
    try:
        own = importlib.metadata.version("jaxtrain")
    except importlib.metadata.PackageNotFoundError:
        own = None
    return {"jaxtrain": own, "git_commit": _git_commit(), "python": platform.python_version(),
            "platform": platform.platform(), "libraries": libs}


def metadata(results: dict[str, Any], *, step: int, workdir: str, config: dict[str, Any],
             target_metric: str, target: float) -> dict[str, Any]:
    """metadata.json without the file list: what the bundle is and how good it is (the
    deployed model's test metrics, `run_files.deployed`, and the network's when another
    model is deployed)."""
    model = deployed(results)
    value = model["test"].get(target_metric)
    return {
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "system": config.get("task"), "source_workdir": workdir, "checkpoint_step": step,
        "models": model["models"], "deployed": model["model"], "test": model["test"],
        "network_test": results.get("test", {}) if model["model"] != NETWORK else None,
        "target": {"metric": target_metric, "threshold": target, "value": value},
        "target_achieved": value is not None and value >= target,
        "versions": versions(),
    }


# ----------------------------------------------------------------------------- destinations
class LocalStore:
    """Versions as directories under a local root."""

    def __init__(self, root: str):
        self.root = os.path.abspath(os.path.expanduser(root))

    def url(self, version: str) -> str:
        return os.path.join(self.root, version)

    def exists(self, version: str) -> bool:
        return os.path.exists(self.url(version))

    def put(self, local_dir: str, version: str) -> None:
        os.makedirs(self.root, exist_ok=True)
        # Copied under a temporary name, then renamed: a reader sees a whole version or none.
        with files.atomic_path(self.url(version)) as tmp:
            shutil.copytree(local_dir, tmp)

    def versions(self) -> list[str]:
        if not os.path.isdir(self.root):
            return []
        return sorted(v for v in os.listdir(self.root)
                      if os.path.isfile(os.path.join(self.root, v, METADATA)))


class S3Store:
    """Versions as key prefixes `prefix/<version>/` in a bucket (boto3; AWS_* environment)."""

    def __init__(self, url: str):
        try:
            import boto3
        except ImportError:
            raise ImportError("exporting to s3:// needs boto3: pip install 'jaxtrain[s3]'"
                              ) from None
        bucket, _, prefix = url[len("s3://"):].partition("/")
        if not bucket:
            raise ValueError(f"{url}: expected s3://bucket[/prefix]")
        self.bucket, self.prefix = bucket, prefix.strip("/")
        # boto3 reads AWS_ENDPOINT_URL itself; passed explicitly for older botocore too.
        self.client = boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None)

    def _key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def url(self, version: str) -> str:
        return f"s3://{self.bucket}/{self._key(version)}"

    def _keys(self, prefix: str) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                       Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    def exists(self, version: str) -> bool:
        return bool(self._keys(self._key(version) + "/"))

    def put(self, local_dir: str, version: str) -> None:
        paths = [os.path.join(d, f) for d, _, fs in os.walk(local_dir) for f in fs]
        # metadata.json last: a listing that shows it shows a complete version.
        paths.sort(key=lambda p: os.path.basename(p) == METADATA)
        for path in paths:
            rel = os.path.relpath(path, local_dir).replace(os.sep, "/")
            self.client.upload_file(path, self.bucket, self._key(version, rel))

    def get(self, version: str, local_dir: str) -> None:
        base = self._key(version) + "/"
        for key in self._keys(base):
            dest = os.path.join(local_dir, *key[len(base):].split("/"))
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            self.client.download_file(self.bucket, key, dest)

    def versions(self) -> list[str]:
        base = self._key() + "/" if self.prefix else ""
        found = {k[len(base):].split("/")[0] for k in self._keys(base)
                 if k.endswith("/" + METADATA)}
        return sorted(found)


def store(url: str) -> LocalStore | S3Store:
    if url.startswith("s3://"):
        return S3Store(url)
    if "://" in url and not url.startswith("file://"):
        raise ValueError(f"{url}: expected a local directory, file:// or s3://bucket/prefix")
    return LocalStore(url.removeprefix("file://"))


# ----------------------------------------------------------------------------- export
def _new_version(dest: LocalStore | S3Store) -> str:
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    version, n = stamp, 0
    while dest.exists(version):  # never overwrite: a second export this second gets -1, -2
        n += 1
        version = f"{stamp}-{n}"
    return version


def build_bundle(workdir: str, out_dir: str, *, target_metric: str | None = None,
                 target: float | None = None) -> dict[str, Any]:
    """Writes a finished run's bundle into the empty directory `out_dir`; returns metadata.
    The target check defaults to the system's (`System.export_target`)."""
    workdir = os.path.abspath(os.path.expanduser(workdir))
    results = files.read_json(os.path.join(workdir, RESULTS_FILE),
                              missing=f"no {RESULTS_FILE}: export a finished run")
    config, variables, step = load_trained(workdir)
    default_metric, default_target = load_system(config.task).export_target
    target_metric = target_metric or default_metric
    target = default_target if target is None else target
    for name in sorted(os.listdir(workdir)):
        src = os.path.join(workdir, name)
        if name in SKIPPED or name.startswith(".") or ".tmp" in name:
            continue
        if os.path.isdir(src):
            shutil.copytree(src, os.path.join(out_dir, name))
        elif os.path.isfile(src):
            shutil.copy2(src, os.path.join(out_dir, name))
    save_variables(os.path.join(out_dir, VARIABLES), variables)
    meta = metadata(results, step=step, workdir=workdir, config=config.to_dict(),
                    target_metric=target_metric, target=target)
    meta["files"] = {os.path.relpath(os.path.join(d, f), out_dir): _sha256(os.path.join(d, f))
                     for d, _, fs in os.walk(out_dir) for f in sorted(fs)}
    files.write_json_atomic(os.path.join(out_dir, METADATA), meta)
    return meta


@contextlib.contextmanager
def _storage_errors(url: str) -> Iterator[None]:
    """botocore's errors (no credentials, no bucket, refused connection) as one-line OSErrors."""
    try:
        yield
    except Exception as e:
        if type(e).__module__.startswith(("botocore", "boto3", "s3transfer")):
            raise OSError(f"{url}: {one_line(e)}") from e
        raise


def export(workdir: str, to: str, *, target_metric: str | None = None,
           target: float | None = None) -> dict[str, Any]:
    """Exports a finished run to a new version under `to`; returns {url, version,
    target_achieved, target}."""
    with tempfile.TemporaryDirectory(prefix="jaxtrain-export-") as tmp, _storage_errors(to):
        dest = store(to)
        bundle = os.path.join(tmp, "bundle")
        os.makedirs(bundle)
        meta = build_bundle(workdir, bundle, target_metric=target_metric, target=target)
        version = _new_version(dest)
        dest.put(bundle, version)
    return {"url": dest.url(version), "version": version,
            "target_achieved": meta["target_achieved"], "target": meta["target"]}


def local_bundle(path_or_url: str) -> str:
    """A bundle's local directory: the path itself, or an s3:// version downloaded to a
    temporary directory (removed at exit)."""
    if not path_or_url.startswith("s3://"):
        return path_or_url.removeprefix("file://")
    url = path_or_url.rstrip("/")
    parent, _, version = url.rpartition("/")
    if parent == "s3:/":
        raise ValueError(f"{path_or_url}: expected s3://bucket/prefix/<version>")
    local = tempfile.mkdtemp(prefix="jaxtrain-bundle-")
    import atexit

    atexit.register(shutil.rmtree, local, True)
    with _storage_errors(path_or_url):
        S3Store(parent).get(version, local)
    if not is_bundle(local):
        raise FileNotFoundError(f"{path_or_url}: no bundle there ({METADATA} and "
                                f"{VARIABLES} missing)")
    return local


def _sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


if __name__ == "__main__":
    from absl import flags

    from jaxtrain.cli import start

    flags.DEFINE_string("workdir", None, "A finished training run's workdir.")
    flags.DEFINE_string("to", None, "A local directory, file://DIR or s3://bucket/prefix; the "
                        "bundle goes to <to>/<UTC timestamp>/.")
    flags.DEFINE_string("target_metric", None, "Test metric of the target check (default: "
                        "the system's, System.export_target).")
    flags.DEFINE_float("target", None, "target_achieved = metric >= target (default: the "
                       "system's threshold, System.export_target).")
    import jax

    jax.config.update("jax_platforms", "cpu")  # reading a checkpoint needs no accelerator
    f = flags.FLAGS
    start(lambda: export(f.workdir, f.to, target_metric=f.target_metric, target=f.target),
          required=("workdir", "to"), doc=__doc__)

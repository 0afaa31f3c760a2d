"""The built-in synthetic data are a fixed benchmark: the same parameters always give the same
bytes. The digests below were taken from the generators before they moved into the system
packages; a change here means experiments silently train on other data."""

import hashlib
import json
import os

import h5py
import numpy as np

# sha1 prefixes of every dataset's name, dtype, shape and bytes, then every attribute.
GOLDEN = {
    "das/das_000_20241224T094621Z.h5": "11cdd4831cfa22e4",
    "das/das_001_20240525T190522Z.h5": "5d497f0b0303af4c",
    "das/das_002_20241002T142825Z.h5": "9acfd75826762ceb",
    "das/das_003_20240808T210350Z.h5": "1b9046e79dde2f21",
    "das/das_004_20240509T161430Z.h5": "d0c6f3a614d59271",
    "das/das_005_20240409T004144Z.h5": "b04eb96efa69f0aa",
    "das/labels.json": "f7fab91d2a2cc5c7",
    "debris": "85a8de84462b532d",  # 16 patches of 64 x 64, seed 3
    "fire": "9c365c985c9d480e",
}


def h5_digest(path: str) -> str:
    h = hashlib.sha1()
    with h5py.File(path, "r") as f:
        def dataset(name, obj):
            if isinstance(obj, h5py.Dataset):
                a = obj[...]
                h.update(name.encode())
                h.update(str(a.dtype).encode())
                h.update(str(a.shape).encode())
                h.update(repr(a.tolist()).encode() if a.dtype.kind == "O"
                         else np.ascontiguousarray(a).tobytes())

        def attrs(name, obj):
            for k in sorted(set(obj.attrs) - {"generator_version"}):  # a hash of the code
                h.update(f"{name}@{k}={np.asarray(obj.attrs[k]).tolist()!r}".encode())

        f.visititems(dataset)
        attrs("/", f)
        f.visititems(attrs)
    return h.hexdigest()[:16]


def test_fire_generator_output_is_unchanged(tmp_path):
    from jaxtrain.tasks.fire.synthetic import generate

    generate(tmp_path / "fire.h5", samples_per_area=3000, num_areas=2, seed=3)
    assert h5_digest(str(tmp_path / "fire.h5")) == GOLDEN["fire"]


def test_das_generator_output_is_unchanged(tmp_path):
    from jaxtrain.tasks.das.synthetic import generate

    paths = generate(tmp_path / "das", num_files=6, duration_s=10.0, num_channels=8, seed=3)
    got = {f"das/{os.path.basename(p)}": h5_digest(p) for p in paths}
    with open(tmp_path / "das" / "labels.json") as f:
        labels = json.dumps(json.load(f), sort_keys=True).encode()
    got["das/labels.json"] = hashlib.sha1(labels).hexdigest()[:16]
    assert got == {k: v for k, v in GOLDEN.items() if k.startswith("das/")}


def test_debris_generator_output_is_unchanged(tmp_path):
    from jaxtrain.tasks.debris.synthetic import generate

    generate(tmp_path / "debris.h5", num_patches=16, size=64, seed=3)
    assert h5_digest(str(tmp_path / "debris.h5")) == GOLDEN["debris"]


def test_debris_split_gives_every_split_debris(tmp_path):
    """Changed on purpose by the one splitter: 12 patches (4 with debris) used to split
    3/0/1, a validation split without one debris patch (then F1 0/0 far away); now 2/1/1."""
    from jaxtrain.tasks.debris.synthetic import generate

    generate(tmp_path / "debris.h5", num_patches=12, size=64, seed=3)
    with h5py.File(tmp_path / "debris.h5") as f:
        has_debris, split = (f["masks"][...] == 1).any(axis=(1, 2)), f["split"][...]
    assert [int(has_debris[split == k].sum()) for k in range(3)] == [2, 1, 1]

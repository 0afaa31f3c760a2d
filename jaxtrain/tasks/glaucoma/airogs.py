"""The AIROGS layout: a labels CSV (``challenge_id,class``) and JPEGs spread over folders.

``train_labels.csv`` holds one row per image, class ``RG`` (referable glaucoma), ``NRG`` or
``U`` (ungradable); the images are ``<challenge_id>.jpg`` anywhere below the root (the
download comes as numbered parts ``0/``, ``1/``, ...). An optional ``patient_id`` column
(not in the challenge release) groups images of one patient into one split.
"""

from __future__ import annotations

import csv
import dataclasses
import os

from jaxtrain.tasks.glaucoma.synthetic import LABELS_FILE

CLASSES = ("NRG", "RG")  # label 0, 1; "U" rows are dropped from screening
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclasses.dataclass(frozen=True)
class Dataset:
    """The usable images of an AIROGS tree and what was left out."""

    root: str
    ids: list[str]
    paths: list[str]
    labels: list[int]  # 0 NRG, 1 RG
    groups: list[str]  # patient ids (the image id when the CSV has none)
    ungradable: int  # "U" rows dropped
    missing: list[str]  # ids in the CSV without an image file (when skipped)

    def counts(self) -> dict[str, int]:
        return {"NRG": self.labels.count(0), "RG": self.labels.count(1),
                "U_dropped": self.ungradable, "missing_skipped": len(self.missing)}


def find_images(root: str) -> dict[str, str]:
    """challenge_id -> path for every image file below `root` (first found wins)."""
    found: dict[str, str] = {}
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names):
            stem, ext = os.path.splitext(name)
            if ext.lower() in IMAGE_SUFFIXES:
                found.setdefault(stem, os.path.join(folder, name))
    return found


def read_labels(path: str) -> list[dict[str, str]]:
    """Rows of a labels CSV; one-line ValueError for a missing column or an unknown class."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"labels file not found: {path}")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        fields = [c.strip() for c in reader.fieldnames or []]
        for col in ("challenge_id", "class"):
            if col not in fields:
                raise ValueError(f"{path}: no '{col}' column (columns: {', '.join(fields)}); "
                                 "expected the AIROGS train_labels.csv layout")
        rows = [{k.strip(): (v or "").strip() for k, v in r.items() if k} for r in reader]
    for i, r in enumerate(rows):
        if r["class"] not in ("RG", "NRG", "U"):
            raise ValueError(f"{path}: row {i + 2} ({r['challenge_id']}): class "
                             f"{r['class']!r}, expected RG, NRG or U")
    if not rows:
        raise ValueError(f"{path}: no rows")
    return rows


def read_airogs(root: str, labels_csv: str = "", missing: str = "error") -> Dataset:
    """The screening images of an AIROGS tree (U dropped and counted).

    `labels_csv` defaults to `<root>/train_labels.csv`. `missing`: "error" raises one line
    listing the ids without an image file; "skip" leaves them out (counted in the result).
    """
    root = os.path.abspath(os.path.expanduser(root))
    if not os.path.isdir(root):
        raise NotADirectoryError(f"AIROGS image directory not found: {root} (config.data.path)")
    labels_path = labels_csv or os.path.join(root, LABELS_FILE)
    rows = read_labels(labels_path)
    images = find_images(root)
    ids, paths, labels, groups, absent = [], [], [], [], []
    ungradable = 0
    for r in rows:
        if r["class"] == "U":
            ungradable += 1
            continue
        path = images.get(r["challenge_id"])
        if path is None:
            absent.append(r["challenge_id"])
            continue
        ids.append(r["challenge_id"])
        paths.append(path)
        labels.append(CLASSES.index(r["class"]))
        groups.append(r.get("patient_id") or r["challenge_id"])
    if absent and missing == "error":
        shown = ", ".join(absent[:5]) + (" ..." if len(absent) > 5 else "")
        raise FileNotFoundError(f"{root}: {len(absent)} image(s) of {labels_path} not found "
                                f"({shown}); set config.data.on_missing='skip' to leave them "
                                "out")
    if not ids:
        raise ValueError(f"{root}: no gradable (RG/NRG) image with a file")
    return Dataset(root=root, ids=ids, paths=paths, labels=labels, groups=groups,
                   ungradable=ungradable, missing=absent)

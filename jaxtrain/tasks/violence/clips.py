"""The clips of a dataset folder: RWF-2000's `train|val/Fight|NonFight/*.avi` or the seed's
`train|val|test/violent|nonviolent/*` (`data.layout`), listed with their split and label."""

from __future__ import annotations

import dataclasses
import os

from jaxtrain.tasks.violence.synthetic import layout_names
from jaxtrain.tasks.violence.video import find_videos

CLASS_NAMES = ("nonviolent", "violent")  # label 0, 1 (column 1 of `probs` = violence)


@dataclasses.dataclass(frozen=True)
class Clip:
    name: str  # path relative to the dataset root (unique, stable: the cache's key)
    split: str  # the folder it sits in (train, val, test)
    label: int


def list_clips(root: str, layout: str) -> list[Clip]:
    """Every video under `root/<split>/<class>/` (sorted); a missing split is an error."""
    splits, pos, neg = layout_names(layout)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"dataset folder not found: {root} (config.data.path)")
    clips = []
    for split in splits:
        found = 0
        for folder, label in ((neg, 0), (pos, 1)):
            d = os.path.join(root, split, folder)
            for path in find_videos(d) if os.path.isdir(d) else []:
                clips.append(Clip(os.path.relpath(path, root), split, label))
                found += 1
        if not found:
            raise ValueError(f"{root}: no videos in {split}/{pos} or {split}/{neg} "
                             f"(data.layout={layout!r} expects "
                             f"{'|'.join(splits)}/{pos}|{neg}/*.avi)")
    return clips

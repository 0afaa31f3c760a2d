"""The one train/val/test splitter: whole groups to one split, each stratum divided alike.

A group is what must never straddle two splits: a time block of a sensor series, a DAS
recording, an image patch, a video, a patient. A stratum is the class a group stands for
(e.g. "holds a fire", the file's label). Every system splits through `split_groups`, so
every system gets the same guarantee: every class reaches every split that has a non-zero
fraction, or the run stops with one line naming the class and the split.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Hashable, Mapping, Sequence

import numpy as np

SPLITS = ("train", "val", "test")


def split_counts(n: int, fractions: Sequence[float]) -> list[int]:
    """`n` divided by `fractions`: largest-remainder rounding, and at least one per split
    with a non-zero fraction when `n` allows it (taken from the largest)."""
    fr = np.asarray(fractions, float)
    raw = fr / fr.sum() * n
    counts = np.floor(raw).astype(int)
    for i in np.argsort(raw - counts, kind="stable")[::-1][: n - counts.sum()]:
        counts[i] += 1
    if n >= np.count_nonzero(fr):
        for i in np.flatnonzero((counts == 0) & (fr > 0)):
            counts[np.argmax(counts)] -= 1
            counts[i] += 1
    return counts.tolist()


def split_groups(strata: Sequence[Hashable], fractions: Sequence[float], *,
                 rng: np.random.Generator, names: Sequence[str] = SPLITS,
                 classes: Sequence[Collection[Hashable]] | None = None,
                 class_names: Mapping[Hashable, str] | None = None,
                 what: str = "groups") -> dict[str, np.ndarray]:
    """Group indices per split, each stratum permuted and cut by `fractions` on its own.

    `strata[g]` is group g's stratum. Strata are visited in sorted order and groups in their
    given order, so the result depends only on `rng`'s seed and the inputs.
    `classes[g]` are the classes group g holds (default: its stratum); every class must
    reach every split with a non-zero fraction, else ValueError naming the class, the split
    and how many `what` hold it. Returns {name: sorted int64 array of group indices}.
    """
    if len(fractions) != len(names) or min(fractions) < 0 or sum(fractions) <= 0:
        raise ValueError(f"need {len(names)} non-negative split fractions for {tuple(names)}, "
                         f"got {tuple(fractions)}")
    strata = list(strata)
    out: dict[str, list[int]] = {name: [] for name in names}
    for stratum in sorted(set(strata)):
        members = [g for g, s in enumerate(strata) if s == stratum]
        order = rng.permutation(len(members))
        start = 0
        for name, count in zip(names, split_counts(len(members), fractions), strict=True):
            out[name] += [members[j] for j in order[start:start + count]]
            start += count
    held = [{s} for s in strata] if classes is None else [set(c) for c in classes]
    for c in sorted(set().union(*held)):
        for name, fraction in zip(names, fractions, strict=True):
            if fraction > 0 and not any(c in held[g] for g in out[name]):
                n = sum(c in h for h in held)
                label = (class_names or {}).get(c, c)
                raise ValueError(f"the {name} split holds no {label!r}: only {n} of "
                                 f"{len(strata)} {what} do; every split needs at least one "
                                 "(more data, or other split fractions)")
    return {name: np.array(sorted(g), np.int64) for name, g in out.items()}


def split_windows(lengths: Sequence[int], length: int, *, blocks_per_stream: int,
                  fractions: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 0,
                  strides: Sequence[int] = (1, 1, 1),
                  block_keys: Sequence[np.ndarray] | None = None,
                  names: Sequence[str] = SPLITS,
                  key_names: dict[int, str] | None = None) -> dict[str, np.ndarray]:
    """Window ends per split for time series; whole time blocks go to one split, so
    overlapping windows never straddle two splits.

    Every stream is cut into `blocks_per_stream` contiguous blocks (the groups).
    `block_keys` (one int array per stream, e.g. labels) stratifies: a block's stratum is the
    largest key it contains (e.g. "has a fire"); every key must end some window of every
    split (`key_names` names them in the error). Returns {name: (N, 2) int64 (stream, end)}.
    """
    blocks, strata, classes = [], [], []  # per block: (stream, start, stop), max key, keys
    for s, n in enumerate(lengths):
        edges = np.linspace(0, n, blocks_per_stream + 1).astype(np.int64)
        for a, b in itertools.pairwise(edges):
            keys = block_keys[s][a + length - 1:b] if block_keys is not None else [0]
            blocks.append((s, int(a), int(b)))
            strata.append(int(block_keys[s][a:b].max())
                          if block_keys is not None and b > a else 0)
            classes.append({int(k) for k in np.unique(keys)})
    groups = split_groups(strata, fractions, rng=np.random.default_rng(seed), names=names,
                          classes=classes, class_names=key_names, what="time blocks")
    out = {}
    for i, name in enumerate(names):
        ends = [np.stack([np.full(len(r), s), r], 1)
                for s, a, b in (blocks[g] for g in groups[name])
                for r in [np.arange(a + length - 1, b, strides[i], dtype=np.int64)] if len(r)]
        out[name] = np.concatenate(ends) if ends else np.zeros((0, 2), np.int64)
    return out

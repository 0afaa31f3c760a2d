"""Quasi-random epoch order over blocks of consecutive windows, for streaming reads.

When the data do not fit in memory, reading one window at a time costs an HDF5 call per
window (~0.8k windows/s per core). Reading a *block* (a contiguous, chunk-aligned sample range
of one file holding many windows) costs one call for all of them, but a fully random order
would need every block in RAM. The compromise: per epoch, permute the blocks, cut them into
groups of `group_blocks` blocks, and permute the windows within each group. A reader then
needs only ~2 groups of blocks in RAM at a time, each block is read once per epoch, and the
windows of a batch still come from `group_blocks` places of the data set.

The order is a pure function of (seed, epoch): exact resume and N processes reading their
slices of one global order need no state beyond the batch number (`pipeline.train_dataset`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def block_lengths(block_samples: int, chunk_samples: Sequence[int]) -> np.ndarray:
    """Per file, `block_samples` rounded up to a whole number of its HDF5 chunks along time
    (so a block read never decodes a chunk another block also needs in full); int64."""
    if block_samples < 1:
        raise ValueError(f"block_samples must be >= 1, got {block_samples}")
    chunks = np.maximum(np.asarray(chunk_samples, np.int64).reshape(-1), 1)
    return -(-int(block_samples) // chunks) * chunks


def window_blocks(index: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Groups windows into blocks: window (file f, start s) belongs to block (f, s // L_f).

    Args:
      index: int64 (N, 2) rows of (file id, start sample), e.g. `build_window_index`.
      lengths: block length per file id (`block_lengths`), indexed by the index's file ids.

    Returns (block id per window (N,) int64, blocks (B, 2) int64 rows of (file id, first
    sample)), blocks numbered in (file, start) order.
    """
    index = np.asarray(index, np.int64).reshape(-1, 2)
    if not len(index):
        return np.zeros(0, np.int64), np.zeros((0, 2), np.int64)
    lengths = np.asarray(lengths, np.int64)
    files, starts = index[:, 0], index[:, 1]
    number = starts // lengths[files]
    span = int(number.max()) + 1
    keys, blocks = np.unique(files * span + number, return_inverse=True)  # per (file, number)
    block_file = keys // span
    return blocks.astype(np.int64).reshape(-1), np.stack(
        [block_file, (keys % span) * lengths[block_file]], 1)


def epoch_order(blocks: np.ndarray, group_blocks: int, seed: int, epoch: int) -> np.ndarray:
    """The windows' order in `epoch`: a permutation of range(len(blocks)).

    Blocks are permuted, cut into consecutive groups of `group_blocks`, and the windows of
    each group permuted; each window comes exactly once. `blocks` is the block id of each
    window (`window_blocks`).
    """
    if group_blocks < 1:
        raise ValueError(f"group_blocks must be >= 1, got {group_blocks}")
    blocks = np.asarray(blocks, np.int64).reshape(-1)
    if not len(blocks):
        return np.zeros(0, np.int64)
    rng = np.random.default_rng([seed, epoch])
    rank = rng.permutation(int(blocks.max()) + 1)  # block b is the rank[b]-th of the epoch
    group = rank[blocks] // group_blocks
    shuffled = rng.permutation(len(blocks))
    # A stable sort by group of randomly ordered windows: random within each group.
    return shuffled[np.argsort(group[shuffled], kind="stable")]


class BlockOrder:
    """`epoch_order` bound to one source's blocks: `order(seed, epoch)` is the permutation
    `pipeline.train_dataset` uses instead of a uniform one (a source's `epoch_permutation`).
    Picklable, so grain worker processes compute the same order."""

    def __init__(self, blocks: np.ndarray, group_blocks: int):
        self.blocks = np.asarray(blocks, np.int64).reshape(-1)
        self.group_blocks = int(group_blocks)
        if self.group_blocks < 1:
            raise ValueError(f"group_blocks must be >= 1, got {group_blocks}")

    def __call__(self, seed: int, epoch: int) -> np.ndarray:
        return epoch_order(self.blocks, self.group_blocks, seed, epoch)

    def __len__(self) -> int:
        return len(self.blocks)

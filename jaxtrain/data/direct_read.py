"""Rows of a plain 2-D HDF5 data set read straight from the file, outside h5py.

h5py serializes every call behind one global lock and holds the GIL while HDF5 reads
(h5py #1287, #591), so read threads never overlap their I/O. For the layouts streaming
needs (uncompressed, contiguous or chunked by whole rows, as the DAS generator and PRODML
files store them), a row range is a few contiguous byte ranges of the file: `DirectRows`
finds their offsets once (`chunk_iter`) and reads them with `os.preadv` into the output
array, which releases the GIL. Anything else (filters, chunks split across columns,
unallocated chunks, virtual or external storage, foreign byte order) is left to h5py:
`DirectRows.open` returns None.
"""

from __future__ import annotations

import os
from typing import Any

import h5py
import numpy as np


class DirectRows:
    """Rows [start, stop) of `dataset` in `path` as a (rows, columns) array (`rows`).

    Build with `open` (None when the storage is not plain rows). Each `rows` call opens
    and closes the file (~10 us against a block's milliseconds), so thousands of files hold
    no descriptors, and the reader pickles to grain workers as plain data.
    """

    def __init__(self, path: str, shape: tuple[int, int], dtype: np.dtype,
                 chunk_rows: int, offsets: np.ndarray):
        self.path, self.shape, self.dtype = path, shape, np.dtype(dtype)
        self.chunk_rows, self.offsets = int(chunk_rows), np.asarray(offsets, np.int64)
        self.row_bytes = shape[1] * self.dtype.itemsize

    @classmethod
    def open(cls, path: str, dataset: str) -> DirectRows | None:
        """The direct reader of `path`'s `dataset`, or None where h5py must read it."""
        with h5py.File(path, "r") as f:
            ds = f[dataset]
            if not isinstance(ds, h5py.Dataset) or ds.ndim != 2 or ds.shape[0] == 0 \
                    or ds.dtype.kind not in "iuf" or not ds.dtype.isnative or ds.external:
                return None
            plist = ds.id.get_create_plist()
            if plist.get_nfilters():
                return None
            layout = plist.get_layout()
            rows, cols = ds.shape
            if layout == h5py.h5d.CONTIGUOUS:
                offset = ds.id.get_offset()
                if offset is None:  # never written
                    return None
                chunk_rows, offsets = rows, np.array([offset], np.int64)
            elif layout == h5py.h5d.CHUNKED and ds.chunks[1] == cols:
                chunk_rows = ds.chunks[0]
                count = -(-rows // chunk_rows)
                offsets = np.full(count, -1, np.int64)

                def visit(info: Any) -> None:
                    offsets[info.chunk_offset[0] // chunk_rows] = info.byte_offset

                ds.id.chunk_iter(visit)
                if (offsets < 0).any():  # unallocated chunks read as fill values: h5py's job
                    return None
            else:
                return None
            reader = cls(path, (rows, cols), ds.dtype, chunk_rows, offsets)
            # The offsets must address this file as h5py reads it (a user block, a driver
            # with another address space would not): compare the first and last rows.
            for a in (0, rows - 1):
                if not np.array_equal(reader.rows(a, a + 1), ds[a:a + 1], equal_nan=True):
                    return None
            return reader

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop), read in as few preadv calls as the chunks' placement allows.
        Raises ValueError naming the file when it ends early (truncated)."""
        start, stop = int(start), int(stop)
        if not 0 <= start < stop <= self.shape[0]:
            raise ValueError(f"{self.path}: rows [{start}, {stop}) outside [0, {self.shape[0]})")
        out = np.empty((stop - start, self.shape[1]), self.dtype)
        view = memoryview(out.reshape(-1).view(np.uint8))
        # (file offset, destination byte offset, bytes) per chunk; neighbours in the file merge.
        runs: list[list[Any]] = []
        for k in range(start // self.chunk_rows, (stop - 1) // self.chunk_rows + 1):
            a = max(start, k * self.chunk_rows)
            b = min(stop, (k + 1) * self.chunk_rows)
            offset = int(self.offsets[k]) + (a - k * self.chunk_rows) * self.row_bytes
            dest, size = (a - start) * self.row_bytes, (b - a) * self.row_bytes
            if runs and runs[-1][0] + runs[-1][2] == offset:
                runs[-1][2] += size
                runs[-1][3].append(view[dest:dest + size])
            else:
                runs.append([offset, dest, size, [view[dest:dest + size]]])
        fd = os.open(self.path, os.O_RDONLY)
        try:
            for offset, dest, size, buffers in runs:
                got = os.preadv(fd, buffers, offset)
                while got < size:  # short read: go on from where it stopped
                    more = os.preadv(fd, [view[dest + got:dest + size]], offset + got)
                    if more == 0:
                        raise ValueError(f"{self.path}: ends before byte {offset + size:,} "
                                         "(truncated file)")
                    got += more
        finally:
            os.close(fd)
        return out

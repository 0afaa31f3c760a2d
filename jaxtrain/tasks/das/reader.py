"""Reading DAS recordings of any vendor: where a layout keeps the array and its metadata.

Vendors differ in where the strain(-rate) array and its attributes live and in the axis order,
so the reader is driven by a `DASLayout` (presets in `LAYOUTS`). `open_recording(path, layout)`
validates a file from its metadata alone and returns a `Recording` that reads float32
``(channels, time)`` windows lazily.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import os
import posixpath
from typing import Any, Literal

import h5py
import numpy as np

from jaxtrain.cli import one_line
from jaxtrain.data.hdf5 import PerProcess, open_hdf5
from jaxtrain.tasks.das.schema import iso_time

CHUNK_CACHE_BYTES = 64 * 2**20  # per open file: windows straddle chunks and are reread


@dataclasses.dataclass(frozen=True)
class DASLayout:
    """Where a file format keeps the strain(-rate) array and its metadata.

    Attribute references are ``"<object path>@<attribute name>"``; the object path is absolute
    (``/Acquisition``), relative to the data set (``..`` is its group), or empty for the data
    set itself. `dataset` may use ``*``/``?`` wildcards per path segment (first match in sorted
    order), for formats that name the group after the recording.

    Fields:
      dataset: path of the 2-D array.
      axis_order: "time_channel" (time-major rows) or "channel_time".
      sampling_rate: attribute in Hz; or None to take it from `time_coord`.
      time_coord: data set of per-sample times (integers in `time_coord_unit_s`), used when
        `sampling_rate` is None and for the start time when `start_time` is None.
      channel_spacing, start_time, scale: optional attributes (metres; ISO string or unix
        seconds; physical value = raw * scale, default 1).
      dimensions: optional attribute naming the axes (e.g. PRODML ``[b"time", b"locus"]``);
        checked against `axis_order` so a transposed file is caught at open time.
    """

    dataset: str
    axis_order: Literal["time_channel", "channel_time"] = "time_channel"
    sampling_rate: str | None = None
    time_coord: str | None = None
    time_coord_unit_s: float = 1e-6
    channel_spacing: str | None = None
    start_time: str | None = None
    scale: str | None = None
    dimensions: str | None = None
    name: str = "custom"


LAYOUTS: dict[str, DASLayout] = {
    # Written by `synthetic.generate`.
    "jaxtrain": DASLayout(
        dataset="/strain_rate", sampling_rate="/@sampling_rate_hz",
        channel_spacing="/@channel_spacing_m", start_time="/@start_time",
        scale="/@scale_factor", dimensions="@dimensions", name="jaxtrain"),
    # PRODML 2.x (Silixa iDAS and others): time-major int16 RawData (time, locus) chunked
    # (1024, loci); OutputDataRate on the Raw[0] group, SpatialSamplingInterval on
    # /Acquisition, PartStartTime (ISO) and Dimensions on RawData, RawDataTime (int64 us) as
    # the fallback clock. No scale attribute: the raw counts are in RawDataUnit.
    "prodml": DASLayout(
        dataset="/Acquisition/Raw[0]/RawData", sampling_rate="/Acquisition/Raw[0]@OutputDataRate",
        time_coord="../RawDataTime", time_coord_unit_s=1e-6,
        channel_spacing="/Acquisition@SpatialSamplingInterval", start_time="@PartStartTime",
        dimensions="@Dimensions", name="prodml"),
    # DASDAE (dascore's own format): channel-major /waveforms/<patch>/data (distance, time);
    # times in the sibling _coord_time as int64 ns, axis names in the group's _dims attribute.
    # Written from dascore's source; not checked against a real DASDAE file (none offline).
    "dasdae": DASLayout(
        dataset="/waveforms/*/data", axis_order="channel_time", time_coord="../_coord_time",
        time_coord_unit_s=1e-9, channel_spacing="..@_attrs_distance_step",
        dimensions="..@_dims", name="dasdae"),
}


def resolve_layout(layout: DASLayout | str) -> DASLayout:
    """`layout` itself, or the `LAYOUTS` preset it names; ValueError for an unknown name."""
    if isinstance(layout, DASLayout):
        return layout
    if layout not in LAYOUTS:
        raise ValueError(f"unknown DAS layout {layout!r}; known: {sorted(LAYOUTS)}")
    return LAYOUTS[layout]


def list_recordings(directory: str | os.PathLike[str]) -> list[str]:
    """Sorted recording files (``*.h5``, ``*.hdf5``) directly inside `directory`."""
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise NotADirectoryError(f"not a directory: {directory}")
    names = sorted(n for n in os.listdir(directory)
                   if fnmatch.fnmatch(n, "*.h5") or fnmatch.fnmatch(n, "*.hdf5"))
    return [os.path.join(directory, n) for n in names]


def _scalar(value: Any) -> Any:
    arr = np.asarray(value)
    if arr.size == 1:
        value = arr.reshape(()).item()
    return value.decode() if isinstance(value, bytes) else value


def _names(value: Any) -> list[str]:
    if isinstance(value, bytes | str):
        text = value.decode() if isinstance(value, bytes) else value
        return [s.strip().lower() for s in text.split(",")]
    return [(v.decode() if isinstance(v, bytes) else str(v)).strip().lower()
            for v in np.atleast_1d(np.asarray(value, dtype=object)).tolist()]


class Recording:
    """One validated DAS file; `read` returns float32 (channels, time) windows lazily.

    Attributes: path, layout, dataset (resolved path), num_samples, num_channels,
    sampling_rate (Hz), channel_spacing (m or None), start_time (ISO string or None),
    scale (applied by `read`), dtype (as stored).
    The h5py handle, with a `cache_bytes` HDF5 chunk cache, opens on the first `read` in each
    process and is dropped on pickling, so a Recording can be handed to grain worker processes.
    """

    def __init__(self, path: str, layout: DASLayout, dataset: str, num_samples: int,
                 num_channels: int, sampling_rate: float, channel_spacing: float | None,
                 start_time: str | None, scale: float, dtype: np.dtype, *,
                 cache_bytes: int = CHUNK_CACHE_BYTES):
        self.path, self.layout, self.dataset = path, layout, dataset
        self.num_samples, self.num_channels = num_samples, num_channels
        self.sampling_rate, self.channel_spacing = sampling_rate, channel_spacing
        self.start_time, self.scale, self.dtype = start_time, scale, dtype
        self._file = PerProcess(functools.partial(h5py.File, mode="r", rdcc_nbytes=cache_bytes),
                                max_open=1)

    def __repr__(self) -> str:
        return (f"Recording({self.path!r}, layout={self.layout.name!r}, "
                f"samples={self.num_samples}, channels={self.num_channels}, "
                f"fs={self.sampling_rate:g})")

    def read(self, start: int, stop: int, *, check_finite: bool = True) -> np.ndarray:
        """Samples [start, stop) of every channel as float32 (channels, time), scaled.

        Reads only the requested rows (HDF5 touches the chunks they fall in). With
        `check_finite`, a NaN/inf in the window raises ValueError naming file, sample, channel.
        """
        out = np.asarray(self.read_raw(start, stop, check_finite=check_finite), np.float32)
        if self.scale != 1.0:
            out *= np.float32(self.scale)
        return out

    def read_raw(self, start: int, stop: int, *, check_finite: bool = True,
                 time_major: bool = False) -> np.ndarray:
        """`read` before scaling: (channels, time) in the stored dtype (int16 counts stay
        int16, 2 bytes a sample, for device-resident data); physical value = raw * scale.
        `time_major`: (time, channels) instead, which time-major files give without a
        transposing copy (streamed blocks, `stream.DASBlockSource`)."""
        start, stop = int(start), int(stop)
        if not 0 <= start < stop <= self.num_samples:
            raise ValueError(f"{self.path}: window [{start}, {stop}) outside "
                             f"[0, {self.num_samples})")
        ds = self._file.get(self.path)[self.dataset]
        try:
            raw = ds[start:stop] if self.layout.axis_order == "time_channel" \
                else ds[:, start:stop]
        except OSError as e:  # corrupt or truncated chunk
            raise ValueError(f"{self.path}: {self.dataset}: unreadable samples "
                             f"{start}:{stop} ({one_line(e)})") from None
        if (self.layout.axis_order == "time_channel") != time_major:
            raw = raw.T
        raw = np.ascontiguousarray(raw)
        if check_finite:
            self.check_finite(raw, start, time_major=time_major)
        return raw

    def check_finite(self, raw: np.ndarray, start: int, *, time_major: bool) -> None:
        """ValueError naming file, sample and channel of the first NaN/inf in `raw`, the
        samples from `start` on, (time, channels) if `time_major` else (channels, time)."""
        if self.dtype.kind == "f" and not np.isfinite(raw).all():
            c, s = np.argwhere(~np.isfinite(raw if not time_major else raw.T))[0]
            raise ValueError(f"{self.path}: {self.dataset} has a non-finite value at sample "
                             f"{start + s}, channel {c}")

    def close(self) -> None:
        """Close the file handle (reopened by the next `read`)."""
        self._file.close()

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _resolve(f: h5py.File, pattern: str) -> str | None:
    """Absolute path of the first object matching `pattern` (wildcards per segment)."""
    parts = [p for p in pattern.split("/") if p]

    def walk(group: h5py.Group, prefix: str, rest: list[str]) -> str | None:
        if not rest:
            return prefix or "/"
        head, tail = rest[0], rest[1:]
        names = sorted(fnmatch.filter(group.keys(), head)) if any(
            c in head for c in "*?") else ([head] if head in group else [])
        for name in names:
            obj = group[name]
            if not tail:
                return f"{prefix}/{name}"
            if isinstance(obj, h5py.Group) and (hit := walk(obj, f"{prefix}/{name}", tail)):
                return hit
        return None

    return walk(f, "", parts)


def _object_path(ref_path: str, dataset: str) -> str:
    if ref_path.startswith("/"):
        return ref_path
    return posixpath.normpath(posixpath.join(dataset, ref_path)) if ref_path else dataset


def _attr(f: h5py.File, path: str, ref: str | None, dataset: str, layout: DASLayout,
          *, required: bool = False) -> Any:
    """Value of an attribute reference, or None when absent and not required."""
    if ref is None:
        return None
    obj_ref, _, name = ref.rpartition("@")
    obj_path = _object_path(obj_ref, dataset)
    obj = f.get(obj_path)
    if obj is None or name not in obj.attrs:
        if required:
            missing = (f"object {obj_path!r}" if obj is None
                       else f"attribute {name!r} on {obj_path!r}")
            raise ValueError(f"{path}: {missing} not found (layout {layout.name!r} reads {ref!r})")
        return None
    return obj.attrs[name]


def _number(path: str, ref: str, value: Any, *, positive: bool) -> float:
    try:
        number = float(_scalar(value))
    except (TypeError, ValueError):
        raise ValueError(f"{path}: attribute {ref!r} is not a number ({value!r})") from None
    if not np.isfinite(number) or (positive and number <= 0) or number == 0:
        kind = "positive" if positive else "non-zero"
        raise ValueError(f"{path}: attribute {ref!r} must be finite and {kind}, got {number}")
    return number


def open_recording(path: str | os.PathLike[str], layout: DASLayout | str = "jaxtrain", *,
                   cache_bytes: int = CHUNK_CACHE_BYTES) -> Recording:
    """Open and validate a DAS file in `layout` (a `DASLayout` or a `LAYOUTS` key).

    Reads metadata only; the returned `Recording` opens the file again, with a `cache_bytes`
    HDF5 chunk cache, when it first reads samples.

    Raises FileNotFoundError for a missing file and ValueError, in one line naming the file and
    the data set or attribute, for an unreadable file, a missing or non-2-D data set, axis names
    contradicting the layout, or a missing/non-positive sampling rate.
    """
    path = os.fspath(path)
    layout = resolve_layout(layout)
    f = open_hdf5(path, "DAS")
    with f:
        dataset = _resolve(f, layout.dataset)
        if dataset is None:
            raise ValueError(f"{path}: data set {layout.dataset!r} not found "
                             f"(layout {layout.name!r})")
        ds = f[dataset]
        if not isinstance(ds, h5py.Dataset):
            raise ValueError(f"{path}: {dataset!r} is a group, not a data set")
        if ds.ndim != 2:
            raise ValueError(f"{path}: data set {dataset!r} has shape {ds.shape}, expected 2-D")
        if ds.dtype.kind not in "iuf":
            raise ValueError(f"{path}: data set {dataset!r} has dtype {ds.dtype}, expected "
                             "integers or floats")
        dims = _attr(f, path, layout.dimensions, dataset, layout)
        if dims is not None and "time" in (names := _names(dims)):
            expected = 0 if layout.axis_order == "time_channel" else 1
            if names.index("time") != expected:
                raise ValueError(f"{path}: {dataset!r} has dimensions {names}, but layout "
                                 f"{layout.name!r} expects {layout.axis_order}")
        n_t, n_c = ds.shape if layout.axis_order == "time_channel" else ds.shape[::-1]
        times = None  # (first time, step) in seconds, from the time coordinate
        if layout.time_coord is not None:
            tpath = _object_path(layout.time_coord, dataset)
            if isinstance(f.get(tpath), h5py.Dataset) and f[tpath].shape[0] >= 2:
                first, second = f[tpath][:2]  # step before float: int64 ns exceed float precision
                times = (float(first) * layout.time_coord_unit_s,
                         float(second - first) * layout.time_coord_unit_s)
        if layout.sampling_rate is not None:
            fs = _number(path, layout.sampling_rate,
                         _attr(f, path, layout.sampling_rate, dataset, layout, required=True),
                         positive=True)
        elif times is not None:
            fs = _number(path, layout.time_coord, 1.0 / times[1] if times[1] else 0.0,
                         positive=True)
        else:
            raise ValueError(f"{path}: no sampling rate: layout {layout.name!r} names no "
                             f"attribute and time coordinate {layout.time_coord!r} is missing")
        spacing = _attr(f, path, layout.channel_spacing, dataset, layout)
        spacing = None if spacing is None else _number(path, layout.channel_spacing or "",
                                                       spacing, positive=True)
        scale = _attr(f, path, layout.scale, dataset, layout)
        scale = 1.0 if scale is None else _number(path, layout.scale or "", scale,
                                                  positive=False)
        start = _scalar(_attr(f, path, layout.start_time, dataset, layout))
        if isinstance(start, int | float) and not isinstance(start, bool):
            start = iso_time(float(start))
        elif start is None and times is not None:
            start = iso_time(float(times[0]))
        dtype = ds.dtype
    return Recording(path, layout, dataset, int(n_t), int(n_c), fs, spacing,
                     None if start is None else str(start), scale, dtype,
                     cache_bytes=cache_bytes)

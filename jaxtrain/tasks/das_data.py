"""DAS (distributed acoustic sensing) data: synthetic recordings, vendor-layout reader, window
index, file-level splits and per-window transforms.

A DAS interrogator turns an optical fibre into a line of strain-rate sensors ("channels") every
few metres and writes one HDF5 file per few minutes: a 2-D array (time x channel, usually int16
with a separate scale) plus attributes. Vendors differ in where the array and the attributes
live and in the axis order, so the reader is driven by a `DASLayout` (presets in `LAYOUTS`).

Synthetic files (`generate`, layout ``jaxtrain-das-v1``, `LAYOUTS["jaxtrain"]`)::

    /strain_rate  (T, C) int16 or float32 nm/m/s; chunks (min(1024, T), C);
                  attr dimensions = ["time", "channel"]
    root attrs:   format, sampling_rate_hz, channel_spacing_m, start_time (ISO 8601, UTC),
                  start_time_unix, units, timezone, scale_factor (int16 only: value = raw * scale)
    labels.json   {file name: {"label": "earthquake" | "quarry_blast" | "noise",
                               "events": [{"type", "t0", "first_arrival_s", "end_s", ...}],
                               "start_time", "dead_channels", "noisy_channels"}}

Each file holds 1-3 events of its one class (times in seconds from the file start; ``t0`` is the
origin time) or none ("noise"). What makes the classes separable, by construction:

* Frequency: earthquake energy is at 2-8 Hz (the S wave, which dominates, at 2-6 Hz); blast
  energy is at 8-25 Hz. The dominant frequency of the event window alone separates them.
* Phases: earthquakes show P then an S 2-4x stronger, with the S-P delay growing with
  hypocentral distance; blasts show a weak P then a strong dispersive surface wave (low
  frequencies travel faster, so every channel sees an up-chirp that stretches with distance)
  and no S.
* Moveout: earthquakes are 1.5-8 km deep, so arrivals are nearly flat along the fibre (apparent
  velocity above 4.5 km/s on the default 0.63 km); blasts are surface sources 0.3-2.5 km away
  whose surface waves (0.4-1.4 km/s) sweep across the channels with steep, curved moveout.
* Time of day: blasts happen on weekdays between 08:00 and 17:00 local time (the synthetic site
  keeps UTC); earthquakes and noise-only files start at any time.

Every file also carries what real fibres record and both classes share: vehicles moving along
the fibre at 10-25 m/s (quasi-static strain below 2 Hz plus 5-20 Hz rumble), coloured
instrument noise, common-mode laser noise, per-channel coupling, dead (all-zero) and noisy
channels. Traffic rumble overlaps the blast band but moves at road speed, not seismic speed.

Reading real data: `open_recording(path, layout)` validates the file and returns a `Recording`
that reads ``(channels, time)`` float32 windows lazily; `build_window_index` lists the sliding
windows of many files once and caches the list; `split_files_stratified` assigns whole files
to splits; `normalize_per_channel` and `augment` (host, per window) and `augment_batch`
(device, in the train step) are the transforms.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import fnmatch
import hashlib
import json
import os
import posixpath
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import h5py
import jax
import jax.numpy as jnp
import numpy as np

from jaxtrain.data import one_line, open_hdf5

FORMAT = "jaxtrain-das-v1"
LABELS = ("earthquake", "quarry_blast", "noise")
LABELS_FILE = "labels.json"
SPLITS = ("train", "val", "test")

_EPOCH_2024 = 1_704_067_200  # 2024-01-01 00:00:00 UTC, a Monday
_DAY_S = 86_400.0
_NOISE = 10.0  # instrument-noise std in nm/m/s; event and traffic amplitudes are relative to it
_INT16_PEAK = 32_000  # a little headroom below 32767 so rounding cannot overflow
_CHUNK_ROWS = 1024  # one sliding window of all channels per chunk (performance notes, sec. 3)
_RDCC_BYTES = 64 * 2**20  # chunk cache per open file: windows straddle chunks and are reread
_EQ_COMPONENTS = ((0.7, 0.6), (1.0, 1.0), (1.4, 0.5))  # (frequency multiple, weight)

Spectrum = Callable[[np.ndarray], np.ndarray]  # frequency (Hz) -> amplitude


# ----------------------------------------------------------------------------- synthetic data
def _iso(unix: float) -> str:
    stamp = dt.datetime.fromtimestamp(unix, tz=dt.UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def _coloured(rng: np.random.Generator, shape: tuple[int, ...], fs: float,
              shape_fn: Spectrum) -> np.ndarray:
    """Unit-std noise along the last axis with amplitude spectrum `shape_fn(f)`."""
    n = shape[-1]
    spec = np.fft.rfft(rng.standard_normal(shape, dtype=np.float32), axis=-1)
    amp = shape_fn(np.fft.rfftfreq(n, 1.0 / fs)).astype(np.float32)
    out = np.fft.irfft(spec * amp, n=n, axis=-1)
    return out / max(float(out.std()), 1e-12)


def _instrument_spectrum(fs: float) -> Spectrum:
    # Rising below ~2 Hz (laser/thermal drift), flat above, rolled off before Nyquist like an
    # interrogator's anti-alias filter.
    def fn(f: np.ndarray) -> np.ndarray:
        f = np.maximum(f, 0.05)
        return np.sqrt(1.0 + 2.0 / f) / np.sqrt(1.0 + (f / (0.4 * fs)) ** 8)
    return fn


def _band(lo: float, hi: float) -> Spectrum:
    def fn(f: np.ndarray) -> np.ndarray:
        return ((f >= lo) & (f <= hi)).astype(float)
    return fn


def _packet(tau: np.ndarray, f0: float, decay: float, phases: np.ndarray) -> np.ndarray:
    """A body-wave arrival: three tones around f0, a quarter-period rise, exponential coda."""
    t = np.maximum(tau, 0.0)
    env = (1.0 - np.exp(-t * (4.0 * f0))) * np.exp(-t / decay)  # zero before the arrival
    wave = sum(w * np.sin(t * (2 * np.pi * f0 * m) + p)
               for (m, w), p in zip(_EQ_COMPONENTS, phases, strict=True))
    return env * wave


def _span(start_s: float, end_s: float, fs: float, n: int) -> tuple[int, np.ndarray]:
    """First sample and sample times of [start_s, end_s], clipped to the file."""
    i0 = min(max(int(np.floor(start_s * fs)), 0), n)
    i1 = min(max(int(np.ceil(end_s * fs)) + 1, i0), n)
    return i0, np.arange(i0, i1) / fs


def _earthquake(rng: np.random.Generator, x: np.ndarray, fs: float, n: int, t0: float,
                length: float) -> tuple[int, np.ndarray, dict[str, float]]:
    depth = rng.uniform(1500.0, 8000.0)
    x0 = rng.uniform(-0.5, 1.5) * length
    vp = rng.uniform(4500.0, 6000.0)
    vs = vp / rng.uniform(1.68, 1.8)
    r = np.hypot(depth, x - x0)  # hyperbolic moveout; S-P = r (1/vs - 1/vp) grows with r
    tp, ts = r / vp, r / vs  # travel times from the origin time t0
    fp = rng.uniform(3.0, 8.0)
    fs_dom = max(2.0, fp * rng.uniform(0.5, 0.75))
    p_decay, s_decay = rng.uniform(0.4, 0.8), rng.uniform(0.8, 1.6)
    p_phases, s_phases = rng.uniform(0, 2 * np.pi, 3), rng.uniform(0, 2 * np.pi, 3)
    s_amp = rng.uniform(2.0, 4.0)
    end = t0 + ts.max() + 5 * s_decay
    i0, t = _span(t0 + tp.min(), end, fs, n)
    tau = (t - t0).astype(np.float32)[None]
    sig = _packet(tau - tp[:, None].astype(np.float32), fp, p_decay, p_phases)
    sig += s_amp * _packet(tau - ts[:, None].astype(np.float32), fs_dom, s_decay, s_phases)
    sig *= (r.min() / r)[:, None].astype(np.float32)  # geometric spreading
    meta = {"first_arrival_s": float(t0 + tp.min()), "end_s": float(end), "x0_m": float(x0),
            "depth_m": float(depth), "dominant_hz": float(fs_dom), "p_hz": float(fp),
            "s_minus_p_s": float((ts - tp).min())}
    return i0, sig, meta


def _blast(rng: np.random.Generator, x: np.ndarray, fs: float, n: int, t0: float,
           length: float) -> tuple[int, np.ndarray, dict[str, float]]:
    offset = rng.uniform(300.0, 2500.0)  # horizontal distance from the fibre line
    depth = rng.uniform(0.0, 30.0)
    x0 = rng.uniform(-0.5, 1.5) * length
    r = np.sqrt(offset**2 + depth**2 + (x - x0) ** 2)
    tp = r / rng.uniform(3000.0, 5000.0)
    fp = rng.uniform(12.0, 25.0)
    p_decay, p_phases = rng.uniform(0.15, 0.35), rng.uniform(0, 2 * np.pi, 3)
    # Rayleigh (Rg) waves: normal dispersion, group velocity falling with frequency, so low
    # frequencies arrive first; anelastic loss (Q) removes high frequencies with distance.
    freqs = np.linspace(8.0, 25.0, 12)
    u = rng.uniform(900.0, 1400.0) * (freqs / 8.0) ** -rng.uniform(0.4, 0.7)
    q = rng.uniform(150.0, 300.0)
    weights = rng.uniform(0.6, 1.4, freqs.size)
    phases = rng.uniform(0, 2 * np.pi, freqs.size)
    rg_amp = rng.uniform(2.5, 5.0)
    sigma = 3.0 / freqs  # packet half-width: about three cycles
    end = t0 + r.max() / u.min() + 4 * sigma[-1]
    i0, t = _span(t0 + tp.min(), end, fs, n)
    tau = (t - t0).astype(np.float32)
    p = _packet(tau[None] - tp[:, None].astype(np.float32), fp, p_decay, p_phases)
    p *= (r.min() / r)[:, None].astype(np.float32)
    rg = np.zeros_like(p)
    for f, uk, wk, ph, sk in zip(freqs, u, weights, phases, sigma, strict=True):
        tg = r / uk  # group arrival per channel
        # Only where this component's Gaussian envelope is non-negligible.
        a = int(np.searchsorted(tau, tg.min() - 4 * sk))
        b = int(np.searchsorted(tau, tg.max() + 4 * sk))
        if b <= a:
            continue
        amp = (wk * np.exp(-np.pi * f * r / (q * uk)) * np.sqrt(r.min() / r)).astype(np.float32)
        rel = tau[None, a:b] - tg[:, None].astype(np.float32)
        phase_shift = (r / (1.15 * uk) - tg).astype(np.float32)  # phase vs group velocity
        rg[:, a:b] += amp[:, None] * np.exp(-0.5 * (rel / sk) ** 2) * np.sin(
            (2 * np.pi * f) * (rel - phase_shift[:, None]) + ph)
    rg *= rg_amp * np.abs(p).max(initial=0.0) / max(float(np.abs(rg).max(initial=0.0)), 1e-12)
    spec = weights * np.exp(-np.pi * freqs * r.min() / (q * u))
    meta = {"first_arrival_s": float(t0 + tp.min()), "end_s": float(end), "x0_m": float(x0),
            "depth_m": float(depth), "offset_m": float(offset),
            "dominant_hz": float(freqs[np.argmax(spec)]), "p_hz": float(fp)}
    return i0, p + rg, meta


def _traffic(rng: np.random.Generator, out: np.ndarray, x: np.ndarray, fs: float,
             length: float) -> None:
    """Add vehicles driving along the fibre (a road next to the cable) into out (C, T)."""
    n_samples = out.shape[1]
    duration = n_samples / fs
    for _ in range(rng.poisson(duration / 25.0)):
        v = rng.uniform(10.0, 25.0) * rng.choice([-1.0, 1.0])
        w = rng.uniform(15.0, 40.0)  # footprint: road-cable distance smears the load
        tm, xm = rng.uniform(0.0, duration), rng.uniform(0.0, length)
        # Only the samples while the vehicle is within 4 footprints of the fibre.
        ta, tb = sorted(tm + (np.array([-4 * w, length + 4 * w]) - xm) / v)
        i0, i1 = max(int(ta * fs), 0), min(int(np.ceil(tb * fs)), n_samples)
        if i1 - i0 < 2:
            continue
        t = np.arange(i0, i1) / fs
        u = ((x[:, None] - (xm + v * (t[None] - tm))) / w).astype(np.float32)
        g = np.exp(-(u**2))
        quasi_static = rng.uniform(3.0, 15.0) * u * g  # d/dt of the moving load, up to a scale
        rumble = _coloured(rng, (i1 - i0,), fs, _band(5.0, 20.0)) * rng.uniform(0.5, 2.0)
        out[:, i0:i1] += _NOISE * (quasi_static + rumble[None] * g)


def _start_time(rng: np.random.Generator, label: str, duration: float) -> float:
    if label == "quarry_blast":  # blasting is a daytime weekday activity
        day = 7 * rng.integers(0, 52) + rng.integers(0, 5)
        tod = rng.uniform(8 * 3600.0, max(17 * 3600.0 - duration, 8 * 3600.0))
    else:
        day = rng.integers(0, 366)
        tod = rng.uniform(0.0, _DAY_S)
    return round(_EPOCH_2024 + day * _DAY_S + tod, 3)


def _assign_labels(num_files: int, rng: np.random.Generator) -> list[str]:
    """About 40% earthquakes, 40% blasts, 20% noise; each class present once num_files >= 3."""
    if num_files < 3:
        return list(LABELS[:num_files])
    n_noise = max(1, round(0.2 * num_files))
    n_eq = (num_files - n_noise + 1) // 2
    labels = ["earthquake"] * n_eq + ["quarry_blast"] * (num_files - n_noise - n_eq)
    labels += ["noise"] * n_noise
    return [labels[i] for i in rng.permutation(num_files)]


def _render_file(rng: np.random.Generator, label: str, n: int, num_channels: int, fs: float,
                 spacing: float) -> tuple[np.ndarray, list[dict[str, Any]], dict[str, Any]]:
    """One recording as float32 (C, T), its events and its channel faults."""
    duration = n / fs
    x = np.arange(num_channels) * spacing
    length = max(float(x[-1]), spacing)
    signal = np.zeros((num_channels, n), np.float32)
    events: list[dict[str, Any]] = []
    if label != "noise":
        n_ev = int(rng.integers(1, int(np.clip(duration // 40, 1, 3)) + 1))
        slot = duration / n_ev
        for k in range(n_ev):
            t0 = k * slot + rng.uniform(0.1, 0.5) * slot
            render = _earthquake if label == "earthquake" else _blast
            i0, sig, meta = render(rng, x, fs, n, t0, length)
            snr = float(np.exp(rng.uniform(np.log(6.0), np.log(40.0))))
            if sig.size:
                peak = max(float(np.abs(sig).max()), 1e-12)
                signal[:, i0:i0 + sig.shape[1]] += sig * (snr * _NOISE / peak)
            events.append({"type": label, "t0": t0, **meta, "snr": snr})
    _traffic(rng, signal, x, fs, length)
    signal *= rng.uniform(0.7, 1.3, (num_channels, 1)).astype(np.float32)  # ground coupling
    noise = _coloured(rng, (num_channels, n), fs, _instrument_spectrum(fs))
    noise *= rng.uniform(0.8, 1.25, (num_channels, 1))
    n_bad = max(1, num_channels // 20)
    bad = rng.choice(num_channels, size=min(2 * n_bad, num_channels), replace=False)
    dead, noisy = np.sort(bad[:n_bad]), np.sort(bad[n_bad:])
    noise[noisy] *= rng.uniform(4.0, 10.0, (noisy.size, 1))
    common = 0.3 * _coloured(rng, (n,), fs, _instrument_spectrum(fs))  # laser phase noise
    data = signal + _NOISE * (noise + common[None])
    data[dead] = 0.0  # broken splice / unlit fibre section: exactly flat
    faults = {"dead_channels": dead.tolist(), "noisy_channels": noisy.tolist()}
    for ev in events:
        for key, value in ev.items():
            if isinstance(value, float):
                ev[key] = round(value, 3)
    return data.astype(np.float32), events, faults


def _write_json_atomic(path: str, obj: Any) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def generate(directory: str | os.PathLike[str], *, num_files: int = 24, duration_s: float = 120.0,
             sampling_rate: float = 250.0, num_channels: int = 64, channel_spacing_m: float = 10.0,
             dtype: Literal["int16", "float32"] = "int16", seed: int = 0) -> list[str]:
    """Write synthetic DAS recordings and ``labels.json`` into `directory`; return the paths.

    Deterministic per seed; the int16 and float32 versions of one seed hold the same signal.
    Files and labels are written atomically (temporary name, then `os.replace`).
    """
    if dtype not in ("int16", "float32"):
        raise ValueError(f"dtype must be 'int16' or 'float32', got {dtype!r}")
    n = round(duration_s * sampling_rate)
    if num_files < 1 or n < 1 or num_channels < 1 or channel_spacing_m <= 0:
        raise ValueError("num_files, duration_s * sampling_rate, num_channels and "
                         "channel_spacing_m must be positive")
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    labels = _assign_labels(num_files, np.random.default_rng([seed, 0]))
    paths: list[str] = []
    manifest: dict[str, Any] = {}
    for i, label in enumerate(labels):
        rng = np.random.default_rng([seed, 1, i])
        start = _start_time(rng, label, n / sampling_rate)
        data, events, faults = _render_file(rng, label, n, num_channels, sampling_rate,
                                            channel_spacing_m)
        stamp = dt.datetime.fromtimestamp(start, tz=dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        name = f"das_{i:03d}_{stamp}.h5"
        path = os.path.join(directory, name)
        _write_recording(path, data, dtype, sampling_rate, channel_spacing_m, start)
        paths.append(path)
        manifest[name] = {"label": label, "events": events, "start_time": _iso(start), **faults}
    _write_json_atomic(os.path.join(directory, LABELS_FILE), manifest)
    return paths


def _write_recording(path: str, data: np.ndarray, dtype: str, fs: float, spacing: float,
                     start: float) -> None:
    tmp = path + ".tmp"
    rows = data.T  # interrogators write time-major: one row per time sample
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["sampling_rate_hz"] = float(fs)
            f.attrs["channel_spacing_m"] = float(spacing)
            f.attrs["start_time"] = _iso(start)
            f.attrs["start_time_unix"] = float(start)
            f.attrs["units"] = "nm/m/s"
            f.attrs["timezone"] = "UTC"
            if dtype == "int16":
                scale = max(float(np.abs(rows).max()), 1e-12) / _INT16_PEAK
                f.attrs["scale_factor"] = scale
                rows = np.rint(rows / scale).astype(np.int16)
            chunks = (min(_CHUNK_ROWS, rows.shape[0]), rows.shape[1])
            ds = f.create_dataset("strain_rate", data=rows, chunks=chunks)
            ds.attrs["dimensions"] = ["time", "channel"]
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load_labels(directory: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """The ``labels.json`` of a generated directory: file name -> label entry."""
    with open(os.path.join(os.fspath(directory), LABELS_FILE)) as f:
        return json.load(f)


# ----------------------------------------------------------------------------- reader
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
    # Written by `generate`.
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


def _layout(layout: DASLayout | str) -> DASLayout:
    if isinstance(layout, DASLayout):
        return layout
    if layout not in LAYOUTS:
        raise ValueError(f"unknown DAS layout {layout!r}; known: {sorted(LAYOUTS)}")
    return LAYOUTS[layout]



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
    scale (applied by `read`), dtype (as stored), cache_bytes (chunk cache of the handle;
    set before the first `read`).
    The h5py handle opens on the first `read` in each process and is dropped on pickling, so
    a Recording can be handed to grain worker processes.
    """

    def __init__(self, path: str, layout: DASLayout, dataset: str, num_samples: int,
                 num_channels: int, sampling_rate: float, channel_spacing: float | None,
                 start_time: str | None, scale: float, dtype: np.dtype):
        self.path, self.layout, self.dataset = path, layout, dataset
        self.num_samples, self.num_channels = num_samples, num_channels
        self.sampling_rate, self.channel_spacing = sampling_rate, channel_spacing
        self.start_time, self.scale, self.dtype = start_time, scale, dtype
        self.cache_bytes = _RDCC_BYTES  # HDF5 chunk cache of the handle `read` opens
        self._file: h5py.File | None = None
        self._pid = -1

    def __repr__(self) -> str:
        return (f"Recording({self.path!r}, layout={self.layout.name!r}, "
                f"samples={self.num_samples}, channels={self.num_channels}, "
                f"fs={self.sampling_rate:g})")

    @property
    def duration_s(self) -> float:
        """Length in seconds."""
        return self.num_samples / self.sampling_rate

    def _dataset(self) -> h5py.Dataset:
        if self._file is None or self._pid != os.getpid():
            self._file = h5py.File(self.path, "r", rdcc_nbytes=self.cache_bytes)
            self._pid = os.getpid()
        return self._file[self.dataset]

    def read(self, start: int, stop: int, *, check_finite: bool = True) -> np.ndarray:
        """Samples [start, stop) of every channel as float32 (channels, time), scaled.

        Reads only the requested rows (HDF5 touches the chunks they fall in). With
        `check_finite`, a NaN/inf in the window raises ValueError naming file, sample, channel.
        """
        start, stop = int(start), int(stop)
        if not 0 <= start < stop <= self.num_samples:
            raise ValueError(f"{self.path}: window [{start}, {stop}) outside "
                             f"[0, {self.num_samples})")
        ds = self._dataset()
        try:
            raw = ds[start:stop] if self.layout.axis_order == "time_channel" \
                else ds[:, start:stop]
        except OSError as e:  # corrupt or truncated chunk
            raise ValueError(f"{self.path}: {self.dataset}: unreadable samples "
                             f"{start}:{stop} ({one_line(e)})") from None
        if self.layout.axis_order == "time_channel":
            raw = raw.T
        out = np.ascontiguousarray(raw, dtype=np.float32)
        if self.scale != 1.0:
            out *= np.float32(self.scale)
        if check_finite and self.dtype.kind == "f" and not np.isfinite(out).all():
            c, s = np.argwhere(~np.isfinite(out))[0]
            raise ValueError(f"{self.path}: {self.dataset} has a non-finite value at sample "
                             f"{start + s}, channel {c}")
        return out

    def close(self) -> None:
        """Close the file handle (reopened by the next `read`)."""
        if self._file is not None:
            self._file.close()
        self._file = None

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_file"], state["_pid"] = None, -1  # h5py handles cannot be pickled
        return state


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


def open_recording(path: str | os.PathLike[str], layout: DASLayout | str = "jaxtrain"
                   ) -> Recording:
    """Open and validate a DAS file in `layout` (a `DASLayout` or a `LAYOUTS` key).

    Raises FileNotFoundError for a missing file and ValueError, in one line naming the file and
    the data set or attribute, for an unreadable file, a missing or non-2-D data set, axis names
    contradicting the layout, or a missing/non-positive sampling rate.
    """
    path = os.fspath(path)
    layout = _layout(layout)
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
            start = _iso(float(start))
        elif start is None and times is not None:
            start = _iso(float(times[0]))
        dtype = ds.dtype
    return Recording(path, layout, dataset, int(n_t), int(n_c), fs, spacing,
                     None if start is None else str(start), scale, dtype)


# ----------------------------------------------------------------------------- window index
def _fingerprint(files: Sequence[str], layout: DASLayout, window: int, stride: int) -> str:
    """Identity of the inputs: path, size and mtime of every file, window, stride, layout."""
    stats = []
    for p in files:
        st = os.stat(p)
        stats.append([os.path.abspath(p), st.st_size, st.st_mtime_ns])
    blob = json.dumps({"version": 1, "files": stats, "window": window, "stride": stride,
                       "layout": dataclasses.asdict(layout)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def build_window_index(files: Sequence[str | os.PathLike[str]], layout: DASLayout | str,
                       window: int = 1024, stride: int = 512, *,
                       cache_path: str | os.PathLike[str] | None = None) -> np.ndarray:
    """All sliding windows as int64 (N, 2) rows of (file index, start sample).

    A file of T samples gives floor((T - window) / stride) + 1 windows (none if T < window).
    With `cache_path` (an .npz), the index is reused while the fingerprint (each file's path,
    size and mtime, window, stride, layout) matches, and rebuilt (files reopened) otherwise.
    """
    if window < 1 or stride < 1:
        raise ValueError(f"window and stride must be >= 1, got {window}, {stride}")
    files = [os.fspath(p) for p in files]
    layout = _layout(layout)
    key = _fingerprint(files, layout, window, stride)
    cache = None if cache_path is None else os.fspath(cache_path)
    if cache is not None and os.path.exists(cache):
        try:
            with np.load(cache, allow_pickle=False) as z:
                if str(z["fingerprint"]) == key:
                    return z["index"].astype(np.int64)
        except (OSError, ValueError, KeyError):
            pass  # unreadable or old cache: rebuild it
    parts = []
    for i, p in enumerate(files):
        rec = open_recording(p, layout)
        count = max(0, (rec.num_samples - window) // stride + 1)
        starts = np.arange(count, dtype=np.int64) * stride
        parts.append(np.stack([np.full(count, i, np.int64), starts], 1))
    index = np.concatenate(parts) if parts else np.zeros((0, 2), np.int64)
    if cache is not None:
        os.makedirs(os.path.dirname(os.path.abspath(cache)), exist_ok=True)
        tmp = cache + ".tmp"
        with open(tmp, "wb") as fh:  # a file object, so numpy does not append ".npz"
            np.savez(fh, index=index, fingerprint=np.array(key))
        os.replace(tmp, cache)
    return index


# ----------------------------------------------------------------------------- splits
def _split_counts(n: int, fractions: Sequence[float]) -> list[int]:
    """Largest-remainder rounding, with at least one per split when n allows it."""
    raw = np.asarray(fractions, float) / float(sum(fractions)) * n
    counts = np.floor(raw).astype(int)
    for i in np.argsort(raw - counts, kind="stable")[::-1][: n - counts.sum()]:
        counts[i] += 1
    if n >= len(fractions):
        for i in np.flatnonzero(counts == 0):
            counts[np.argmax(counts)] -= 1
            counts[i] += 1
    return counts.tolist()


def split_files_stratified(file_labels: Mapping[str, str],
                           fractions: Sequence[float] = (0.7, 0.2, 0.1), seed: int = 0,
                           names: Sequence[str] = SPLITS) -> dict[str, list[str]]:
    """Whole files to splits, each label divided by `fractions` on its own.

    Windows of one file never reach two splits (they overlap and share the event). A label
    with at least len(names) files appears in every split. Deterministic per seed whatever
    the mapping's order; lists are sorted.
    """
    if len(fractions) != len(names) or min(fractions) < 0 or sum(fractions) <= 0:
        raise ValueError(f"need {len(names)} non-negative fractions, got {tuple(fractions)}")
    rng = np.random.default_rng(seed)
    out: dict[str, list[str]] = {name: [] for name in names}
    for label in sorted(set(file_labels.values())):
        group = sorted(f for f, lab in file_labels.items() if lab == label)
        order = rng.permutation(len(group))
        start = 0
        for name, count in zip(names, _split_counts(len(group), fractions), strict=True):
            out[name] += [group[j] for j in order[start:start + count]]
            start += count
    return {name: sorted(files) for name, files in out.items()}


# ----------------------------------------------------------------------------- transforms
def normalize_per_channel(x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Zero mean, unit std per channel over time (last axis) of each window; float32.

    Channels with std <= eps (dead, flat) come out as zeros instead of NaN/inf.
    """
    x = np.asarray(x, dtype=np.float32)
    mean = x.mean(axis=-1, keepdims=True, dtype=np.float64)
    std = x.std(axis=-1, keepdims=True, dtype=np.float64)
    return ((x - mean) / np.where(std > eps, std, 1.0)).astype(np.float32)


def augment(x: np.ndarray, rng: np.random.Generator, *, noise: float = 0.05,
            scale: tuple[float, float] = (0.9, 1.1), max_shift: int = 50) -> np.ndarray:
    """Training-only augmentation of one (channels, time) window on the host (numpy).

    The host path: `augment_batch` does the same to a whole batch inside the train step.

    Time shift by an integer in [-max_shift, max_shift] with zero padding (not a roll: wrapping
    would move the window's tail to its start and fake an arrival there; zero is the mean of a
    normalized channel); one amplitude factor in `scale`; Gaussian noise of `noise` times each
    channel's std (dead channels stay flat, as they would in real data).
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"augment expects one (channels, time) window, got shape {x.shape}")
    limit = min(max_shift, x.shape[1] - 1)
    shift = int(rng.integers(-limit, limit + 1)) if limit > 0 else 0
    out = np.zeros_like(x)
    if shift >= 0:
        out[:, shift:] = x[:, : x.shape[1] - shift]
    else:
        out[:, :shift] = x[:, -shift:]
    out *= np.float32(rng.uniform(*scale))
    if noise > 0:
        std = out.std(axis=1, keepdims=True)
        out += (rng.standard_normal(out.shape) * (noise * std)).astype(np.float32)
    return out


def augment_batch(x: jax.Array, key: jax.Array, *, noise: float = 0.05,
                  scale: tuple[float, float] = (0.9, 1.1), max_shift: int = 50) -> jax.Array:
    """`augment` for a (batch, channels, time) batch, on the device (in the train step).

    Per window: a time shift by an integer in [-max_shift, max_shift] with zero padding (not
    a roll: wrapping would move the window's tail to its start and fake an arrival there;
    zero is the mean of a normalized channel); one amplitude factor in `scale`; Gaussian noise
    of `noise` times each channel's std (dead channels stay flat, as in real data).
    Why both: on a GPU this takes the host's costliest per-window work off the input
    pipeline; on a CPU XLA's Gaussian draws cost more than numpy's (BUILD_NOTES).
    """
    if x.ndim != 3:
        raise ValueError(f"augment_batch expects (batch, channels, time), got shape {x.shape}")
    b, _, t = x.shape
    k_shift, k_scale, k_noise = jax.random.split(key, 3)
    limit = min(max_shift, t - 1)
    if limit > 0:
        shift = jax.random.randint(k_shift, (b,), -limit, limit + 1)
        padded = jnp.pad(x, ((0, 0), (0, 0), (limit, limit)))
        # out[j] = x[j - shift]: a slice of the padded window starting at limit - shift.
        x = jax.vmap(lambda w, s: jax.lax.dynamic_slice_in_dim(w, limit - s, t, axis=1))(
            padded, shift)
    x = x * jax.random.uniform(k_scale, (b, 1, 1), x.dtype, scale[0], scale[1])
    if noise > 0:
        std = x.std(axis=2, keepdims=True)
        x = x + jax.random.normal(k_noise, x.shape, x.dtype) * (noise * std)
    return x


# ----------------------------------------------------------------------------- window labels
CLASS_NAMES = ("earthquake", "quarry_blast", "noise")  # class ids 0, 1, 2
NOISE = CLASS_NAMES.index("noise")


def window_labels(index: np.ndarray, files: Sequence[str | os.PathLike[str]],
                  labels: Mapping[str, Mapping[str, Any]], window: int, sampling_rate: float,
                  *, min_overlap_s: float = 1.0) -> np.ndarray:
    """Per-window class ids (int32, `CLASS_NAMES` order) from file-level event annotations.

    Rule: a window gets its file's event class ("earthquake" / "quarry_blast") when it overlaps
    one of the file's events, the interval [first_arrival_s, end_s], by at least
    `min_overlap_s`; every other window is "noise" (including every window of a noise file).
    Why: a 4 s window far from the event holds only traffic and instrument noise, so labelling
    it with the file's class would teach the model to guess the class from noise; a window
    that merely grazes the event's faint coda is closer to noise than to the event.

    `labels` is a ``labels.json`` mapping keyed by file base name; an event without
    ``first_arrival_s``/``end_s`` falls back to ``t0`` and ``t0 + 10 s``; an event file with
    no event times (e.g. labelled by hand, or a plain label string) gives every window its
    class. A file missing from `labels` raises ValueError naming it.
    """
    index = np.asarray(index, np.int64).reshape(-1, 2)
    out = np.full(len(index), NOISE, np.int32)
    min_overlap = float(min_overlap_s) * sampling_rate
    for i, path in enumerate(files):
        name = os.path.basename(os.fspath(path))
        if name not in labels:
            raise ValueError(f"{os.fspath(path)}: no entry in the labels (labels.json)")
        entry = labels[name]
        label = entry["label"] if isinstance(entry, Mapping) else str(entry)
        if label not in CLASS_NAMES:
            raise ValueError(f"{os.fspath(path)}: unknown label {label!r}; "
                             f"expected one of {CLASS_NAMES}")
        events = entry.get("events", []) if isinstance(entry, Mapping) else []
        rows = np.flatnonzero(index[:, 0] == i)
        if label == "noise" or not rows.size:
            continue
        if not events:  # a file labelled by hand without event times: the whole file counts
            out[rows] = CLASS_NAMES.index(label)
            continue
        start = index[rows, 1].astype(np.float64)
        overlap = np.zeros(rows.size)
        for ev in events:
            a = float(ev.get("first_arrival_s", ev.get("t0", 0.0))) * sampling_rate
            b = float(ev.get("end_s", ev.get("t0", 0.0) + 10.0)) * sampling_rate
            overlap = np.maximum(overlap, np.minimum(start + window, b) - np.maximum(start, a))
        out[rows[overlap >= min_overlap]] = CLASS_NAMES.index(label)
    return out


def file_decision(probs: np.ndarray, *, event_threshold: float = 0.5) -> tuple[int, np.ndarray]:
    """One decision for a file from its windows' class probabilities (N, 3).

    Rule: the file holds an event when at least one window's event probability
    (1 - p_noise) reaches `event_threshold`; its class is then the event class with the larger
    summed probability over all windows (noise windows add little to either sum, so the
    windows that saw the event decide). Otherwise the file is "noise".
    Returns (class id, scores (3,)): scores = [sum p_eq, sum p_blast] normalised to the
    event share, and the largest window event probability's complement for noise.
    """
    probs = np.asarray(probs, np.float64).reshape(-1, len(CLASS_NAMES))
    if not len(probs):
        raise ValueError("file_decision needs at least one window")
    event = 1.0 - probs[:, NOISE]
    peak = float(event.max())
    sums = probs[:, :NOISE].sum(0)
    share = sums / max(float(sums.sum()), 1e-12)
    scores = np.array([share[0] * peak, share[1] * peak, 1.0 - peak])
    if peak < event_threshold:
        return NOISE, scores
    return int(np.argmax(sums)), scores


def aggregate_files(file_ids: np.ndarray, probs: np.ndarray, *, event_threshold: float = 0.5
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`file_decision` for every file id present: (file ids, decisions, scores (F, 3))."""
    file_ids = np.asarray(file_ids).reshape(-1)
    ids = np.unique(file_ids)
    decisions = np.zeros(len(ids), np.int32)
    scores = np.zeros((len(ids), len(CLASS_NAMES)))
    for k, f in enumerate(ids):
        decisions[k], scores[k] = file_decision(probs[file_ids == f],
                                                event_threshold=event_threshold)
    return ids, decisions, scores


# ----------------------------------------------------------------------------- grain source
class DASWindowSource:
    """grain random-access source over sliding windows of DAS files.

    Record i is window ``index[i] = (file id, start sample)``::

        {"x": float32 (channels, window), normalized per channel (unless normalize=False),
         "label": int32 (labels[i], or -1 without labels),
         "file": int32 file id (position in `files`), "start": int64 start sample}

    Only the window's rows are read (h5py slicing: the chunks it falls in), never a whole
    file. Files are opened lazily in the process that reads, at most `max_open_files` at
    a time (least recently used closed first), each with a `chunk_cache_bytes` HDF5 chunk
    cache, so memory stays under max_open_files x chunk_cache_bytes (512 MiB by default)
    however many files there are; reopening costs ~5 ms, so keep max_open_files at least
    the number of files a shuffled epoch touches when they are few. Handles are dropped on
    pickling, so grain can ship the source to worker processes. The constructor reads nothing.

    Build one from a directory (sorted ``*.h5``/``*.hdf5``)::

        files = DASWindowSource.list_files("/data/das")
        index = build_window_index(files, "jaxtrain", 1024, 512, cache_path="/tmp/idx.npz")
        source = DASWindowSource(files, index)            # or DASWindowSource.from_directory

    Args:
      files: recording paths; the index's file ids point into this list.
      index: int64 (N, 2) (file id, start sample) rows, from `build_window_index`.
      layout: a `DASLayout` or `LAYOUTS` key, the same one the index was built with.
      window: samples per window (the index's window length).
      labels: optional (N,) per-window class ids (see `window_labels`).
      normalize: per-channel zero mean / unit std per window (`normalize_per_channel`).
      transform: optional extra function applied to each record (after normalization).
      max_open_files: open h5py handles kept per process.
      chunk_cache_bytes: HDF5 chunk cache per open file (random windows reuse little of it:
        a window touches ~2 chunks).
    """

    def __init__(self, files: Sequence[str | os.PathLike[str]], index: np.ndarray,
                 layout: DASLayout | str = "jaxtrain", window: int = 1024, *,
                 labels: np.ndarray | None = None, normalize: bool = True,
                 transform: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] | None = None,
                 max_open_files: int = 128, chunk_cache_bytes: int = 4 * 2**20):
        self.files = [os.fspath(p) for p in files]
        self.index = np.asarray(index, np.int64).reshape(-1, 2)
        self.layout = _layout(layout)
        self.window = int(window)
        if labels is not None:
            labels = np.asarray(labels, np.int32).reshape(-1)
            if len(labels) != len(self.index):
                raise ValueError(f"{len(labels)} labels for {len(self.index)} windows")
        self.labels = labels
        if len(self.index) and (self.index[:, 0].min() < 0
                                or self.index[:, 0].max() >= len(self.files)):
            raise ValueError(f"window index names file ids outside [0, {len(self.files)})")
        self.normalize, self.transform = normalize, transform
        self.max_open_files = max(1, int(max_open_files))
        self.chunk_cache_bytes = int(chunk_cache_bytes)
        self._open: dict[int, Recording] = {}  # insertion order = least recently used first
        self._pid = -1

    @staticmethod
    def list_files(directory: str | os.PathLike[str],
                   patterns: Sequence[str] = ("*.h5", "*.hdf5")) -> list[str]:
        """Sorted recording files directly inside `directory`."""
        directory = os.fspath(directory)
        if not os.path.isdir(directory):
            raise NotADirectoryError(f"not a directory: {directory}")
        names = sorted(n for n in os.listdir(directory)
                       if any(fnmatch.fnmatch(n, p) for p in patterns))
        return [os.path.join(directory, n) for n in names]

    @classmethod
    def from_directory(cls, directory: str | os.PathLike[str],
                       layout: DASLayout | str = "jaxtrain", window: int = 1024,
                       stride: int = 512, *, cache_path: str | os.PathLike[str] | None = None,
                       with_labels: bool = True, **kwargs: Any) -> DASWindowSource:
        """Every window of every file in `directory`; labels from its labels.json if present
        (and `with_labels`), by `window_labels`."""
        files = cls.list_files(directory)
        if not files:
            raise FileNotFoundError(f"no .h5/.hdf5 files in {os.fspath(directory)}")
        index = build_window_index(files, layout, window, stride, cache_path=cache_path)
        labels = None
        labels_path = os.path.join(os.fspath(directory), LABELS_FILE)
        if with_labels and os.path.exists(labels_path):
            fs = open_recording(files[0], layout).sampling_rate
            labels = window_labels(index, files, load_labels(directory), window, fs)
        return cls(files, index, layout, window, labels=labels, **kwargs)

    def __len__(self) -> int:
        return len(self.index)

    def __repr__(self) -> str:  # grain keys checkpoint state on it
        return (f"DASWindowSource(n={len(self)}, files={len(self.files)}, window={self.window}, "
                f"layout={self.layout.name!r})")

    def recording(self, file_id: int) -> Recording:
        """The (lazily opened, per-process) recording of file `file_id`."""
        if self._pid != os.getpid():  # first read in this (worker) process
            self._open, self._pid = {}, os.getpid()
        rec = self._open.pop(file_id, None)
        if rec is None:
            rec = open_recording(self.files[file_id], self.layout)
            rec.cache_bytes = self.chunk_cache_bytes
            while len(self._open) >= self.max_open_files:
                self._open.pop(next(iter(self._open))).close()
        self._open[file_id] = rec  # most recently used last
        return rec

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        file_id, start = (int(v) for v in self.index[i])
        x = self.recording(file_id).read(start, start + self.window)
        if self.normalize:
            x = normalize_per_channel(x)
        label = -1 if self.labels is None else int(self.labels[i])
        record = {"x": x, "label": np.int32(label), "file": np.int32(file_id),
                  "start": np.int64(start)}
        return self.transform(record) if self.transform is not None else record

    def close(self) -> None:
        """Close every open file of this process."""
        for rec in self._open.values():
            rec.close()
        self._open = {}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_open"], state["_pid"] = {}, -1  # h5py handles cannot be pickled
        return state

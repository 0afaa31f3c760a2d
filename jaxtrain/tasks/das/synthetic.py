"""Synthetic DAS recordings with labelled earthquakes and quarry blasts: the built-in data.

A DAS interrogator turns an optical fibre into a line of strain-rate sensors ("channels") every
few metres and writes one HDF5 file per few minutes: a 2-D array (time x channel) plus
attributes. `generate` writes such files in the jaxtrain layout (`reader.LAYOUTS["jaxtrain"]`)::

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

This module holds the generator only: the cache of generated data is keyed on its source
(`jaxtrain.data.synthetic.generated_once`), so a change here regenerates the data and a change
to a reader does not.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from typing import Any, Literal

import h5py
import numpy as np

from jaxtrain.files import atomic_path, write_json_atomic
from jaxtrain.tasks.das.schema import CLASS_NAMES, FORMAT, LABELS_FILE, iso_time

_EPOCH_2024 = 1_704_067_200  # 2024-01-01 00:00:00 UTC, a Monday
_DAY_S = 86_400.0
_NOISE = 10.0  # instrument-noise std in nm/m/s; event and traffic amplitudes are relative to it
_INT16_PEAK = 32_000  # a little headroom below 32767 so rounding cannot overflow
_CHUNK_ROWS = 1024  # one sliding window of all channels per chunk: a window read touches ~2
_EQ_COMPONENTS = ((0.7, 0.6), (1.0, 1.0), (1.4, 0.5))  # (frequency multiple, weight)

Spectrum = Callable[[np.ndarray], np.ndarray]  # frequency (Hz) -> amplitude


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
        return list(CLASS_NAMES[:num_files])
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
        manifest[name] = {"label": label, "events": events, "start_time": iso_time(start), **faults}
    # Last: its presence marks the directory complete (`generated_once(done=LABELS_FILE)`).
    write_json_atomic(os.path.join(directory, LABELS_FILE), manifest)
    return paths


def _write_recording(path: str, data: np.ndarray, dtype: str, fs: float, spacing: float,
                     start: float) -> None:
    rows = data.T  # interrogators write time-major: one row per time sample
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["format"] = FORMAT
        f.attrs["sampling_rate_hz"] = float(fs)
        f.attrs["channel_spacing_m"] = float(spacing)
        f.attrs["start_time"] = iso_time(start)
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

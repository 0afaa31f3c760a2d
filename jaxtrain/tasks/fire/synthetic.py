"""Synthetic multi-area fire-detection sensor logs in the ``jaxtrain-fire-v1`` HDF5 layout.

Each area has one sensor node sampling six channels once per minute. Normal operation has
per-area baselines, occupancy/HVAC daily cycles, slow sensor drift, noise and nuisance events
(cooking, dust, vehicle exhaust, door openings, burnt food/cigarettes/welding, longer activity
such as an idling truck). Rare incidents start with a smouldering WARNING phase (15-45 min of
slow, sustained joint rise of smoke, CO and PM2.5, temperature slightly up, humidity down),
followed by a flaming FIRE phase (10-40 min of strong rise on all channels), then suppression.

Warning levels overlap normal ones (baselines, drift, nuisance events), so one reading cannot
separate warning from normal; the sustained joint rise over a window can.

The file layout is described in layout.py; `generate` is the only public function.
"""

from __future__ import annotations

import dataclasses
import os
from typing import NamedTuple

import h5py
import numpy as np

from jaxtrain.files import atomic_path
from jaxtrain.tasks.fire.layout import (
    CHANNEL_NAMES,
    CHANNEL_UNITS,
    CLASS_NAMES,
    FORMAT,
    SAMPLE_PERIOD_S,
)

START_TIMESTAMP = 1_704_067_200  # 2024-01-01 00:00:00 UTC (a Monday)
AREA_NAMES: tuple[str, ...] = ("kitchen", "warehouse", "office", "server_room", "loading_dock")

_C = len(CHANNEL_NAMES)
_T, _SMOKE, _CO, _CO2, _RH, _PM = range(_C)
_DAY = 24 * 60
_BLOCK = 1 << 17  # minutes generated at a time: bounds memory for any length
_FIRE_FRACTION = 0.03  # target share of fire minutes; sets the incident rate
_MIN_GAP = 180  # quiet minutes after an incident's decay before the next warning may start
_POST = 20  # minutes over which a suppressed fire decays back to the baseline


# ----------------------------------------------------------------------------- area profiles
@dataclasses.dataclass(frozen=True)
class _Profile:
    """Static description of one monitored room (channel order as CHANNEL_NAMES)."""

    base: tuple[float, ...]
    occ: tuple[float, ...]  # added at full occupancy / activity
    noise: tuple[float, ...]  # white sensor noise sd
    drift: tuple[float, ...]  # stationary sd of the slow sensor drift
    diurnal_t: float  # outdoor/HVAC temperature swing amplitude (degC)
    diurnal_rh: float  # humidity swing amplitude, anti-phase to temperature (%)
    schedule: str  # occupancy schedule name, see _occupancy
    # Nuisance events per hour at full activity, in _NUISANCE_KINDS order.
    rates: tuple[float, float, float, float, float, float]


_PROFILES: tuple[_Profile, ...] = (
    _Profile(  # kitchen: cooking spikes around meals, warm and humid
        base=(22.0, 0.10, 2.0, 520.0, 48.0, 12.0),
        occ=(2.5, 0.08, 2.0, 300.0, 6.0, 10.0),
        noise=(0.08, 0.012, 0.4, 8.0, 0.4, 1.0),
        drift=(0.5, 0.08, 2.0, 30.0, 2.5, 4.0),
        diurnal_t=1.5,
        diurnal_rh=4.0,
        schedule="kitchen",
        rates=(1.0, 0.05, 0.0, 0.3, 0.5, 0.12),
    ),
    _Profile(  # warehouse: forklift dust and exhaust, cold, large door
        base=(14.0, 0.15, 1.5, 440.0, 45.0, 20.0),
        occ=(2.0, 0.06, 1.5, 60.0, -2.0, 12.0),
        noise=(0.10, 0.015, 0.4, 8.0, 0.5, 1.5),
        drift=(0.6, 0.10, 2.0, 20.0, 3.0, 6.0),
        diurnal_t=2.5,
        diurnal_rh=5.0,
        schedule="warehouse",
        rates=(0.0, 0.5, 0.25, 0.5, 0.4, 0.12),
    ),
    _Profile(  # office: occupancy-driven CO2, very clean air
        base=(21.0, 0.05, 0.8, 480.0, 38.0, 7.0),
        occ=(1.5, 0.02, 0.5, 450.0, 4.0, 4.0),
        noise=(0.06, 0.010, 0.3, 8.0, 0.3, 0.8),
        drift=(0.4, 0.06, 1.5, 30.0, 2.0, 3.0),
        diurnal_t=1.0,
        diurnal_rh=3.0,
        schedule="office",
        rates=(0.12, 0.05, 0.0, 0.2, 0.3, 0.05),
    ),
    _Profile(  # server room: tightly controlled, few events, strong sensor drift matters
        base=(19.0, 0.04, 0.5, 430.0, 33.0, 3.0),
        occ=(0.5, 0.0, 0.0, 25.0, 0.5, 0.5),
        noise=(0.05, 0.008, 0.25, 6.0, 0.3, 0.5),
        drift=(0.6, 0.08, 1.5, 20.0, 2.0, 2.5),
        diurnal_t=0.5,
        diurnal_rh=1.5,
        schedule="office",
        rates=(0.0, 0.04, 0.0, 0.08, 0.1, 0.03),
    ),
    _Profile(  # loading dock: truck exhaust, dust and open doors all day
        base=(9.0, 0.12, 5.0, 470.0, 62.0, 28.0),
        occ=(1.0, 0.06, 6.0, 80.0, -3.0, 15.0),
        noise=(0.12, 0.015, 0.6, 10.0, 0.6, 2.0),
        drift=(0.7, 0.10, 3.0, 25.0, 3.5, 7.0),
        diurnal_t=3.5,
        diurnal_rh=8.0,
        schedule="dock",
        rates=(0.0, 0.3, 0.7, 0.8, 0.5, 0.2),
    ),
)

# Nuisance events (all labelled normal). Amplitudes: per-channel change between lo and hi,
# log-uniform in a magnitude shared by all channels, so a big event is big everywhere it acts.
# Timing: linear rise and hold in whole minutes drawn from [lo, hi), then exponential decay.
# "combustion" has the smoke + CO + PM mix of a smoulder at mid-warning levels, so a single
# reading cannot tell them apart; it holds longer than the other spikes so that such levels
# cover a share of normal time comparable to warnings. "activity" has the same mix but ramps up
# and then holds for 10-40 min: its window statistics (mean/std/min/max/last) resemble a
# smoulder's and only the flat recent slope gives it away. It ramps at least ~2x faster than
# the fastest smoulder, so its onset stays separable too.
_NUISANCE_KINDS = ("cooking", "dust", "exhaust", "door", "combustion", "activity")
_NUISANCE_LO = np.array(
    [
        [0.2, 0.08, 2.0, 20.0, 1.0, 15.0],  # cooking: heat, smoke, CO, steam or not, grease PM
        [0.0, 0.04, 0.0, 0.0, 0.0, 20.0],  # dust: optical smoke + PM only
        [0.0, 0.01, 5.0, 30.0, 0.0, 8.0],  # vehicle exhaust: CO, CO2, PM
        [-0.5, 0.0, 0.0, -10.0, 1.0, 1.0],  # door: cold air, humidity step
        [0.05, 0.08, 3.0, 10.0, 0.3, 10.0],  # combustion: burnt toast, a cigarette, welding
        [0.05, 0.3, 10.0, 20.0, 0.3, 40.0],  # activity: grill session, idling truck, LPG forklift
    ]
)
_NUISANCE_HI = np.array(
    [
        [2.0, 1.2, 25.0, 120.0, 10.0, 200.0],
        [0.0, 0.7, 0.0, 0.0, 0.0, 250.0],
        [0.0, 0.10, 60.0, 250.0, 0.0, 80.0],
        [-5.0, 0.0, 0.0, -60.0, 8.0, 8.0],
        [1.0, 1.0, 45.0, 100.0, 2.0, 150.0],
        [1.0, 1.0, 45.0, 100.0, 2.0, 150.0],
    ]
)
_RISE = ((1, 3), (1, 3), (1, 3), (1, 2), (1, 3), (2, 6))
_HOLD = ((0, 3), (0, 3), (0, 3), (2, 15), (0, 10), (10, 41))
_TAU = ((2.0, 8.0), (2.0, 8.0), (2.0, 8.0), (3.0, 6.0), (2.0, 8.0), (3.0, 8.0))
_NUISANCE_LEN = 100  # minutes of support: covers the longest rise + hold + 6 tau
# Humidity may go either way (weather at the door, frying vs boiling, ...).
_SIGNED_RH = (True, False, False, True, True, True)

# Smouldering rise per minute at scale 1 and fire amplitude ranges (lo, hi).
_WARN_RATE = np.array([0.04, 0.02, 0.65, 1.3, -0.08, 2.0])
_FIRE_LO = np.array([15.0, 3.0, 80.0, 800.0, -8.0, 200.0])
_FIRE_HI = np.array([50.0, 10.0, 400.0, 3000.0, -20.0, 800.0])
_CLIP_LO = np.array([-40.0, 0.0, 0.0, 300.0, 1.0, 0.0])
_CLIP_HI = np.array([150.0, 100.0, 5000.0, 40000.0, 100.0, 5000.0])


def _area_names(num_areas: int) -> list[str]:
    return [AREA_NAMES[i] if i < len(AREA_NAMES) else f"area_{i}" for i in range(num_areas)]


def _area_profile(index: int, rng: np.random.Generator) -> _Profile:
    """Known profile, or a jittered copy of one for extra areas (so they are not clones)."""
    p = _PROFILES[index % len(_PROFILES)]
    if index < len(_PROFILES):
        return p
    jitter = rng.uniform(0.8, 1.2, size=_C)
    return dataclasses.replace(p, base=tuple(float(b) for b in np.asarray(p.base) * jitter))


# ----------------------------------------------------------------------------- time structure
def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _occupancy(schedule: str, minute: np.ndarray) -> np.ndarray:
    """Activity level in [0, 1] for absolute minute indices (day 0 is a Monday)."""
    hour = (minute % _DAY) / 60.0
    weekday = (minute // _DAY) % 7 < 5
    if schedule == "kitchen":
        meals = np.exp(-0.5 * ((hour - 12.5) / 1.0) ** 2) + np.exp(
            -0.5 * ((hour - 19.0) / 1.2) ** 2
        )
        open_ = _sigmoid((hour - 6.5) / 0.5) * _sigmoid((22.0 - hour) / 0.5)
        return np.clip(0.35 * open_ + 0.65 * meals, 0.0, 1.0)
    if schedule == "warehouse":
        shift = _sigmoid((hour - 6.0) / 0.5) * _sigmoid((22.0 - hour) / 0.5)
        return shift * np.where(weekday, 1.0, 0.3)
    if schedule == "dock":
        shift = _sigmoid((hour - 5.0) / 0.5) * _sigmoid((21.0 - hour) / 0.5)
        return shift * np.where(weekday, 1.0, 0.5)
    work = _sigmoid((hour - 8.0) / 0.7) * _sigmoid((18.0 - hour) / 0.7)
    return work * np.where(weekday, 1.0, 0.15)


def _drift_knots(profile: _Profile, n_knots: int, rng: np.random.Generator) -> np.ndarray:
    """Hourly Ornstein-Uhlenbeck drift (tau ~ 4 days): bounded, unlike a pure random walk."""
    sd = np.asarray(profile.drift)
    a = np.exp(-60.0 / (4 * _DAY))
    eps = rng.standard_normal((n_knots, _C)) * sd * np.sqrt(1.0 - a * a)
    knots = np.empty((n_knots, _C))
    x = rng.standard_normal(_C) * sd
    for i in range(n_knots):  # ~17k steps for 1M minutes: cheap, and avoids a scipy dependency
        x = a * x + eps[i]
        knots[i] = x
    return knots


# ----------------------------------------------------------------------------- event planning
class _Nuisance(NamedTuple):
    """Time-sorted nuisance events: rise over `rise` minutes, hold, then decay with `tau`."""

    start: np.ndarray  # (n,) first minute
    amp: np.ndarray  # (n, C) peak change per channel
    rise: np.ndarray
    hold: np.ndarray
    tau: np.ndarray


def _plan_nuisance(profile: _Profile, total: int, rng: np.random.Generator) -> _Nuisance:
    """Poisson nuisance events, thinned by the area's activity level."""
    starts, amps, rises, holds, taus = [], [], [], [], []
    for kind, rate in enumerate(profile.rates):
        if rate <= 0.0:
            continue
        # A floor on activity keeps some night-time events (cleaning, deliveries, HVAC).
        n = rng.poisson(rate * total / 60.0)
        t = np.sort(rng.integers(0, total, size=n))
        act = _occupancy(profile.schedule, t)
        t = t[rng.random(n) < np.maximum(act, 0.1)]
        m = rng.random(t.size)[:, None]
        lo, hi = _NUISANCE_LO[kind], _NUISANCE_HI[kind]
        # Log-uniform between lo and hi with a shared magnitude; zero entries stay zero.
        ratio = np.where(lo != 0, hi / np.where(lo != 0, lo, 1.0), 1.0)
        amp = lo * ratio**m * rng.uniform(0.8, 1.2, size=(t.size, _C))
        if _SIGNED_RH[kind]:
            amp[:, _RH] *= rng.choice([-1.0, 1.0], size=t.size)
        starts.append(t)
        amps.append(amp)
        rises.append(rng.integers(*_RISE[kind], size=t.size))
        holds.append(rng.integers(*_HOLD[kind], size=t.size))
        taus.append(rng.uniform(*_TAU[kind], size=t.size))
    if not starts:
        z = np.zeros(0)
        return _Nuisance(z.astype(np.int64), np.zeros((0, _C)), z.astype(np.int64), z, z)
    order = np.argsort(np.concatenate(starts), kind="stable")
    return _Nuisance(
        np.concatenate(starts)[order],
        np.concatenate(amps)[order],
        np.concatenate(rises)[order],
        np.concatenate(holds)[order],
        np.concatenate(taus)[order],
    )


@dataclasses.dataclass
class _Incidents:
    start: np.ndarray  # warning start minute
    warn: np.ndarray  # warning duration
    fire: np.ndarray  # fire duration
    rate: np.ndarray  # (n, C) smouldering rise per minute
    amp: np.ndarray  # (n, C) fire amplitude
    tau_f: np.ndarray  # fire growth time constant
    tau_d: np.ndarray  # post-suppression decay time constant


def _plan_incidents(total: int, rng: np.random.Generator) -> _Incidents:
    """Warning->fire incidents at random times separated by at least _MIN_GAP quiet minutes."""
    mean_warn, mean_fire = 15 + 30 * 2 / 3, 10 + 30 / 3.5  # Beta(2,1) and Beta(1,2.5) means
    mean_gap = max(mean_fire / _FIRE_FRACTION - mean_warn - mean_fire - _POST - _MIN_GAP, 1.0)
    n_max = int(total / (15 + 10 + _POST + _MIN_GAP)) + 2
    warn = np.rint(15 + 30 * rng.beta(2.0, 1.0, n_max)).astype(np.int64)
    fire = np.rint(10 + 30 * rng.beta(1.0, 2.5, n_max)).astype(np.int64)
    gap = _MIN_GAP + rng.exponential(mean_gap, n_max).astype(np.int64)
    span = warn + fire + _POST
    # The first gap also leaves a full 60-minute window of normal data before the first warning.
    start = np.cumsum(gap + np.concatenate([[0], span[:-1]]))
    keep = start + warn + fire <= total
    n = int(keep.sum())
    scale = rng.uniform(0.8, 1.4, size=(n, 1)) * rng.uniform(0.75, 1.25, size=(n, _C))
    m = rng.random((n, 1))
    return _Incidents(
        start=start[keep],
        warn=warn[keep],
        fire=fire[keep],
        rate=_WARN_RATE * scale,
        amp=_FIRE_LO * (_FIRE_HI / _FIRE_LO) ** m * rng.uniform(0.85, 1.15, size=(n, _C)),
        tau_f=rng.uniform(5.0, 12.0, size=n),
        tau_d=rng.uniform(1.5, 3.0, size=n),
    )


# ----------------------------------------------------------------------------- rendering
def _select(start: np.ndarray, length: int, b0: int, b1: int) -> np.ndarray:
    """Indices of events (sorted by start) whose support [start, start+length) meets [b0, b1)."""
    return np.arange(np.searchsorted(start, b0 - length + 1), np.searchsorted(start, b1))


def _scatter(out: np.ndarray, pos: np.ndarray, values: np.ndarray, b0: int) -> None:
    """Add values (n, L, C) at absolute minutes pos (n, L) into the block out (B, C)."""
    rel = pos - b0
    ok = (rel >= 0) & (rel < out.shape[0])
    np.add.at(out, rel[ok], values[ok])


def _render_nuisance(out: np.ndarray, ev: _Nuisance, b0: int) -> None:
    start, amp, rise, hold, tau = ev
    length = _NUISANCE_LEN
    idx = _select(start, length, b0, b0 + out.shape[0])
    if idx.size == 0:
        return
    k = np.arange(length)[None, :]
    r, h, tt = rise[idx, None], hold[idx, None], tau[idx, None]
    shape = np.where(k < r, (k + 1) / r, np.where(k < r + h, 1.0, np.exp(-(k - r - h + 1) / tt)))
    _scatter(out, start[idx, None] + k, shape[:, :, None] * amp[idx, None, :], b0)


def _render_incidents(
    out: np.ndarray, label: np.ndarray, risk: np.ndarray, inc: _Incidents, b0: int
) -> None:
    length = 45 + 40 + _POST
    b1 = b0 + out.shape[0]
    idx = _select(inc.start, length, b0, b1)
    if idx.size == 0:
        return
    k = np.arange(length)[None, :]
    w, f = inc.warn[idx, None], inc.fire[idx, None]
    in_warn, in_fire = k < w, (k >= w) & (k < w + f)
    # Smouldering: a small onset step (three minutes' worth) then a steady linear rise, so the
    # joint trend is detectable within minutes while levels stay in the normal range early on.
    warn_lvl = np.minimum(k + 3, w + 2)[:, :, None] * inc.rate[idx, None, :]
    tf = np.clip(k - w + 1, 0, None)
    fire_lvl = (1.0 - np.exp(-tf / inc.tau_f[idx, None]))[:, :, None] * inc.amp[idx, None, :]
    level = warn_lvl + fire_lvl
    # After suppression everything decays from the level reached at the end of the fire.
    end_lvl = np.take_along_axis(level, (w + f - 1)[:, :, None], axis=1)
    td = np.clip(k - w - f + 1, 0, None)
    decay = np.exp(-td / inc.tau_d[idx, None])[:, :, None] * end_lvl
    level = np.where((in_warn | in_fire)[:, :, None], level, decay)
    pos = inc.start[idx, None] + k
    _scatter(out, pos, level, b0)
    lab = np.where(in_warn, 1, np.where(in_fire, 2, 0))
    rsk = np.where(
        in_warn,
        0.3 + 0.4 * k / np.maximum(w - 1, 1),
        np.where(in_fire, 0.8 + 0.2 * np.minimum((k - w) / 10.0, 1.0), 0.0),
    )
    rel = pos - b0
    ok = (rel >= 0) & (rel < out.shape[0]) & (lab > 0)
    label[rel[ok]] = lab[ok]
    risk[rel[ok]] = rsk[ok]


def _render_block(
    profile: _Profile,
    knots: np.ndarray,
    nuisance: _Nuisance,
    incidents: _Incidents,
    b0: int,
    b1: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    minute = np.arange(b0, b1)
    hour = (minute % _DAY) / 60.0
    occ = _occupancy(profile.schedule, minute)[:, None]
    x = np.asarray(profile.base) + occ * np.asarray(profile.occ)
    outdoor = np.cos(2 * np.pi * (hour - 15.0) / 24.0)  # warmest mid-afternoon
    x[:, _T] += profile.diurnal_t * outdoor
    x[:, _RH] -= profile.diurnal_rh * outdoor
    # Drift: linear interpolation between hourly knots, per channel.
    kpos = minute / 60.0
    i0 = np.floor(kpos).astype(np.int64)
    frac = (kpos - i0)[:, None]
    x += knots[i0] * (1.0 - frac) + knots[i0 + 1] * frac
    # A drifted zero point below 0 would be clipped away with the start of a smoulder, hiding
    # the first minutes of the rise; keep the smoke/CO/PM baselines positive instead.
    conc = [_SMOKE, _CO, _PM]
    x[:, conc] = np.maximum(x[:, conc], 0.5 * np.asarray(profile.base)[conc])
    _render_nuisance(x, nuisance, b0)
    label = np.zeros(b1 - b0, dtype=np.int8)
    risk = np.zeros(b1 - b0, dtype=np.float32)
    _render_incidents(x, label, risk, incidents, b0)
    # Sensor noise: an absolute floor plus a relative part for the concentration sensors.
    noise_sd = np.asarray(profile.noise) + 0.02 * np.abs(x) * (np.arange(_C) != _T)
    x += rng.standard_normal(x.shape) * noise_sd
    np.clip(x, _CLIP_LO, _CLIP_HI, out=x)
    return x.astype(np.float32), label, risk


# ----------------------------------------------------------------------------- public API
def generate(
    path: str | os.PathLike[str],
    *,
    samples_per_area: int = 20_000,
    num_areas: int = 5,
    seed: int = 0,
) -> None:
    """Write a synthetic fire-detection log to ``path`` (atomically, deterministic per seed)."""
    if samples_per_area < 1:
        raise ValueError(f"samples_per_area must be >= 1, got {samples_per_area}")
    if num_areas < 1:
        raise ValueError(f"num_areas must be >= 1, got {num_areas}")
    total = int(samples_per_area)
    names = _area_names(num_areas)
    chunk = (min(total, 4096), _C)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["format"] = FORMAT
        f.attrs["sample_period_s"] = SAMPLE_PERIOD_S
        f.attrs["channel_names"] = list(CHANNEL_NAMES)
        f.attrs["channel_units"] = list(CHANNEL_UNITS)
        f.attrs["class_names"] = list(CLASS_NAMES)
        f.attrs["area_names"] = names
        f.attrs["seed"] = int(seed)
        areas = f.create_group("areas")
        for a, name in enumerate(names):
            # Independent streams per area and purpose keep areas reproducible on their own.
            plan_rng = np.random.default_rng([seed, a, 0])
            profile = _area_profile(a, plan_rng)
            knots = _drift_knots(profile, total // 60 + 2, plan_rng)
            nuisance = _plan_nuisance(profile, total, plan_rng)
            incidents = _plan_incidents(total, plan_rng)
            noise_rng = np.random.default_rng([seed, a, 1])
            g = areas.create_group(name)
            d_read = g.create_dataset("readings", (total, _C), dtype="f4", chunks=chunk)
            d_ts = g.create_dataset("timestamp", (total,), dtype="i8", chunks=chunk[:1])
            d_lab = g.create_dataset("label", (total,), dtype="i1", chunks=chunk[:1])
            d_risk = g.create_dataset("risk", (total,), dtype="f4", chunks=chunk[:1])
            for b0 in range(0, total, _BLOCK):
                b1 = min(b0 + _BLOCK, total)
                x, lab, rsk = _render_block(
                    profile, knots, nuisance, incidents, b0, b1, noise_rng
                )
                d_read[b0:b1] = x
                d_lab[b0:b1] = lab
                d_risk[b0:b1] = rsk
                d_ts[b0:b1] = START_TIMESTAMP + SAMPLE_PERIOD_S * np.arange(b0, b1)

"""Label DAS recordings by eye, one file at a time; writes the labels.json training reads.

    python -m jaxtrain.tasks.das.label --data_dir=DIR [--layout=jaxtrain] [--labels=DIR/labels.json]
    python -m jaxtrain.tasks.das.label --data_dir=DIR --list                 # status of every file
    python -m jaxtrain.tasks.das.label --data_dir=DIR --set a.h5=0 --set b.h5=quarry_blast
    python -m jaxtrain.tasks.das.label --data_dir=DIR --from_csv=labels.csv  # rows: file,label

Interactive: for every recording (``*.h5``/``*.hdf5``, as training lists them) that
has no label yet, writes a waterfall PNG (RMS per time block and channel in dB, colour scale
clipped at percentiles) to ``--png_dir`` and prints its path with a terminal summary (a coarse
character waterfall, an energy row, the start time with weekday, and the dominant frequency
of the loudest 2 s against the file's own background), then asks:
0 = earthquake, 1 = quarry blast, 2 = noise (no event), s = skip (ask again next run),
q = quit. The answers are the class ids of `jaxtrain.tasks.das.schema.CLASS_NAMES`.

Every answer is saved at once: labels.json is re-read, the one entry updated (its other
fields, e.g. events, kept) and written to a temporary file that replaces the old one
(`jaxtrain.files.atomic_path`), so a crash or Ctrl-C never leaves a half-written labels.json
and a re-run continues with the files still unlabelled. Files are read in chunks
(`--chunk_mb`), never whole. An unreadable file is reported in one line naming it and skipped.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime as dt
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from jaxtrain.cli import one_line
from jaxtrain.files import atomic_path, read_json
from jaxtrain.tasks.das.labels import entry_label
from jaxtrain.tasks.das.reader import (
    LAYOUTS,
    DASLayout,
    list_recordings,
    open_recording,
    resolve_layout,
)
from jaxtrain.tasks.das.schema import CLASS_NAMES, LABELS_FILE

QUIT, SKIP = "q", "s"
PREVIEW_DIR = "label_previews"
_RAMP = " .:-=+*#%@"  # ASCII, so any terminal shows it
_TOP = 32  # loudest segments kept for the dominant frequency (bounded memory on long files)
_PROMPT = "label? 0 = earthquake, 1 = quarry blast, 2 = noise, s = skip, q = quit: "


# ----------------------------------------------------------------------------- labels.json
def parse_label(value: str) -> str:
    """'0'/'1'/'2' or a class name ('quarry blast', 'quarry-blast' too) -> the class name."""
    text = str(value).strip().lower().replace(" ", "_").replace("-", "_")
    if text.isdigit() and int(text) < len(CLASS_NAMES):
        return CLASS_NAMES[int(text)]
    if text in CLASS_NAMES:
        return text
    raise ValueError(f"unknown label {value!r}; use 0 = earthquake, 1 = quarry_blast, "
                     "2 = noise (or the names)")


def read_labels(path: str) -> dict[str, Any]:
    """The labels file as a dict ({} when it does not exist yet)."""
    labels = read_json(path, default={})
    if not isinstance(labels, dict):
        raise ValueError(f"{path}: expected an object {{file name: {{\"label\": ...}}}}")
    return labels


def write_labels(path: str, labels: Mapping[str, Any]) -> None:
    """Atomic: the old file stays intact until the new one is complete on disk."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(labels, f, indent=1, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


def file_label(entry: Any) -> str | None:
    """The class name an entry holds, or None (absent, or not one of `CLASS_NAMES`)."""
    label = entry_label(entry)
    return label if label in CLASS_NAMES else None


def save_labels(path: str, new: Mapping[str, str], *, source: str = "manual") -> None:
    """Merge {file name: class name} into the labels file, keeping the entries' other fields."""
    labels = read_labels(path)  # fresh: keep whatever else changed the file meanwhile
    stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    for name, label in new.items():
        old = labels.get(name)
        entry = dict(old) if isinstance(old, Mapping) else {}
        entry.update(label=label, labelled_by=source, labelled_at=stamp)
        labels[name] = entry
    write_labels(path, labels)


# ----------------------------------------------------------------------------- overview
@dataclasses.dataclass
class Overview:
    """A recording reduced for display: RMS per (channel group, time block) and a spectrum."""

    path: str
    num_samples: int
    num_channels: int
    sampling_rate: float
    start_time: str | None
    rms: np.ndarray  # (channel groups, time blocks) float64
    block: int  # samples per time block
    group: int  # channels per channel group
    dominant_hz: float | None  # of the loudest segment, against the file's background
    loudest_s: float | None  # start of that segment
    excess_db: float | None  # how far that segment stands out at the dominant frequency
    max_read: int  # the most samples one read requested (chunked reading, for tests)

    @property
    def duration_s(self) -> float:
        return self.num_samples / self.sampling_rate


def overview(path: str, layout: DASLayout | str = "jaxtrain", *, columns: int = 1200,
             rows: int = 256, chunk_bytes: int = 32 * 2**20, segment_s: float = 2.0,
             spectrum_channels: int = 16) -> Overview:
    """Read `path` in chunks of about `chunk_bytes` (float32) and reduce it for display.

    RMS over blocks of ceil(T / columns) samples and groups of ceil(C / rows) channels.
    Dominant frequency: spectra of consecutive ~`segment_s` segments (Hann window, median
    over up to `spectrum_channels` evenly spaced channels, so dead or noisy channels do not
    decide); of the 32 loudest segments (0.5 Hz to 0.45 * rate), the one whose spectrum
    stands out most from the file's mean log-spectrum (the background, which on a fibre
    peaks at low frequency), smoothed over ~1 Hz; its peak frequency and height (dB).
    Raises ValueError/FileNotFoundError naming the file if it cannot be read.
    """
    rec = open_recording(path, layout)
    n, c, fs = rec.num_samples, rec.num_channels, rec.sampling_rate
    block = max(1, -(-n // columns))
    group = max(1, -(-c // rows))
    nfft = max(16, int(2 ** np.ceil(np.log2(segment_s * fs))))
    step = max(1, chunk_bytes // (4 * c)) // nfft * nfft or nfft  # whole segments per chunk
    sumsq = np.zeros((c, -(-n // block)))
    picks = np.unique(np.linspace(0, c - 1, min(spectrum_channels, c)).round().astype(int))
    freqs = np.fft.rfftfreq(nfft, 1.0 / fs)
    band = (freqs >= 0.5) & (freqs <= 0.45 * fs)
    taper = np.hanning(nfft).astype(np.float32)
    log_sum, segments = np.zeros(len(freqs)), 0
    top: list[tuple[float, int, np.ndarray]] = []  # the loudest segments: (power, start, psd)
    max_read = 0
    try:
        for a in range(0, n, step):
            b = min(n, a + step)
            x = np.nan_to_num(rec.read(a, b, check_finite=False), posinf=0.0, neginf=0.0)
            max_read = max(max_read, b - a)
            cols = np.arange(a, b) // block
            starts = np.flatnonzero(np.diff(cols, prepend=cols[0] - 1))
            sumsq[:, cols[starts]] += np.add.reduceat(np.square(x), starts, axis=1,
                                                      dtype=np.float64)
            k = (b - a) // nfft
            if k:
                seg = x[picks, : k * nfft].reshape(len(picks), k, nfft)
                seg = (seg - seg.mean(-1, keepdims=True)) * taper
                psd = np.median(np.abs(np.fft.rfft(seg, axis=-1)) ** 2, axis=0)  # (k, freqs)
                log_sum += np.log(psd + 1e-20).sum(0)
                segments += k
                power = psd[:, band].sum(1)
                for j in np.argsort(power)[::-1][:_TOP]:
                    top.append((float(power[j]), a + int(j) * nfft, psd[j]))
                top = sorted(top, key=lambda item: -item[0])[:_TOP]
    finally:
        rec.close()
    counts = np.full(sumsq.shape[1], float(block))
    counts[-1] = n - block * (sumsq.shape[1] - 1)
    pad = (-c) % group  # channel groups: mean square over each group's channels
    grouped = np.concatenate([sumsq, np.zeros((pad, sumsq.shape[1]))]).reshape(
        -1, group, sumsq.shape[1]).sum(1)
    members = np.full(len(grouped), group, np.float64)
    members[-1] = group - pad
    rms = np.sqrt(grouped / members[:, None] / counts[None])
    dominant = loudest_s = excess = None
    if top and band.any():
        # Among the raw-loudest segments, the one standing out most from the background
        # (a vehicle's low-frequency strain is loud but ordinary for this fibre); its
        # log-ratio smoothed over ~1 Hz so a single noisy bin cannot win.
        background = log_sum / segments
        width = max(1, round(1.0 / (freqs[1] - freqs[0])))
        smooth = [np.convolve(np.log(psd[band] + 1e-20) - background[band],
                              np.ones(width) / width, mode="same") for _, _, psd in top]
        best = int(np.argmax([r.max() for r in smooth]))
        dominant = float(freqs[band][np.argmax(smooth[best])])
        loudest_s = top[best][1] / fs
        excess = float(10.0 / np.log(10.0) * smooth[best].max())  # power dB at that frequency
    return Overview(path, n, c, fs, rec.start_time, rms, block, group, dominant, loudest_s,
                    excess, max_read)


def _db(rms: np.ndarray) -> np.ndarray:
    """dB relative to each channel's median: noisy or weakly coupled channels stop
    dominating the picture and events show as what they are, bursts above the background."""
    db = 20.0 * np.log10(np.maximum(rms, 1e-12))
    return db - np.median(db, axis=1, keepdims=True)


def _clip_range(db: np.ndarray, lo: float = 2.0, hi: float = 99.8) -> tuple[float, float]:
    """Robust colour limits: percentiles, at least 6 dB apart (a flat file stays dark)."""
    vmin, vmax = np.percentile(db, [lo, hi])
    return float(vmin), float(max(vmax, vmin + 6.0))


def write_png(ov: Overview, path: str) -> str:
    """Waterfall (time x channel, dB RMS) with the channel-median energy above it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    db = _db(ov.rms)
    vmin, vmax = _clip_range(db)
    fig, (top, ax) = plt.subplots(2, 1, figsize=(12, 6.5), sharex=True,
                                  gridspec_kw={"height_ratios": [1, 4]})
    t = (np.arange(db.shape[1]) + 0.5) * ov.block / ov.sampling_rate
    top.plot(t, np.median(db, axis=0), lw=0.8, color="k")
    top.set_ylabel("median dB")  # over channels, each relative to its own median
    if ov.loudest_s is not None:
        top.axvline(ov.loudest_s, color="tab:red", lw=0.8)
    im = ax.imshow(db, aspect="auto", cmap="magma", vmin=vmin, vmax=vmax, interpolation="nearest",
                   extent=(0.0, ov.duration_s, ov.num_channels, 0.0))
    ax.set_xlabel("time since file start (s)")
    ax.set_ylabel("channel")
    fig.colorbar(im, ax=[top, ax], label="RMS, dB over the channel's median (clipped at "
                 "2-99.8th percentile)", pad=0.01)
    dom = "-" if ov.dominant_hz is None else f"{ov.dominant_hz:.1f} Hz"
    top.set_title(f"{os.path.basename(ov.path)}   start {ov.start_time or '?'}   "
                  f"{ov.duration_s:.1f} s x {ov.num_channels} ch @ {ov.sampling_rate:g} Hz   "
                  f"dominant {dom}", fontsize=9)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path


def _coarse(db: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Max-pool (dB) to at most rows x cols, so a short event survives the reduction."""
    r, c = min(rows, db.shape[0]), min(cols, db.shape[1])
    re = np.array_split(np.arange(db.shape[0]), r)
    ce = np.array_split(np.arange(db.shape[1]), c)
    return np.array([[db[np.ix_(a, b)].max() for b in ce] for a in re])


def _chars(values: np.ndarray, vmin: float, vmax: float) -> list[str]:
    level = np.rint(np.clip((values - vmin) / (vmax - vmin), 0.0, 1.0) * (len(_RAMP) - 1))
    return ["".join(_RAMP[v] for v in row) for row in np.atleast_2d(level).astype(int)]


def summary(ov: Overview, *, width: int = 72, height: int = 12) -> str:
    """A few lines for the terminal: header, character waterfall, energy row, frequency."""
    db = _db(ov.rms)
    vmin, vmax = _clip_range(db, 5.0, 99.5)
    coarse = _coarse(db, height, width)
    when = ""
    if ov.start_time:
        with contextlib.suppress(ValueError):
            start = dt.datetime.fromisoformat(ov.start_time.replace("Z", "+00:00"))
            when = f" ({start:%a %H:%M} {start.tzname() or ''})".replace(" )", ")")
    lines = [f"{os.path.basename(ov.path)}: {ov.duration_s:.1f} s, {ov.num_channels} channels, "
             f"{ov.sampling_rate:g} Hz, start {ov.start_time or '?'}{when}"]
    edges = np.array_split(np.arange(db.shape[0]), len(coarse))  # rms rows per text row
    for row, groups in zip(_chars(coarse, vmin, vmax), edges, strict=True):
        lines.append(f"  ch {groups[0] * ov.group:>5} |{row}|")
    energy = _coarse(np.median(db, axis=0, keepdims=True), 1, width)
    lines.append(f"  energy   |{_chars(energy, *_clip_range(energy, 0.0, 100.0))[0]}|")
    span = f"0 s{' ' * max(1, coarse.shape[1] - 3 - len(f'{ov.duration_s:.0f} s'))}" \
           f"{ov.duration_s:.0f} s"
    lines.append(f"           {span}")
    if ov.dominant_hz is not None:
        lines.append(f"  most outstanding 2 s at t = {ov.loudest_s:.1f} s: dominant "
                     f"{ov.dominant_hz:.1f} Hz, {ov.excess_db:+.0f} dB over the file's "
                     "background (earthquakes ~2-8 Hz, blasts ~8-25 Hz)")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the session
def default_labels_path(data_dir: str) -> str:
    return os.path.join(data_dir, LABELS_FILE)


def label_files(data_dir: str, *, labels_path: str | None = None,
                layout: DASLayout | str = "jaxtrain", png_dir: str | None = None,
                ask: Callable[[str], str] = input, out: Callable[[str], None] = print,
                **overview_kwargs: Any) -> dict[str, Any]:
    """The interactive session; `ask(prompt) -> answer` (default `input`), `out(line)`.

    Returns {"labelled", "skipped" (this session), "failed" (unreadable paths),
    "remaining" (recordings still without a label), "quit" (q or end of input)}.
    """
    labels_path = labels_path or default_labels_path(data_dir)
    png_dir = png_dir or os.path.join(os.path.dirname(os.path.abspath(labels_path)), PREVIEW_DIR)
    layout = resolve_layout(layout)  # an unknown name: one error, not one per file
    files = list_recordings(data_dir)
    labels = read_labels(labels_path)
    todo = [p for p in files if file_label(labels.get(os.path.basename(p))) is None]
    out(f"{len(files)} recordings in {data_dir}, {len(files) - len(todo)} labelled, "
        f"{len(todo)} to go; labels -> {labels_path}")
    done = {"labelled": 0, "skipped": 0, "failed": [], "remaining": len(todo), "quit": False}
    for k, path in enumerate(todo, 1):
        name = os.path.basename(path)
        try:
            ov = overview(path, layout, **overview_kwargs)
        except (ValueError, OSError) as e:
            out(f"skipping unreadable {path}: {one_line(e)}")
            done["failed"].append(path)
            continue
        out(f"\n[{k}/{len(todo)}] {summary(ov)}")
        try:
            png = write_png(ov, os.path.join(png_dir, os.path.splitext(name)[0] + ".png"))
            out(f"  image: {png}")
        except Exception as e:  # a preview failure must not stop the labelling
            out(f"  (no image: {one_line(e)})")
        while True:
            try:
                answer = ask(_PROMPT).strip().lower()
            except (EOFError, KeyboardInterrupt):
                answer = QUIT
            if answer == QUIT:
                done.update(quit=True, remaining=_unlabelled(files, labels_path))
                out(f"quit; {done['remaining']} recordings without a label "
                    "(a re-run continues with them)")
                return done
            if answer == SKIP:
                done["skipped"] += 1
                break
            try:
                label = parse_label(answer)
            except ValueError:
                out("  answer 0, 1, 2, s or q")
                continue
            save_labels(labels_path, {name: label})
            done["labelled"] += 1
            out(f"  saved {name} = {label}")
            break
    done["remaining"] = _unlabelled(files, labels_path)
    out(f"done: {done['labelled']} labelled, {done['skipped']} skipped, "
        f"{len(done['failed'])} unreadable; {done['remaining']} recordings without a label")
    return done


def _unlabelled(files: Sequence[str], labels_path: str) -> int:
    labels = read_labels(labels_path)
    return sum(file_label(labels.get(os.path.basename(p))) is None for p in files)


def _resolve_name(data_dir: str, files: Iterable[str], file: str) -> str:
    names = {os.path.basename(p) for p in files}
    name = os.path.basename(file.strip())
    if name not in names:
        raise ValueError(f"{os.path.join(data_dir, name)}: not a recording in {data_dir}")
    return name


def set_labels(data_dir: str, assignments: Sequence[str] | Mapping[str, str], *,
               labels_path: str | None = None) -> dict[str, str]:
    """Non-interactive: {file: label} or ["file=label", ...]; checked first, saved in one write."""
    labels_path = labels_path or default_labels_path(data_dir)
    if not isinstance(assignments, Mapping):
        pairs = {}
        for item in assignments:
            file, sep, label = item.rpartition("=")
            if not sep or not file:
                raise ValueError(f"--set {item!r}: expected FILE=LABEL")
            pairs[file] = label
        assignments = pairs
    files = list_recordings(data_dir)
    new = {_resolve_name(data_dir, files, f): parse_label(v) for f, v in assignments.items()}
    if new:
        save_labels(labels_path, new, source="set")
    return new


def read_csv(path: str) -> dict[str, str]:
    """Rows ``file,label`` (an optional header row, blank and '#' lines ignored)."""
    pairs: dict[str, str] = {}
    with open(path, newline="") as f:
        for line_no, row in enumerate(csv.reader(f), 1):
            if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                continue
            if len(row) < 2:
                raise ValueError(f"{path}:{line_no}: expected 'file,label', got {row!r}")
            if line_no == 1 and row[1].strip().lower() == "label":
                continue  # header
            try:
                parse_label(row[1])
            except ValueError as e:
                raise ValueError(f"{path}:{line_no}: {e}") from None
            pairs[row[0].strip()] = row[1].strip()
    return pairs


def status(data_dir: str, *, labels_path: str | None = None) -> list[str]:
    """One line per recording (label or '-'), then totals and any labels without a file."""
    labels_path = labels_path or default_labels_path(data_dir)
    labels = read_labels(labels_path)
    files = list_recordings(data_dir)
    names = [os.path.basename(p) for p in files]
    width = max((len(n) for n in names), default=4)
    lines = [f"{n:<{width}}  {file_label(labels.get(n)) or '-'}" for n in names]
    counts = {c: sum(file_label(labels.get(n)) == c for n in names) for c in CLASS_NAMES}
    missing = sorted(set(labels) - set(names))
    lines.append(f"{len(names)} recordings: " + ", ".join(f"{v} {k}" for k, v in counts.items())
                 + f", {sum(file_label(labels.get(n)) is None for n in names)} unlabelled")
    if missing:
        lines.append(f"{len(missing)} labels name no file in {data_dir} (training refuses "
                     f"them): {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    return lines


# ----------------------------------------------------------------------------- CLI
def _define_flags() -> Any:
    """Defined only when run as a program: absl flags are process-global, and other entry
    points (predict, benchmarks) define flags of the same names in test processes."""
    from absl import flags

    flags.DEFINE_string("data_dir", None, "Directory of DAS recordings.")
    flags.DEFINE_string("layout", "jaxtrain", f"File layout, one of {sorted(LAYOUTS)}.")
    flags.DEFINE_string("labels", None, "labels.json (default DATA_DIR/labels.json).")
    flags.DEFINE_string("png_dir", None, "Where the waterfall PNGs go (default "
                        f"{PREVIEW_DIR}/ next to the labels file).")
    flags.DEFINE_float("chunk_mb", 32.0, "Samples read per chunk, MiB of float32.")
    flags.DEFINE_bool("list", False, "Print each recording's label and totals.")
    flags.DEFINE_multi_string("set", None, "FILE=LABEL (0/1/2 or a class name); repeatable; "
                              "no prompts.")
    flags.DEFINE_string("from_csv", None, "CSV of file,label rows; no prompts.")
    return flags.FLAGS


def main() -> None:
    """Lists, sets or (interactively) asks for the labels of --data_dir's recordings."""
    from absl import flags

    f = flags.FLAGS
    labels_path = f.labels or default_labels_path(f.data_dir)
    if not os.path.isdir(f.data_dir):
        raise NotADirectoryError(f"not a directory: {f.data_dir}")
    if f.list:
        print("\n".join(status(f.data_dir, labels_path=labels_path)))
        return
    if f.set or f.from_csv:
        pairs: dict[str, str] = read_csv(f.from_csv) if f.from_csv else {}
        for item in f.set or []:
            file, sep, label = item.rpartition("=")
            if not sep or not file:
                raise ValueError(f"--set {item!r}: expected FILE=LABEL")
            pairs[file] = label
        new = set_labels(f.data_dir, pairs, labels_path=labels_path)
        print(f"saved {len(new)} labels to {labels_path}")
        return
    label_files(f.data_dir, labels_path=labels_path, layout=f.layout, png_dir=f.png_dir,
                chunk_bytes=int(f.chunk_mb * 2**20))


if __name__ == "__main__":
    from jaxtrain.cli import start

    _define_flags()
    start(main, required=("data_dir",), doc=__doc__)

"""The DAS labelling tool: scripted sessions, resume, atomic saves, batch forms, bad files."""

import json
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest

from jaxtrain.tasks.das import label
from jaxtrain.tasks.das.labels import load_labels
from jaxtrain.tasks.das.schema import CLASS_NAMES, LABELS_FILE
from jaxtrain.tasks.das.synthetic import generate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """Five small generated recordings (labels.json moved away: they start unlabelled)."""
    root = tmp_path_factory.mktemp("label-src")
    generate(root, num_files=5, duration_s=20.0, num_channels=16, seed=4)
    truth = load_labels(root)
    os.remove(root / LABELS_FILE)
    return root, truth


@pytest.fixture
def data_dir(recordings, tmp_path):
    src, _ = recordings
    d = tmp_path / "das"
    shutil.copytree(src, d)
    return d


class Script:
    """An `ask` that answers from a list and records which file each prompt was about."""

    def __init__(self, answers, lines):
        self.answers, self.lines, self.asked = list(answers), lines, []

    def __call__(self, prompt):
        assert "0 = earthquake" in prompt and "q = quit" in prompt
        header = [ln for ln in self.lines if ln.startswith("\n[")][-1]
        self.asked.append(header.split("] ", 1)[1].split(":", 1)[0])
        return self.answers.pop(0)


def _names(d):
    return sorted(p for p in os.listdir(d) if p.endswith(".h5"))


def test_interactive_session_then_resume(data_dir):
    names = _names(data_dir)
    labels_path = data_dir / "labels.json"
    # Before: one file fully labelled, one with metadata but no label yet (kept on save).
    events = [{"type": "earthquake", "t0": 3.0, "first_arrival_s": 4.0, "end_s": 9.0}]
    labels_path.write_text(json.dumps({names[0]: {"label": "noise", "note": "by hand"},
                                       names[1]: {"events": events, "start_time": "x"}}))
    lines = []
    snapshots = []

    def ask(prompt):  # labels.json as it is on disk when each question is asked
        snapshots.append(json.loads(labels_path.read_text()))
        return script(prompt)

    script = Script(["0", "maybe", "s", "1", "q"], lines)
    done = label.label_files(str(data_dir), ask=ask, out=lines.append)
    assert script.asked == [names[1], names[2], names[2], names[3], names[4]]
    assert done == {"labelled": 2, "skipped": 1, "failed": [], "remaining": 2, "quit": True}
    assert snapshots[1][names[1]]["label"] == "earthquake"  # saved before the next question
    assert any("answer 0, 1, 2, s or q" in ln for ln in lines)
    saved = json.loads(labels_path.read_text())
    assert saved[names[0]] == {"label": "noise", "note": "by hand"}  # untouched
    assert saved[names[1]]["label"] == "earthquake"
    assert saved[names[1]]["events"] == events and saved[names[1]]["start_time"] == "x"
    assert saved[names[3]]["label"] == "quarry_blast"
    assert names[2] not in saved and names[4] not in saved  # skipped / not reached

    # The terminal summary and the PNG of every file shown.
    text = "\n".join(lines)
    assert "dominant" in text and "energy" in text and "20.0 s, 16 channels, 250 Hz" in text
    for name in (names[1], names[2], names[3], names[4]):
        png = data_dir / "label_previews" / (name[:-3] + ".png")
        assert f"image: {png}" in text
        raw = png.read_bytes()
        assert raw.startswith(PNG_MAGIC)
        import matplotlib.image
        img = matplotlib.image.imread(str(png))
        assert img.shape[0] > 300 and img.shape[1] > 600 and img.std() > 0.05

    # Resume: only the skipped and the unreached file are asked, in order.
    lines.clear()
    script = Script(["2", "0"], lines)
    done = label.label_files(str(data_dir), ask=script, out=lines.append)
    assert script.asked == [names[2], names[4]] and done["labelled"] == 2
    saved = load_labels(data_dir)  # what training reads
    assert sorted(saved) == names
    assert {n: saved[n]["label"] for n in names} == {
        names[0]: "noise", names[1]: "earthquake", names[2]: "noise",
        names[3]: "quarry_blast", names[4]: "earthquake"}
    assert all(e["label"] in CLASS_NAMES for e in saved.values())
    assert not [p for p in os.listdir(data_dir) if ".tmp" in p]

    # Nothing left: no question; end of input (Ctrl-D) counts as quit.
    assert label.label_files(str(data_dir), ask=Script([], lines), out=lines.append)[
        "labelled"] == 0
    os.remove(labels_path)
    done = label.label_files(str(data_dir), ask=lambda p: (_ for _ in ()).throw(EOFError()),
                             out=lines.append)
    assert done["quit"] and not os.path.exists(labels_path)


def test_atomic_save_keeps_old_file_on_crash(data_dir, monkeypatch):
    names = _names(data_dir)
    labels_path = data_dir / "labels.json"
    label.save_labels(str(labels_path), {names[0]: "earthquake"})
    before = labels_path.read_bytes()
    real_dump = json.dump

    def crash(obj, f, **kw):  # half the JSON reaches the disk, then the "disk fills up"
        text = json.dumps(obj, **kw)
        f.write(text[: len(text) // 2])
        f.flush()
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(label.json, "dump", crash)
    with pytest.raises(OSError, match="No space"):
        label.label_files(str(data_dir), ask=lambda p: "1", out=lambda s: None)
    assert labels_path.read_bytes() == before  # the old file, complete and valid
    assert json.loads(before)[names[0]]["label"] == "earthquake"
    assert not [p for p in os.listdir(data_dir) if ".tmp" in p]

    monkeypatch.setattr(label.json, "dump", real_dump)
    answers = iter(["1", "q"])
    label.label_files(str(data_dir), ask=lambda p: next(answers), out=lambda s: None)
    saved = load_labels(data_dir)
    assert saved[names[0]]["label"] == "earthquake" and saved[names[1]]["label"] == "quarry_blast"


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "jaxtrain.tasks.das.label", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_non_interactive_forms_and_list(data_dir, tmp_path):
    names = _names(data_dir)
    new = label.set_labels(str(data_dir), [f"{names[0]}=0", f"{data_dir / names[1]}=quarry blast"])
    assert new == {names[0]: "earthquake", names[1]: "quarry_blast"}
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text(f"file,label\n{names[2]},1\n\n# comment\n{names[3]},noise\n")
    assert label.read_csv(str(csv_path)) == {names[2]: "1", names[3]: "noise"}

    r = _cli(f"--data_dir={data_dir}", f"--from_csv={csv_path}", f"--set={names[4]}=2",
             f"--set={names[0]}=1")  # --set overrides an earlier label
    assert r.returncode == 0, r.stderr[-2000:]
    saved = load_labels(data_dir)
    assert [saved[n]["label"] for n in names] == [
        "quarry_blast", "quarry_blast", "quarry_blast", "noise", "noise"]

    r = _cli(f"--data_dir={data_dir}", "--list")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "5 recordings: 0 earthquake, 3 quarry_blast, 2 noise, 0 unlabelled" in r.stdout
    assert f"{names[3]}  noise" in r.stdout

    r = _cli(f"--data_dir={data_dir}", f"--set={names[0]}=2", "--set=nothere.h5=0")
    assert r.returncode == 2, r.stderr[-2000:]
    err = r.stderr.strip().splitlines()[-1]
    assert err.startswith("jaxtrain: error:") and "nothere.h5" in err, err
    for bad, needle in [(["x.h5=0"], "x.h5: not a recording"),
                        ([f"{names[0]}=7"], "unknown label"), ([names[0]], "FILE=LABEL")]:
        with pytest.raises(ValueError, match=needle):
            label.set_labels(str(data_dir), bad)
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text(f"{names[0]},0\n{names[1]},volcano\n")
    with pytest.raises(ValueError, match=r"bad.csv:2: unknown label 'volcano'"):
        label.read_csv(str(bad_csv))
    assert load_labels(data_dir) == saved  # failed commands changed nothing


def test_unreadable_files_are_reported_and_skipped(data_dir):
    names = _names(data_dir)
    for n in names[2:]:
        os.remove(data_dir / n)
    (data_dir / "aaa_text.h5").write_text("not an HDF5 file")
    whole = (data_dir / names[0]).read_bytes()
    (data_dir / "aab_truncated.h5").write_bytes(whole[: len(whole) // 2])
    with h5py.File(data_dir / "aac_cube.h5", "w") as f:  # readable HDF5, wrong layout
        f.attrs["sampling_rate_hz"] = 250.0
        f["strain_rate"] = np.zeros((4, 4, 4), np.float32)
    lines = []
    done = label.label_files(str(data_dir), ask=lambda p: "0", out=lines.append)
    bad = sorted(str(data_dir / n) for n in ("aaa_text.h5", "aab_truncated.h5", "aac_cube.h5"))
    assert sorted(done["failed"]) == bad and done["labelled"] == 2
    for path in bad:
        hits = [ln for ln in lines if path in ln and ln.startswith("skipping unreadable")]
        assert len(hits) == 1 and "\n" not in hits[0], lines
    assert sorted(load_labels(data_dir)) == names[:2]


def test_overview_reads_in_chunks_and_finds_the_event(tmp_path):
    fs, seconds, channels = 250.0, 600.0, 16  # a ten-minute file
    n = int(fs * seconds)
    rng = np.random.default_rng(0)
    data = rng.normal(size=(n, channels)).astype(np.float32)
    t = np.arange(n) / fs
    burst = (t >= 400.0) & (t < 404.0)
    data[burst] += (20 * np.sin(2 * np.pi * 5.0 * t[burst]))[:, None].astype(np.float32)
    path = tmp_path / "sine.h5"
    with h5py.File(path, "w") as f:
        f.attrs["sampling_rate_hz"] = fs
        f.create_dataset("strain_rate", data=data, chunks=(1024, channels))

    small = label.overview(str(path), chunk_bytes=64 * 2**10)
    assert small.max_read * channels * 4 <= 64 * 2**10 < n * channels * 4  # never whole
    whole = label.overview(str(path), chunk_bytes=2**30)
    assert whole.max_read == n
    np.testing.assert_allclose(small.rms, whole.rms, rtol=1e-5)  # chunking changes nothing
    assert small.rms.shape == (channels, 1200) and small.block == 125  # decimated for display
    assert small.dominant_hz == pytest.approx(5.0, abs=0.6)
    assert 398.0 <= small.loudest_s <= 404.0 and small.excess_db > 15
    text = label.summary(small)
    assert "dominant 5." in text and max(len(ln) for ln in text.splitlines()) < 140
    png = label.write_png(small, str(tmp_path / "out" / "sine.png"))
    with open(png, "rb") as f:
        assert f.read(8) == PNG_MAGIC

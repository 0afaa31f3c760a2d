"""Synthetic surveillance clips written as real video files, in RWF-2000's folder layout.

A clip is a static scene (floor, wall, furniture, per-clip palette) seen by a camera that may
shake, with lighting that drifts or flickers, sensor noise and lossy MPEG-4 compression.
Stick-figure people (head, torso, two-segment arms and legs) act out one scenario:

* fight (label 1): two or three people in contact, erratic (random, non-periodic) lunges,
  punches thrown at the opponent, shoves that knock the other back, sometimes a fall; often
  with a bystander walking by.
* non-fight (label 0): walking, two people passing close by, standing and talking with
  gestures, running (fast but smooth), hugging (contact, but slow), sports/dancing (fast,
  close, but periodic) - so speed or contact alone do not tell the classes apart.

Files: `<root>/<train|val|test>/<Fight|NonFight>/<name>.avi` (names from `layout`), plus
`<root>/DONE` written last. The data cache keys on this module's source (data/synthetic.py):
changing how clips are drawn regenerates them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

FIGHT_SCENARIOS = ("brawl", "grapple")
NONFIGHT_SCENARIOS = ("walk", "pass", "talk", "run", "hug", "sports")

# Body geometry as fractions of a person's height (hip is the origin, y up).
_TORSO, _HEAD_R, _UPPER_ARM, _FOREARM, _THIGH, _SHIN = 0.32, 0.09, 0.17, 0.16, 0.24, 0.24


class _Person:
    """One figure's state: position (hip, pixels), height, facing, colours, pose angles."""

    def __init__(self, rng: np.random.Generator, x: float, y: float, size: int):
        self.x, self.y = x, y
        # a close camera, as in RWF-2000's surveillance clips: people fill half the frame
        self.height = size * rng.uniform(0.42, 0.55) * (0.8 + 0.3 * y / size)
        self.shirt = rng.uniform(20, 235, 3)
        self.pants = rng.uniform(10, 120, 3)
        self.skin = np.array([220, 180, 150]) * rng.uniform(0.45, 1.0)
        self.face = 1.0 if rng.random() < 0.5 else -1.0
        self.tilt = 0.0  # torso lean (radians, + = forward)
        self.arms = np.array([[0.2, 0.3], [-0.2, 0.3]])  # (shoulder, elbow) per arm
        self.legs = np.array([[0.1, 0.0], [-0.1, 0.0]])  # (hip, knee) per leg

    def segments(self) -> tuple[list[tuple[np.ndarray, np.ndarray, float]], np.ndarray]:
        """Capsules (start, end, radius) with colours, and the head (centre, radius)."""
        h, f = self.height, self.face
        hip = np.array([self.x, self.y])
        up = np.array([np.sin(self.tilt) * f, -np.cos(self.tilt)])
        neck = hip + up * _TORSO * h
        caps = []
        for (a, b), (c, d) in zip(self.legs, self.legs[::-1], strict=True):
            del c, d
            knee = hip + _THIGH * h * np.array([np.sin(a) * f, np.cos(a)])
            foot = knee + _SHIN * h * np.array([np.sin(a - b) * f, np.cos(a - b)])
            caps += [(hip, knee, 0.06 * h, self.pants), (knee, foot, 0.05 * h, self.pants)]
        caps.append((hip, neck, 0.10 * h, self.shirt))
        for a, b in self.arms:
            # angle 0 = hanging down, pi/2 = pointing forward (towards `face`)
            elbow = neck + _UPPER_ARM * h * np.array([np.sin(a) * f, np.cos(a)])
            hand = elbow + _FOREARM * h * np.array([np.sin(a + b) * f, np.cos(a + b)])
            caps += [(neck, elbow, 0.045 * h, self.shirt), (elbow, hand, 0.04 * h, self.skin)]
        head = neck + up * (_HEAD_R * h * 1.1)
        return caps, np.array([*head, _HEAD_R * h, *self.skin])


def _render(background: np.ndarray, people: Sequence[_Person]) -> np.ndarray:
    """Draws the people (back to front by hip height) onto a copy of the background.

    A person's body parts are capsules (the head one of zero length), tested at once against
    the pixels of the person's bounding box; where parts overlap the last drawn wins."""
    img = background.copy()
    size = img.shape[0]
    for p in sorted(people, key=lambda q: q.y):
        caps, head = p.segments()
        parts = [*caps, (head[:2], head[:2], head[2], head[3:])]
        a = np.array([c[0] for c in parts], np.float32)
        b = np.array([c[1] for c in parts], np.float32)
        r = np.array([c[2] for c in parts], np.float32)
        lo = np.floor(np.minimum(a, b).min(0) - r.max()).astype(int).clip(0, size)
        hi = np.ceil(np.maximum(a, b).max(0) + r.max() + 1).astype(int).clip(0, size)
        if (hi <= lo).any():
            continue
        yy, xx = np.mgrid[lo[1]:hi[1], lo[0]:hi[0]].astype(np.float32)
        px, py = xx.ravel()[None] - a[:, :1], yy.ravel()[None] - a[:, 1:]  # (S, P)
        ab = b - a
        t = np.clip((px * ab[:, :1] + py * ab[:, 1:]) / np.maximum((ab * ab).sum(1), 1e-6
                                                                     )[:, None], 0, 1)
        d2 = (px - t * ab[:, :1]) ** 2 + (py - t * ab[:, 1:]) ** 2
        inside = d2 <= (r * r)[:, None]
        front = len(r) - 1 - np.argmax(inside[::-1], axis=0)
        hit = inside.any(0)
        box = img[lo[1]:hi[1], lo[0]:hi[0]].reshape(-1, 3)
        box[hit] = np.array([c[3] for c in parts], np.float32)[front[hit]]
        img[lo[1]:hi[1], lo[0]:hi[0]] = box.reshape(hi[1] - lo[1], hi[0] - lo[0], 3)
    return img


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Wall over floor with a horizon, a few boxes (benches, doors, windows), texture."""
    img = np.empty((size, size, 3), np.float32)
    horizon = int(size * rng.uniform(0.25, 0.45))
    wall, floor = rng.uniform(60, 200, 3), rng.uniform(40, 160, 3)
    ramp = np.linspace(0.8, 1.15, size - horizon)[:, None, None]
    img[:horizon] = wall
    img[horizon:] = floor * ramp
    for _ in range(rng.integers(1, 5)):
        x0, y0 = rng.integers(0, size, 2)
        w, h = rng.integers(size // 10, size // 3, 2)
        img[y0:y0 + h, x0:x0 + w] = rng.uniform(20, 230, 3)
    img += rng.normal(0, 6, (size, size, 1))  # texture
    return img


def _walk(p: _Person, t: float, speed: float, stride: float = 0.5) -> None:
    """Leg and arm swing for walking/running at `speed` (steps per frame ~ speed)."""
    phase = t * speed * 0.9
    s = np.sin(phase) * stride
    p.legs = np.array([[s, max(0, -s) * 0.8], [-s, max(0, s) * 0.8]])
    p.arms = np.array([[-s * 0.8, 0.3 + stride * 0.4], [s * 0.8, 0.3 + stride * 0.4]])


class _Scenario:
    """Moves the people of one clip frame by frame."""

    def __init__(self, kind: str, rng: np.random.Generator, size: int, n_frames: int):
        self.kind, self.rng, self.size, self.n = kind, rng, size, n_frames
        lo, hi = 0.6 * size, 0.72 * size  # hips stand on the floor
        self.people: list[_Person] = []
        self.vel: list[np.ndarray] = []
        r = rng

        def add(x, y, v=(0.0, 0.0)):
            self.people.append(_Person(r, x, y, size))
            self.vel.append(np.array(v, np.float64))

        cx, cy = r.uniform(0.3, 0.7) * size, r.uniform(lo, hi)
        if kind in ("brawl", "grapple"):
            gap = size * r.uniform(0.12, 0.18)  # in contact
            add(cx - gap / 2, cy)
            add(cx + gap / 2, cy + r.normal(0, 2))
            self.people[0].face, self.people[1].face = 1.0, -1.0
            if kind == "brawl" and r.random() < 0.35:  # a third fighter joins
                add(cx + r.choice([-1, 1]) * gap * 1.3, cy + r.normal(0, 3))
                self.people[-1].face = 1.0 if self.people[-1].x < cx else -1.0
            self.fighters = len(self.people)
            self.fallen = -1 if r.random() < 0.6 else int(r.integers(self.fighters))
            self.fall_at = int(r.integers(n_frames // 3, n_frames)) if self.fallen >= 0 else 0
            self.punch = np.zeros((self.fighters, 2))  # punch progress per arm
        elif kind in ("walk", "run"):
            for _ in range(r.integers(1, 4 if kind == "walk" else 3)):
                d = r.choice([-1.0, 1.0])
                sp = r.uniform(0.6, 1.4) if kind == "walk" else r.uniform(2.2, 3.8)
                sp *= size / 96
                # runners enter at one edge and cross the frame; walkers start anywhere
                x0 = (0.5 - d * r.uniform(0.35, 0.55)) if kind == "run" else r.uniform(0.1, 0.9)
                add(x0 * size, r.uniform(lo, hi), (d * sp, r.normal(0, 0.15)))
                self.people[-1].face = d
        elif kind == "pass":
            sp = r.uniform(0.8, 2.0) * size / 96
            t_meet = r.uniform(0.3, 0.7) * n_frames
            for d in (1.0, -1.0):
                add(cx - d * sp * t_meet, cy + d * r.uniform(1, 4), (d * sp, 0.0))
                self.people[-1].face = d
        elif kind in ("talk", "hug", "sports"):
            gap = size * {"talk": r.uniform(0.25, 0.4), "sports": r.uniform(0.3, 0.45),
                          "hug": r.uniform(0.45, 0.6)}[kind]
            for d in (-1.0, 1.0):
                add(cx + d * gap / 2, cy + r.normal(0, 2))
                self.people[-1].face = -d
            if kind == "talk" and r.random() < 0.5:
                add(cx + r.uniform(-1, 1) * gap, cy - r.uniform(2, 5))
            self.freq = r.uniform(0.5, 0.9)  # sports: a fast, regular rhythm (rad/frame)
            self.hug_at = r.uniform(0.2, 0.5) * n_frames
        else:
            raise ValueError(f"unknown scenario {kind!r}")
        if kind in ("brawl", "grapple", "talk") and r.random() < 0.5:  # a bystander walks by
            d = r.choice([-1.0, 1.0])
            add(size * (0.5 - d * 0.6), r.uniform(lo, hi), (d * r.uniform(0.8, 1.5), 0.0))
            self.people[-1].face = d
        self.bystander_from = len(self.people) - (1 if len(self.vel) and
                                                  self.kind in ("brawl", "grapple", "talk")
                                                  and abs(self.vel[-1][0]) > 0 else 0)

    def step(self, t: int) -> None:
        getattr(self, f"_{self.kind}" if self.kind not in ("walk", "run", "pass")
                else "_travel")(t)
        for i in range(self.bystander_from, len(self.people)):  # bystanders just walk
            p = self.people[i]
            p.x += self.vel[i][0]
            _walk(p, t, abs(self.vel[i][0]) + 0.5)

    # --- fights: erratic, in contact, blows aimed at the opponent -----------------------
    def _fight_moves(self, t: int, grapple: bool) -> None:
        r, people = self.rng, self.people[:self.fighters]
        centre = np.mean([[p.x, p.y] for p in people], axis=0)
        for i, p in enumerate(people):
            other = people[(i + 1) % len(people)]
            if i == self.fallen and t >= self.fall_at:  # down on the floor, curled up
                p.tilt = min(p.tilt + 0.5, 1.45)
                p.arms = np.array([[1.2, 1.2], [0.9, 1.4]]) + r.normal(0, 0.15, (2, 2))
                continue
            p.face = 1.0 if other.x > p.x else -1.0
            contact = abs(other.x - p.x) - 0.18 * p.height
            # erratic lunges: random kicks plus a pull into contact range
            # (in units of body height: the violence of the motion does not shrink with the
            # picture)
            acc = r.normal(0, 0.09 if not grapple else 0.08, 2) * p.height * [1.0, 0.5]
            acc[0] += 0.35 * contact * p.face
            if r.random() < 0.15:  # a lunge at the opponent
                acc[0] += 0.25 * p.height * p.face
            acc[1] += 0.2 * (centre[1] - p.y)
            self.vel[i] = 0.5 * self.vel[i] + acc
            p.x = float(np.clip(p.x + self.vel[i][0], 5, self.size - 5))
            p.y = float(np.clip(p.y + self.vel[i][1], 0.55 * self.size, 0.8 * self.size))
            p.tilt = float(np.clip(0.5 * p.tilt + r.normal(0.15, 0.4), -0.6, 1.0))
            if grapple:  # arms wrapped round the opponent, wrenching
                p.arms = np.array([[1.5, 0.5], [1.2, 0.8]]) + r.normal(0, 0.4, (2, 2))
            else:  # punches: an arm shoots out at the opponent, then pulls back
                for a in range(2):
                    if self.punch[i, a] <= 0 and r.random() < 0.35:
                        self.punch[i, a] = 1.0
                    prog = self.punch[i, a]
                    self.punch[i, a] = max(prog - r.uniform(0.35, 0.7), 0.0)
                    swing = np.sin(np.pi * prog)
                    p.arms[a] = [0.4 + 1.3 * swing + r.normal(0, 0.25),
                                 1.6 * (1 - swing) + r.normal(0, 0.2)]
            p.legs = np.array([[0.25, 0.2], [-0.25, 0.2]]) + r.normal(0, 0.25, (2, 2))
            if r.random() < 0.12 and contact < 0.1 * p.height:  # a shove knocks the other back
                j = (i + 1) % len(people)
                self.vel[j][0] += p.face * r.uniform(0.1, 0.2) * p.height
                people[j].tilt -= 0.4

    def _brawl(self, t: int) -> None:
        self._fight_moves(t, grapple=False)

    def _grapple(self, t: int) -> None:
        self._fight_moves(t, grapple=True)

    # --- non-fights -----------------------------------------------------------------------
    def _travel(self, t: int) -> None:
        for i, p in enumerate(self.people):
            p.x += self.vel[i][0]
            p.y = float(np.clip(p.y + self.vel[i][1], 0.55 * self.size, 0.8 * self.size))
            speed = abs(self.vel[i][0]) * 96 / self.size
            _walk(p, t, speed + 0.4, stride=0.45 if self.kind != "run" else 0.8)
            p.tilt = 0.25 if self.kind == "run" else 0.03

    def _talk(self, t: int) -> None:
        for i, p in enumerate(self.people[:self.bystander_from]):
            g = 0.5 + 0.4 * np.sin(0.25 * t + 1.7 * i)  # slow, smooth gestures
            p.arms = np.array([[g, 0.9 * g], [0.2, 0.4]]) + self.rng.normal(0, 0.03, (2, 2))
            p.legs = np.array([[0.08, 0.0], [-0.08, 0.0]])

    def _hug(self, t: int) -> None:
        a, b = self.people[:2]
        gap = abs(b.x - a.x)
        if t < self.hug_at and gap > 0.16 * a.height:  # walk towards each other
            step = 0.9 * self.size / 96
            a.x += step * a.face
            b.x += step * b.face
            _walk(a, t, 1.2)
            _walk(b, t, 1.2)
        else:  # embrace and sway slowly
            sway = 0.08 * np.sin(0.2 * t)
            for p in (a, b):
                p.arms = np.array([[1.5, 0.9], [1.3, 1.1]])
                p.tilt = 0.15 + sway
                p.legs = np.array([[0.05, 0.0], [-0.05, 0.0]])

    def _sports(self, t: int) -> None:
        for i, p in enumerate(self.people[:2]):
            ph = self.freq * t + np.pi * i
            p.y += -3.0 * np.cos(ph) * self.size / 96 * (1 if np.sin(ph) > 0 else 0.0)
            p.arms = np.array([[1.6 + 1.0 * np.sin(ph), 0.2], [1.6 - 1.0 * np.sin(ph), 0.2]])
            p.legs = np.array([[0.35 * np.sin(ph), 0.3], [-0.35 * np.sin(ph), 0.3]])
            p.x += 1.2 * np.sin(0.5 * ph) * self.size / 96


def render_clip(rng: np.random.Generator, kind: str, size: int, n_frames: int) -> np.ndarray:
    """(n_frames, size, size, 3) uint8 frames of one clip of scenario `kind`."""
    background = _background(rng, size)
    scene = _Scenario(kind, rng, size, n_frames)
    shake = rng.choice([0.0, 0.7, 2.0], p=[0.4, 0.4, 0.2]) * size / 96
    light0, light1 = rng.uniform(0.6, 1.2, 2)
    flicker = rng.random() < 0.25
    noise = rng.uniform(2, 9)
    frames = np.empty((n_frames, size, size, 3), np.uint8)
    offset = np.zeros(2)
    for t in range(n_frames):
        scene.step(t)
        img = _render(background, scene.people)
        offset = 0.7 * offset + rng.normal(0, shake, 2)  # hand-held / wind camera shake
        dx, dy = np.round(offset).astype(int)
        img = np.roll(img, (dy, dx), axis=(0, 1))
        gain = light0 + (light1 - light0) * t / max(n_frames - 1, 1)
        if flicker:
            gain *= 1.0 + 0.15 * np.sign(np.sin(1.3 * t))
        img = img * gain + rng.normal(0, noise, img.shape)
        frames[t] = np.clip(img, 0, 255).astype(np.uint8)
    return frames


def write_video(path: str, frames: np.ndarray, fps: int, bit_rate: int) -> None:
    """MPEG-4 Part 2 in AVI (RWF-2000's container), yuv420p."""
    import av

    with av.open(path, "w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = bit_rate
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def layout_names(layout: str) -> tuple[tuple[str, ...], str, str]:
    """(split folders, positive folder, negative folder) of a dataset layout."""
    if layout == "rwf2000":
        return ("train", "val"), "Fight", "NonFight"
    if layout == "seed":
        return ("train", "val", "test"), "violent", "nonviolent"
    raise ValueError(f"unknown layout {layout!r} (rwf2000 or seed)")


def _write_clip(job: tuple[str, int, int, int, bool, int, tuple[int, int], int, int]) -> None:
    path, seed, split_index, i, fight, size, frames, fps, bit_rate = job
    rng = np.random.default_rng([seed, split_index, i])
    kind = str(rng.choice(FIGHT_SCENARIOS if fight else NONFIGHT_SCENARIOS))
    length = int(rng.integers(frames[0], frames[1] + 1))
    write_video(path.format(kind=kind), render_clip(rng, kind, size, length), fps, bit_rate)


def generate(root: str, *, clips: Sequence[int], fight_fraction: float, size: int,
             frames: Sequence[int], fps: int, seed: int, layout: str = "rwf2000",
             bit_rate: int = 200_000, workers: int = 0) -> None:
    """Writes `clips[i]` clips into split folder i of `layout`, `fight_fraction` of them
    fights, in `workers` spawned processes (0 = this one). Clip lengths are drawn from
    `frames` = (min, max); each clip depends only on (seed, split, index), so the worker
    count never changes the data. The DONE marker is written last."""
    splits, pos, neg = layout_names(layout)
    if len(clips) != len(splits):
        raise ValueError(f"layout {layout} has {len(splits)} splits, got clip counts {clips}")
    jobs = []
    for s, (split, n) in enumerate(zip(splits, clips, strict=True)):
        n_fight = round(n * fight_fraction)
        for folder in (pos, neg):
            os.makedirs(os.path.join(root, split, folder), exist_ok=True)
        for i in range(n):
            folder = pos if i < n_fight else neg
            path = os.path.join(root, split, folder, f"{split}_{{kind}}_{i:05d}.avi")
            jobs.append((path, seed, s, i, i < n_fight, size, tuple(frames), fps, bit_rate))
    if workers > 0:
        import concurrent.futures
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            list(pool.map(_write_clip, jobs, chunksize=8))
    else:
        for job in jobs:
            _write_clip(job)
    with open(os.path.join(root, "DONE"), "w") as f:
        f.write("complete\n")

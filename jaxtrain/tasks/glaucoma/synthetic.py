"""Synthetic fundus photographs in the AIROGS layout (JPEG files + ``train_labels.csv``).

Each image is a 45-degree fundus photograph drawn with Pillow: an orange-red retina whose
pigmentation varies, the optic disc (nasal side: left or right eye), its pale cup, a macula,
four vessel arcades branching from the disc, arcuate nerve-fibre striations, and camera
defects (uneven illumination, vignetting, blur, noise, over/under exposure, JPEG artefacts).

What makes a case referable (RG), with overlap so no single cue decides it:
* cup-to-disc ratio: NRG ~ N(0.38, 0.10), RG ~ N(0.66, 0.09) (clipped), discs of varying
  size, so the cup's area alone overlaps between classes (large discs have large cups);
* rim notching (RG 55%, NRG 4%): the cup reaches the rim at the superior or inferior pole;
* nerve-fibre-layer thinning (RG 50%, NRG 4%): a dark wedge in the arcuate striations;
nothing global (colour, pallor, exposure, illumination) depends on the class.
Ungradable images (class U, `ungradable` of all) are blurred, dark or washed out.
Pale distractors (peripapillary atrophy in either class, lens reflexes, sheen, exposure)
and discs of varying size keep colour histograms from telling the cup's size.

Images are spread over numbered folders ``0/``, ``1/``, ... (`per_folder` each), like the
downloaded AIROGS parts. Deterministic in `seed`.
"""

from __future__ import annotations

import csv
import math
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

LABELS_FILE = "train_labels.csv"


def cup_to_disc(rng: np.random.Generator, referable: bool) -> float:
    if referable:
        return float(np.clip(rng.normal(0.66, 0.09), 0.42, 0.92))
    return float(np.clip(rng.normal(0.38, 0.10), 0.12, 0.68))


def _vessel_tree(draw: ImageDraw.ImageDraw, rng: np.random.Generator, start: tuple[float, float],
                 angle: float, width: float, length: float, color: tuple[int, int, int],
                 depth: int, curve: float) -> None:
    """A vessel as a curving polyline that thins and branches."""
    x, y = start
    steps = max(int(length / 4), 2)
    seg = length / steps
    for s in range(steps):
        angle += curve + rng.normal(0, 0.08)
        nx, ny = x + seg * math.cos(angle), y + seg * math.sin(angle)
        w = max(width * (1 - 0.5 * s / steps), 0.6)
        draw.line([(x, y), (nx, ny)], fill=color, width=max(round(w), 1))
        x, y = nx, ny
        if depth > 0 and s > 1 and rng.random() < 0.12:
            side = rng.choice([-1.0, 1.0])
            _vessel_tree(draw, rng, (x, y), angle + side * rng.uniform(0.4, 0.9), w * 0.7,
                         length * rng.uniform(0.3, 0.55), color, depth - 1,
                         curve * rng.uniform(-1, 1))


def render(rng: np.random.Generator, size: int, label: str) -> Image.Image:
    """One fundus photograph, `size` x `size` RGB; `label` RG, NRG or U."""
    referable = label == "RG"
    s = size
    c = s / 2 + rng.normal(0, 0.02 * s, 2)
    radius = s * rng.uniform(0.44, 0.48)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    r = np.hypot(xx - c[0], yy - c[1]) / radius
    inside = r <= 1.0

    # Background: pigmented retina, brighter towards the posterior pole.
    base = np.array([rng.uniform(150, 215), rng.uniform(55, 105), rng.uniform(20, 55)])
    shade = 1.0 - 0.35 * r ** 2
    img = np.clip(base[None, None] * shade[..., None], 0, 255)
    # Choroidal texture: low-frequency noise.
    tex = np.asarray(Image.fromarray(rng.integers(0, 255, (s // 16, s // 16), np.uint8))
                     .resize((s, s), Image.BICUBIC), np.float32) / 255 - 0.5
    img *= (1 + 0.12 * tex)[..., None]

    # Optic disc on the nasal side (left or right eye), macula temporal to it.
    eye = rng.choice([-1.0, 1.0])
    # Disc size varies between eyes and with the camera's magnification (+-20%).
    disc_r = s * float(np.clip(rng.normal(0.085, 0.017), 0.05, 0.125))
    disc = c + np.array([eye * s * rng.uniform(0.2, 0.26), rng.normal(0, 0.03 * s)])
    mac = c + np.array([-eye * s * rng.uniform(0.02, 0.08), rng.normal(0, 0.02 * s)])
    dm = np.hypot(xx - mac[0], yy - mac[1]) / (s * 0.09)
    img *= (1 - 0.35 * np.exp(-dm ** 2))[..., None]

    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    # Arcuate nerve-fibre striations above and below the disc; RNFL thinning removes a wedge.
    defect = rng.random() < (0.5 if referable else 0.04)
    defect_side = rng.choice([-1.0, 1.0])
    for k in range(int(rng.integers(14, 22))):
        side = 1.0 if k % 2 else -1.0
        a0 = -eye * rng.uniform(0.35, 1.2) * side + (math.pi if eye > 0 else 0.0)
        rr = disc_r * rng.uniform(1.2, 3.2)
        if defect and side == defect_side and rr < disc_r * 2.8:
            continue
        pts = [(disc[0] + rr * math.cos(a0 + t * side * 0.3),
                disc[1] + rr * math.sin(a0 + t * side * 0.3)) for t in np.linspace(0, 1.6, 8)]
        draw.line(pts, fill=tuple(int(v) for v in base * 1.12), width=max(1, s // 200))
    if defect:  # a dark wedge from the disc towards the arcade
        ang = math.pi / 2 * defect_side + eye * rng.uniform(0.2, 0.5)
        p0 = (disc[0] + disc_r * math.cos(ang - 0.25), disc[1] + disc_r * math.sin(ang - 0.25))
        p1 = (disc[0] + disc_r * math.cos(ang + 0.25), disc[1] + disc_r * math.sin(ang + 0.25))
        far = disc_r * rng.uniform(3.0, 4.0)
        p2 = (disc[0] + far * math.cos(ang + 0.35), disc[1] + far * math.sin(ang + 0.35))
        p3 = (disc[0] + far * math.cos(ang - 0.35), disc[1] + far * math.sin(ang - 0.35))
        draw.polygon([p0, p1, p2, p3], fill=tuple(int(v) for v in base * 0.72))

    # Peripapillary atrophy (either class, as in myopia and ageing): a pale ring or crescent
    # round the disc, so the amount of pale tissue does not tell the cup's size.
    if rng.random() < 0.35:
        pr = disc_r * rng.uniform(1.15, 1.5)
        start = rng.uniform(0, 360)
        tone = tuple(int(v + (235 - v) * rng.uniform(0.3, 0.7)) for v in base)
        draw.pieslice([disc[0] - pr, disc[1] - pr, disc[0] + pr, disc[1] + pr], start,
                      start + rng.uniform(90, 360), fill=tone)
    # Disc, cup (pallor), rim notch.
    rim = (int(rng.uniform(225, 250)), int(rng.uniform(150, 190)), int(rng.uniform(90, 130)))
    ecc = rng.uniform(0.9, 1.1)
    draw.ellipse([disc[0] - disc_r, disc[1] - disc_r * ecc, disc[0] + disc_r,
                  disc[1] + disc_r * ecc], fill=rim)
    cdr = cup_to_disc(rng, referable)
    cup_r = disc_r * cdr
    cup_c = disc + rng.normal(0, 0.06 * disc_r, 2) + np.array([-eye * 0.08 * disc_r, 0])
    # Pallor independent of the class: the cup's colour says nothing, only its extent does.
    pallor = rng.uniform(0.45, 0.85)
    cup = tuple(int(rim[i] + (255 - rim[i]) * pallor) for i in range(3))
    draw.ellipse([cup_c[0] - cup_r, cup_c[1] - cup_r * ecc * 1.05, cup_c[0] + cup_r,
                  cup_c[1] + cup_r * ecc * 1.05], fill=cup)
    if rng.random() < (0.55 if referable else 0.04):  # notch: the cup reaches the rim
        pole = rng.choice([-1.0, 1.0])
        w = cup_r * rng.uniform(0.35, 0.6)
        draw.polygon([(cup_c[0] - w, cup_c[1]), (cup_c[0] + w, cup_c[1]),
                      (disc[0] + w * 0.5, disc[1] + pole * disc_r * ecc * 0.97),
                      (disc[0] - w * 0.5, disc[1] + pole * disc_r * ecc * 0.97)], fill=cup)

    # Vessels from the cup: superior/inferior temporal and nasal arcades.
    vcol = (int(base[0] * 0.62), int(base[1] * 0.35), int(base[2] * 0.45))
    for vert in (-1.0, 1.0):
        for temporal, length in ((True, s * 0.55), (False, s * 0.3)):
            direction = -eye if temporal else eye
            angle = math.atan2(vert * rng.uniform(0.8, 1.6), direction)
            curve = -vert * direction * rng.uniform(0.03, 0.06) * (1 if temporal else 0.5)
            _vessel_tree(draw, rng, (cup_c[0], cup_c[1]), angle,
                         s * rng.uniform(0.012, 0.018), length, vcol, 2, curve)
    # Distractors: lens reflexes / retinal sheen (bright blobs anywhere in the field).
    for _ in range(int(rng.poisson(1.5))):
        p = c + rng.normal(0, 0.25 * s, 2)
        rb = s * rng.uniform(0.02, 0.07)
        tone = int(rng.uniform(20, 60))
        overlay = Image.new("L", (s, s), 0)
        ImageDraw.Draw(overlay).ellipse([p[0] - rb, p[1] - rb, p[0] + rb, p[1] + rb],
                                        fill=tone)
        overlay = overlay.filter(ImageFilter.GaussianBlur(rb / 2))
        pil = Image.fromarray(np.clip(np.asarray(pil, np.float32)
                                      + np.asarray(overlay, np.float32)[..., None], 0, 255)
                              .astype(np.uint8))

    # Camera: blur, illumination gradient, vignetting, exposure, noise, black surround.
    blur = rng.uniform(0.0, 1.2) * s / 256
    if label == "U":
        blur = rng.uniform(3, 6) * s / 256
    pil = pil.filter(ImageFilter.GaussianBlur(blur))
    a = np.asarray(pil, np.float32)
    gx, gy = rng.normal(0, 0.25, 2)
    illum = 1 + gx * (xx - c[0]) / s + gy * (yy - c[1]) / s
    vignette = 1 - rng.uniform(0.1, 0.45) * np.clip(r, 0, 1) ** 3
    exposure = rng.lognormal(0, 0.2)
    if label == "U":
        exposure = rng.choice([rng.uniform(0.2, 0.4), rng.uniform(1.8, 2.6)])
    a = a * (illum * vignette * exposure)[..., None]
    a += rng.normal(0, rng.uniform(1, 5), a.shape)
    a[~inside] = rng.uniform(0, 8)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def labels(n: int, rg_fraction: float, ungradable: float, seed: int) -> list[str]:
    """Classes of `n` images: exactly round(n * fraction) RG and U, shuffled."""
    rng = np.random.default_rng([seed, 1])
    n_rg, n_u = round(n * rg_fraction), round(n * ungradable)
    out = ["RG"] * n_rg + ["U"] * n_u + ["NRG"] * (n - n_rg - n_u)
    return [out[i] for i in rng.permutation(n)]


def generate(root: str, *, num_images: int, size: int = 256, rg_fraction: float = 0.05,
             ungradable: float = 0.02, per_folder: int = 1000, seed: int = 0,
             quality: tuple[int, int] = (70, 95)) -> str:
    """Writes `num_images` JPEGs `<root>/<k>/TRAIN<i:06d>.jpg` and `<root>/train_labels.csv`
    (written last: its presence means the tree is complete). Returns `root`."""
    classes = labels(num_images, rg_fraction, ungradable, seed)
    rows = []
    for i, label in enumerate(classes):
        rng = np.random.default_rng([seed, 2, i])
        cid = f"TRAIN{i:06d}"
        folder = os.path.join(root, str(i // per_folder))
        os.makedirs(folder, exist_ok=True)
        render(rng, size, label).save(os.path.join(folder, cid + ".jpg"), "JPEG",
                                      quality=int(rng.integers(quality[0], quality[1] + 1)))
        rows.append((cid, label))
    tmp = os.path.join(root, LABELS_FILE + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["challenge_id", "class"])
        w.writerows(rows)
    os.replace(tmp, os.path.join(root, LABELS_FILE))
    return root

"""Procedural cartoon faces whose expression is a blend of emotion prototypes.

Each sample has a ground-truth emotion distribution; the face is drawn from the
distribution-weighted mix of the classes' expression parameters, so both the hard
label and the distribution are visible in the pixels. Everything about sample i is a
pure function of (seed, i): images are rendered on demand and never stored.
"""

from __future__ import annotations

import colorsys
import zlib
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from PIL import Image, ImageDraw

from .config import EMOTION6_CLASSES, DataConfig
from .records import SYNTHETIC_PREFIX, Record
from .scan_report import DataReport

# Expression parameters, each roughly in [-1, 1] or [0, 1]; colours are 0-255 RGB.
PARAMS = (
    "mouth_curve",  # -1 frown .. +1 smile
    "mouth_open",  # 0 closed .. 1 wide open
    "mouth_width",  # 0 narrow .. 1 wide
    "mouth_skew",  # 0 symmetric .. 1 one corner raised (sneer)
    "brow_angle",  # -1 inner ends down (angry V) .. +1 inner ends up (worried)
    "brow_height",  # 0 low .. 1 raised
    "eye_open",  # 0 squint .. 1 wide
    "tears",  # 0 none .. 1 tears
    "blush",  # 0 none .. 1 red cheeks
    "bg_r",
    "bg_g",
    "bg_b",
)

# Hand-set prototypes for the Emotion6 classes, chosen so that each class differs from every
# other in at least two cues that survive downsampling to 64 px (background hue always does).
_EMOTION6_PROTOTYPES: dict[str, dict[str, float]] = {
    "anger": dict(mouth_curve=-0.5, mouth_open=0.15, mouth_width=0.65, mouth_skew=0.0, brow_angle=-1.0,
                  brow_height=0.15, eye_open=0.45, tears=0.0, blush=0.9, bg_r=205, bg_g=40, bg_b=40),
    "disgust": dict(mouth_curve=-0.35, mouth_open=0.1, mouth_width=0.5, mouth_skew=1.0, brow_angle=-0.4,
                    brow_height=0.3, eye_open=0.2, tears=0.0, blush=0.0, bg_r=85, bg_g=150, bg_b=45),
    "fear": dict(mouth_curve=-0.3, mouth_open=0.55, mouth_width=0.35, mouth_skew=0.0, brow_angle=0.9,
                 brow_height=0.85, eye_open=1.0, tears=0.0, blush=0.0, bg_r=105, bg_g=55, bg_b=160),
    "joy": dict(mouth_curve=1.0, mouth_open=0.35, mouth_width=1.0, mouth_skew=0.0, brow_angle=0.0,
                brow_height=0.5, eye_open=0.55, tears=0.0, blush=0.6, bg_r=245, bg_g=205, bg_b=45),
    "sadness": dict(mouth_curve=-1.0, mouth_open=0.0, mouth_width=0.55, mouth_skew=0.0, brow_angle=0.75,
                    brow_height=0.4, eye_open=0.4, tears=1.0, blush=0.0, bg_r=45, bg_g=85, bg_b=190),
    "surprise": dict(mouth_curve=0.0, mouth_open=1.0, mouth_width=0.3, mouth_skew=0.0, brow_angle=0.1,
                     brow_height=1.0, eye_open=1.0, tears=0.0, blush=0.0, bg_r=75, bg_g=200, bg_b=210),
}

_SKIN_TONES = np.array(
    [(250, 220, 190), (240, 200, 160), (215, 170, 125), (180, 130, 90), (140, 95, 65)], dtype=np.float64
)
_DIRICHLET_BASE = 0.4
_DIRICHLET_DOMINANT = 5.0


def class_prototype(name: str, position: int, num_classes: int) -> np.ndarray:
    """Expression parameters for a class; hand-set for Emotion6 names, otherwise derived from the name."""
    known = _EMOTION6_PROTOTYPES.get(name.strip().lower())
    if known is not None:
        return np.array([known[p] for p in PARAMS], dtype=np.float64)
    # crc32 rather than hash(): Python salts str hashes per process, which would break determinism.
    rng = np.random.default_rng(zlib.crc32(name.encode("utf-8")))
    face = [
        rng.uniform(-1, 1),
        rng.uniform(0, 1),
        rng.uniform(0, 1),
        float(rng.random() < 0.25),
        rng.uniform(-1, 1),
        rng.uniform(0, 1),
        rng.uniform(0, 1),
        float(rng.random() < 0.25),
        float(rng.random() < 0.3),
    ]
    # Hues evenly spaced by class position keep any class list separable by colour alone.
    hue = (position / num_classes + rng.uniform(-0.03, 0.03)) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.75, rng.uniform(0.7, 0.95))
    return np.array([*face, r * 255, g * 255, b * 255], dtype=np.float64)


@dataclass(frozen=True)
class SyntheticSample:
    label: int
    dist: np.ndarray
    params: np.ndarray
    skin: np.ndarray
    center: tuple[float, float]
    radius: float
    angle: float
    noise_seed: int


@dataclass(frozen=True)
class SyntheticSpec:
    classnames: tuple[str, ...]
    num_samples: int
    image_size: int
    seed: int

    @cached_property
    def prototypes(self) -> np.ndarray:
        n = len(self.classnames)
        return np.stack([class_prototype(c, i, n) for i, c in enumerate(self.classnames)])

    def dominant_class(self, i: int) -> int:
        # A fresh permutation of the classes for every block of C samples: exactly balanced,
        # not periodic, and still a function of (seed, i) alone.
        n = len(self.classnames)
        block, offset = divmod(i, n)
        perm = np.random.default_rng([self.seed, block, 0]).permutation(n)
        return int(perm[offset])

    def sample(self, i: int) -> SyntheticSample:
        if not 0 <= i < self.num_samples:
            raise IndexError(f"synthetic sample {i} outside [0, {self.num_samples})")
        n = len(self.classnames)
        label = self.dominant_class(i)
        rng = np.random.default_rng([self.seed, i, 1])
        alpha = np.full(n, _DIRICHLET_BASE)
        alpha[label] += _DIRICHLET_DOMINANT
        dist = rng.dirichlet(alpha)
        top = int(np.argmax(dist))
        if top != label:
            dist[[label, top]] = dist[[top, label]]
        params = dist @ self.prototypes
        params[:9] += rng.normal(0.0, 0.06, size=9)
        params[9:] += rng.normal(0.0, 12.0, size=3)
        skin = _SKIN_TONES[rng.integers(len(_SKIN_TONES))] + rng.normal(0.0, 6.0, size=3)
        return SyntheticSample(
            label=label,
            dist=dist,
            params=params,
            skin=skin,
            center=(0.5 + rng.uniform(-0.05, 0.05), 0.52 + rng.uniform(-0.05, 0.05)),
            radius=rng.uniform(0.30, 0.37),
            angle=rng.uniform(-12.0, 12.0),
            noise_seed=int(rng.integers(2**31)),
        )

    def render(self, i: int, size: int | None = None) -> Image.Image:
        return render_face(self.sample(i), size or self.image_size)


def _rgb(values: np.ndarray) -> tuple[int, int, int]:
    r, g, b = np.clip(np.rint(values), 0, 255).astype(int)
    return int(r), int(g), int(b)


def _mix(a: np.ndarray, b: tuple[float, float, float], t: float) -> np.ndarray:
    t = float(np.clip(t, 0.0, 1.0))
    return (1 - t) * a + t * np.asarray(b, dtype=np.float64)


class _Canvas:
    """ImageDraw with every point turned about the face centre.

    Rotating the geometry instead of the finished image keeps rendering cheap
    (a whole-image rotate cost more than all the drawing) and leaves edges crisp.
    """

    def __init__(self, img: Image.Image, center: tuple[float, float], angle_deg: float) -> None:
        self.draw = ImageDraw.Draw(img)
        self.cx, self.cy = center
        a = np.deg2rad(angle_deg)
        self.cos, self.sin = float(np.cos(a)), float(np.sin(a))

    def _turn(self, xs: np.ndarray, ys: np.ndarray) -> list[tuple[float, float]]:
        dx, dy = xs - self.cx, ys - self.cy
        rx = self.cx + dx * self.cos + dy * self.sin
        ry = self.cy - dx * self.sin + dy * self.cos
        return list(zip(rx.tolist(), ry.tolist()))

    def ellipse(self, x: float, y: float, rx: float, ry: float, **kw: object) -> None:
        t = np.linspace(0.0, 2 * np.pi, 40, endpoint=False)
        self.draw.polygon(self._turn(x + rx * np.cos(t), y + ry * np.sin(t)), **kw)  # type: ignore[arg-type]

    def polygon(self, xs: np.ndarray, ys: np.ndarray, **kw: object) -> None:
        self.draw.polygon(self._turn(xs, ys), **kw)  # type: ignore[arg-type]

    def line(self, xs: np.ndarray, ys: np.ndarray, **kw: object) -> None:
        self.draw.line(self._turn(np.asarray(xs, float), np.asarray(ys, float)), **kw)  # type: ignore[arg-type]


def render_face(s: SyntheticSample, size: int) -> Image.Image:
    p = dict(zip(PARAMS, s.params))
    # ImageDraw has no anti-aliasing; drawing at a multiple of the size and box-reducing smooths edges.
    ss = 4 if size <= 96 else 2
    w = size * ss
    bg = _rgb(np.array([p["bg_r"], p["bg_g"], p["bg_b"]]))
    img = Image.new("RGB", (w, w), bg)
    cx, cy = s.center[0] * w, s.center[1] * w
    d = _Canvas(img, (cx, cy), s.angle)

    r = s.radius * w
    ink = (40, 30, 30)
    line = max(1, int(round(0.07 * r)))

    skin = s.skin
    d.ellipse(cx, cy, 0.9 * r, 1.05 * r, fill=_rgb(skin), outline=ink, width=line)

    blush = float(np.clip(p["blush"], 0, 1))
    if blush > 0.05:
        cheek = _rgb(_mix(skin, (235, 70, 70), 0.85 * blush))
        for sx in (-1, 1):
            d.ellipse(cx + sx * 0.5 * r, cy + 0.22 * r, 0.18 * r, 0.11 * r, fill=cheek)

    eye_y = cy - 0.15 * r
    ew = 0.2 * r
    openness = float(np.clip(p["eye_open"], 0, 1))
    eh = ew * (0.12 + 0.88 * openness)
    brow_base = eye_y - eh - (0.12 + 0.3 * float(np.clip(p["brow_height"], 0, 1))) * r
    tilt = float(np.clip(p["brow_angle"], -1.2, 1.2)) * 0.13 * r
    tears = float(np.clip(p["tears"], 0, 1))
    for sx in (-1, 1):
        ex = cx + sx * 0.38 * r
        d.ellipse(ex, eye_y, ew, eh, fill=(255, 255, 255), outline=ink, width=line)
        pr = 0.5 * min(ew, max(eh, 0.25 * ew))
        d.ellipse(ex, eye_y, pr, pr, fill=ink)
        d.line([ex + sx * 1.1 * ew, ex - sx * 1.0 * ew], [brow_base + tilt, brow_base - tilt],
               fill=ink, width=int(round(1.6 * line)))
        if tears > 0.15:
            tr = (0.05 + 0.07 * tears) * r
            ty = eye_y + eh + 0.12 * r + tr
            d.ellipse(ex, ty - 0.2 * tr, tr, 1.2 * tr, fill=_rgb(_mix(skin, (40, 140, 255), tears)))

    mw = (0.2 + 0.3 * float(np.clip(p["mouth_width"], 0, 1))) * r
    my = cy + 0.5 * r
    curve = float(np.clip(p["mouth_curve"], -1.2, 1.2)) * 0.2 * r
    skew = float(np.clip(p["mouth_skew"], 0, 1.2)) * 0.14 * r
    gape = float(np.clip(p["mouth_open"], 0, 1.2)) * 0.4 * r
    xs = np.linspace(-1.0, 1.0, 24)
    bulge = 1.0 - xs**2
    # y grows downwards, so a positive curve drops the middle below the corners: a smile.
    upper_y = my + curve * (bulge - 0.5) - skew * xs - 0.3 * gape * np.sqrt(bulge)
    lower_y = upper_y + gape * np.sqrt(bulge)
    mx = cx + xs * mw
    if gape > 0.03 * r:
        d.polygon(np.concatenate([mx, mx[::-1]]), np.concatenate([upper_y, lower_y[::-1]]), fill=(120, 20, 30))
        d.line(mx, upper_y, fill=ink, width=line, joint="curve")
        d.line(mx, lower_y, fill=ink, width=line, joint="curve")
    else:
        d.line(mx, upper_y, fill=ink, width=int(round(1.4 * line)), joint="curve")

    small = img.reduce(ss)
    noise = np.random.default_rng(s.noise_seed).standard_normal((size, size, 3), dtype=np.float32) * 3.0
    arr = np.asarray(small, dtype=np.float32) + noise
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="RGB")


def load_synthetic(cfg: DataConfig, report: DataReport) -> tuple[list[str], list[Record], SyntheticSpec]:
    classnames = list(cfg.classes) if cfg.classes is not None else list(EMOTION6_CLASSES)
    opts = cfg.synthetic
    spec = SyntheticSpec(tuple(classnames), opts.num_samples, opts.image_size, opts.seed)
    records = []
    for i in range(opts.num_samples):
        s = spec.sample(i)
        records.append(Record(key=f"{SYNTHETIC_PREFIX}{i}", label=s.label, dist=s.dist))
    report.num_entries = opts.num_samples
    return classnames, records, spec

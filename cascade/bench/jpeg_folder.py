"""A folder of photo-like JPEGs for the data figure: ``<root>/<emotion>/<n>.jpg``, 640×480.

Smooth colour fields, ellipses and sensor-like noise at JPEG quality 90 give files of about
100 KB that take as long to decode as Emotion6's Flickr photos (about 6 ms each on one
core), so decode-bound loaders are measured on realistic work. The folder is an
ImageFolder tree (six emotion folders), so the trainer reads it with ``data.format:
imagefolder``. A finished folder is marked by ``complete.json`` and reused.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..data.config import EMOTION6_CLASSES

MARKER = "complete.json"


def default_root(n: int, width: int, height: int, seed: int) -> Path:
    base = Path(os.environ.get("CASCADE_BENCH_DATA") or Path(tempfile.gettempdir()) / "cascade-bench")
    return base / f"jpegs-{width}x{height}-n{n}-seed{seed}"


def _noise_bank(height: int, width: int, seed: int, k: int = 4) -> list[np.ndarray]:
    rng = np.random.default_rng([seed, 1])
    return [rng.normal(0.0, 10.0, (height, width, 3)).astype(np.int16) for _ in range(k)]


def _image(i: int, width: int, height: int, seed: int, noise: list[np.ndarray]) -> Image.Image:
    rng = np.random.default_rng([seed, i])
    base = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize((width, height), Image.BICUBIC)
    draw = ImageDraw.Draw(base)
    for _ in range(12):
        x, y, r = int(rng.integers(0, width)), int(rng.integers(0, height)), int(rng.integers(10, 120))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    n = noise[i % len(noise)]
    shift = int(rng.integers(0, height))
    arr = np.asarray(base, dtype=np.int16) + np.roll(n, shift, axis=0)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def jpeg_folder(n: int, *, width: int = 640, height: int = 480, seed: int = 0, root: str | os.PathLike | None = None,
                threads: int = 0) -> Path:
    """Write (or reuse) ``n`` JPEGs spread evenly over the six Emotion6 class folders."""
    root = Path(root) if root else default_root(n, width, height, seed)
    marker = root / MARKER
    want = {"n": n, "width": width, "height": height, "seed": seed}
    if marker.is_file():
        try:
            if json.loads(marker.read_text()) == want:
                return root
        except ValueError:
            pass
    if root.exists():
        shutil.rmtree(root)
    for c in EMOTION6_CLASSES:
        (root / c).mkdir(parents=True, exist_ok=True)
    noise = _noise_bank(height, width, seed)

    def write(i: int) -> None:
        cls = EMOTION6_CLASSES[i % len(EMOTION6_CLASSES)]
        _image(i, width, height, seed, noise).save(root / cls / f"{i}.jpg", "JPEG", quality=90)

    with ThreadPoolExecutor(max_workers=threads or min(32, os.cpu_count() or 1)) as pool:
        list(pool.map(write, range(n)))
    marker.write_text(json.dumps(want))
    return root


def folder_files(root: str | os.PathLike) -> list[Path]:
    return sorted(Path(root).glob("*/*.jpg"))

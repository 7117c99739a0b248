"""Opening images robustly, and finding the ones that cannot be opened."""

from __future__ import annotations

import contextlib
import io
import os
import threading
import warnings
from collections.abc import Iterator, Sequence
from typing import BinaryIO
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
)

_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}

# Image.MAX_IMAGE_PIXELS and the warnings filters are process-wide; the lock keeps two
# concurrent scans (e.g. the dashboard and a trainer thread) from restoring each other's values.
_LIMIT_LOCK = threading.RLock()


def is_image_file(path: str | os.PathLike[str]) -> bool:
    return os.path.splitext(os.fspath(path))[1].lower() in IMAGE_EXTENSIONS


@contextlib.contextmanager
def pixel_limit(max_pixels: int | None) -> Iterator[None]:
    """Apply a decompression-bomb limit for the duration of the block, then restore Pillow's."""
    if max_pixels is None:
        yield
        return
    with _LIMIT_LOCK:
        previous = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = max_pixels
        try:
            with warnings.catch_warnings():
                # Pillow only warns between 1x and 2x the limit; the limit is meant as a hard one.
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                yield
        finally:
            Image.MAX_IMAGE_PIXELS = previous


def _check_pixels(im: Image.Image, max_pixels: int | None) -> None:
    if max_pixels is not None and im.width * im.height > max_pixels:
        raise Image.DecompressionBombError(
            f"{im.width}x{im.height} = {im.width * im.height} pixels exceeds max_image_pixels={max_pixels}"
        )


def _sixteen_bit_to_8(im: Image.Image) -> Image.Image:
    # Pillow's own convert("L") clips 16-bit values at 255 instead of rescaling them.
    arr = np.asarray(im, dtype=np.float64)
    if im.mode in _SIXTEEN_BIT_MODES:
        scale = 257.0
    elif im.mode == "F":
        scale = 1.0 / 255.0 if arr.size and np.nanmax(arr) <= 1.0 else 1.0
    else:
        # Mode "I" carries no bit depth; a maximum above 255 is only plausible for 16-bit data.
        scale = 257.0 if arr.size and arr.max() > 255 else 1.0
    out = np.clip(np.rint(arr / scale), 0, 255).astype(np.uint8)
    return Image.fromarray(out, mode="L")


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; transparency is composited on white."""
    mode = im.mode
    if mode == "RGB" and "transparency" not in im.info:
        return im
    if mode == "P":
        im = im.convert("RGBA") if "transparency" in im.info else im.convert("RGB")
        mode = im.mode
        if mode == "RGB":
            return im
    if mode in _SIXTEEN_BIT_MODES or mode in {"I", "F"}:
        return _sixteen_bit_to_8(im).convert("RGB")
    if mode in _ALPHA_MODES or (mode == "L" and "transparency" in im.info) or (
        mode == "RGB" and "transparency" in im.info
    ):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")


def load_rgb(path: str | os.PathLike[str] | BinaryIO, max_pixels: int | None = None) -> Image.Image:
    """Open an image (a path, or a binary file object such as a tar member's bytes) as upright
    8-bit RGB, fully decoded and detached from the file."""
    try:
        with pixel_limit(max_pixels), Image.open(path) as im:
            _check_pixels(im, max_pixels)
            im.load()
            upright = ImageOps.exif_transpose(im)
            out = to_rgb(upright)
            if out is im:
                out = im.copy()
            return out
    except Image.DecompressionBombWarning as exc:
        # Under pixel_limit the warning is raised; callers should only need to catch one type.
        raise Image.DecompressionBombError(str(exc)) from None


def _reason_for(exc: BaseException) -> str:
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return f"decompression-bomb limit: {exc}"
    if isinstance(exc, UnidentifiedImageError):
        return "not a readable image (format not recognised)"
    text = str(exc) or type(exc).__name__
    if "truncated" in text.lower():
        return f"truncated image data: {text}"
    return f"unreadable image: {type(exc).__name__}: {text}"


def check_image(path: str | os.PathLike[str], max_pixels: int | None = None) -> str | None:
    """Return why the file is not a usable image, or None when it is.

    Must run inside `pixel_limit` when `max_pixels` differs from Pillow's current limit.
    """
    p = Path(path)
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        return "missing file"
    except OSError as exc:
        return f"cannot stat file: {exc}"
    if not p.is_file():
        return "not a regular file"
    if size == 0:
        return "empty file (0 bytes)"
    return _decode_problem(lambda: Image.open(p), max_pixels)


def check_image_bytes(data: bytes, max_pixels: int | None = None) -> str | None:
    """`check_image` for an image held in memory (e.g. a sample of a tar shard)."""
    if not data:
        return "empty image (0 bytes)"
    return _decode_problem(lambda: Image.open(io.BytesIO(data)), max_pixels)


def _decode_problem(open_image, max_pixels: int | None) -> str | None:
    try:
        # verify() catches structural damage cheaply (e.g. PNG CRCs) but leaves the image
        # unusable, so a second open does the real decode that catches truncated pixel data.
        with open_image() as im:
            _check_pixels(im, max_pixels)
            im.verify()
        with open_image() as im:
            im.load()
    except Exception as exc:  # noqa: BLE001 - any decoder failure makes the file unusable
        return _reason_for(exc)
    return None


def check_images(
    paths: Sequence[str], max_pixels: int | None = None, workers: int = 0
) -> list[str | None]:
    """Check many files in parallel (Pillow releases the GIL while decoding)."""
    if workers <= 0:
        workers = min(8, os.cpu_count() or 1)
    with pixel_limit(max_pixels):
        if workers == 1 or len(paths) < 16:
            return [check_image(p, max_pixels) for p in paths]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="scan") as pool:
            return list(pool.map(lambda p: check_image(p, max_pixels), paths))

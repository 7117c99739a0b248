"""Checking uploaded images before anything else touches them.

Accepted: JPEG, PNG and WebP, by file name *and* by content (the decoder's own format
sniffing), at most ``max_bytes`` each and at most ``max_pixels`` pixels (a
decompression-bomb guard). Everything else comes back as a :class:`UploadProblem`
with a message for the page; no input makes :func:`validate_uploads` raise.
"""
from __future__ import annotations

import io
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePath

from PIL import Image, ImageOps

from ..data.images import pixel_limit, to_rgb

ALLOWED_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
ALLOWED_FORMATS = {"JPEG": "JPEG", "PNG": "PNG", "WEBP": "WebP"}
UPLOADER_TYPES = ["jpg", "jpeg", "png", "webp"]
MAX_UPLOAD_MB = 20
MAX_BYTES = MAX_UPLOAD_MB * 1024 * 1024
MAX_PIXELS = 40_000_000
MAX_FILES = 32


@dataclass(frozen=True)
class UploadedImage:
    name: str
    image: Image.Image        # upright 8-bit RGB, fully decoded
    format: str
    num_bytes: int

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size


@dataclass(frozen=True)
class UploadProblem:
    name: str
    reason: str

    def message(self) -> str:
        return f"**{self.name}**: {self.reason}"


def display_name(name: str | None) -> str:
    """A file name safe to show: no folders, no control characters, bounded length."""
    base = PurePath(str(name or "upload").replace("\\", "/")).name or "upload"
    base = re.sub(r"[\x00-\x1f\x7f]", "", base)
    return base[:80] or "upload"


def validate_image_bytes(name: str | None, data: bytes, *, max_bytes: int = MAX_BYTES,
                         max_pixels: int = MAX_PIXELS) -> UploadedImage | UploadProblem:
    shown = display_name(name)
    suffix = PurePath(shown).suffix.lower()
    if suffix not in ALLOWED_EXTENSIONS:
        what = f"'{suffix}' files" if suffix else "files without an extension"
        return UploadProblem(shown, f"rejected: {what} are not accepted; upload JPEG, PNG or WebP images "
                                    f"({', '.join(ALLOWED_EXTENSIONS)}).")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        return UploadProblem(shown, "rejected: no file content was received.")
    size = len(data)
    if size == 0:
        return UploadProblem(shown, "rejected: the file is empty (0 bytes).")
    if size > max_bytes:
        return UploadProblem(shown, f"rejected: {size / 1e6:.1f} MB is over the {max_bytes / 1e6:.0f} MB limit.")
    try:
        with pixel_limit(max_pixels), warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(bytes(data))) as im:
                fmt = (im.format or "").upper()
                if fmt not in ALLOWED_FORMATS:
                    return UploadProblem(shown, f"rejected: the content is {fmt or 'an unknown format'}, "
                                                "not a JPEG, PNG or WebP image.")
                if im.width * im.height > max_pixels:
                    return UploadProblem(shown, f"rejected: {im.width}×{im.height} pixels is over the "
                                                f"{max_pixels:,}-pixel limit.")
                im.load()
                upright = ImageOps.exif_transpose(im)
                rgb = to_rgb(upright)
                if rgb is im:
                    rgb = im.copy()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return UploadProblem(shown, f"rejected: too many pixels ({exc}).")
    except Image.UnidentifiedImageError:
        return UploadProblem(shown, "could not be read: the file is corrupt or not an image.")
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a corrupt file, never a crash
        text = str(exc) or type(exc).__name__
        kind = "truncated" if "truncat" in text.lower() else "corrupt"
        return UploadProblem(shown, f"could not be read: the image data is {kind} ({text[:160]}).")
    return UploadedImage(shown, rgb, ALLOWED_FORMATS[fmt], size)


def validate_uploads(files: Iterable[tuple[str | None, bytes]], *, max_files: int = MAX_FILES,
                     max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS,
                     ) -> tuple[list[UploadedImage], list[UploadProblem]]:
    """Split ``(name, bytes)`` pairs into usable images and problems, in upload order."""
    images: list[UploadedImage] = []
    problems: list[UploadProblem] = []
    for i, (name, data) in enumerate(files):
        if i >= max_files:
            problems.append(UploadProblem(display_name(name), f"skipped: at most {max_files} images at a time."))
            continue
        result = validate_image_bytes(name, data, max_bytes=max_bytes, max_pixels=max_pixels)
        (images if isinstance(result, UploadedImage) else problems).append(result)
    return images, problems

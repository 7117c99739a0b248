"""OpenAI's download URLs carry the SHA-256 of their file: copies in ``~/.cache/clip`` are checked against it."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path
from urllib.parse import urlparse

from .errors import WeightsError

_SHA = re.compile(r"/([0-9a-f]{64})/")


def url_sha256(url: str) -> str | None:
    """The SHA-256 an OpenAI download URL names (``.../models/<sha256>/ViT-B-32.pt``), or None."""
    m = _SHA.search(urlparse(url).path + "/")
    return m.group(1) if m else None


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verify(path: str | Path, url: str) -> None:
    """Raise :class:`WeightsError` when ``path`` is not the file ``url`` names by its SHA-256."""
    want = url_sha256(url)
    if want is None:
        return
    got = file_sha256(path)
    if got != want:
        raise WeightsError(f"pretrained: {path} is not the file OpenAI publishes at {url} (SHA-256 {got[:12]}…, "
                           f"expected {want[:12]}…): it is incomplete or another file; delete it so it is "
                           "downloaded again, or pass it as a path")

from __future__ import annotations

import csv
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

def _save_image(path: Path, color: Sequence[int] = (200, 50, 50), size: tuple[int, int] = (24, 20), fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(zlib.crc32(str(path).encode()))
    arr = np.clip(np.array(color, dtype=np.float64) + rng.normal(0, 5, size=(size[1], size[0], 3)), 0, 255)
    Image.fromarray(arr.astype(np.uint8), "RGB").save(path, format=fmt)
    return path


def _write_table(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]], delimiter: str = ",") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, delimiter=delimiter)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture
def save_image() -> Callable[..., Path]:
    return _save_image


@pytest.fixture
def write_table() -> Callable[..., Path]:
    return _write_table

"""A small dataset in FER+'s shipped layout: three split folders, each with 48×48 grey PNGs and a
headerless label.csv (image, face box, 8 emotion votes, unknown, NF)."""
from __future__ import annotations

import csv
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

FOLDERS = {"train": "FER2013Train", "val": "FER2013Valid", "test": "FER2013Test"}
BOX = "(0, 0, 48, 48)"

# Votes per row: neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF.
CLEAR = [
    [8, 1, 0, 0, 0, 0, 0, 0, 1, 0],   # neutral
    [0, 9, 1, 0, 0, 0, 0, 0, 0, 0],   # happiness
    [0, 1, 7, 0, 0, 0, 2, 0, 0, 0],   # surprise
    [1, 0, 0, 6, 2, 0, 0, 0, 1, 0],   # sadness
    [0, 0, 0, 1, 5, 3, 0, 1, 0, 0],   # anger
    [0, 0, 0, 0, 2, 6, 0, 2, 0, 0],   # disgust
    [0, 0, 3, 1, 0, 0, 6, 0, 0, 0],   # fear
    [3, 0, 0, 0, 0, 1, 0, 6, 0, 0],   # contempt
]
UNKNOWN_MAJORITY = [2, 1, 0, 0, 0, 0, 0, 0, 6, 1]
NF_MAJORITY = [0, 0, 0, 0, 0, 0, 0, 0, 1, 9]
TIE_WITH_UNKNOWN = [4, 0, 0, 0, 0, 0, 0, 0, 4, 2]   # neutral ties unknown: the emotion (earlier column) wins


def grey_face(path: Path, seed_text: str) -> Path:
    rng = np.random.default_rng(zlib.crc32(seed_text.encode()))
    Image.fromarray(rng.integers(0, 256, (48, 48), dtype=np.uint8), "L").save(path)
    return path


def write_ferplus(root: Path, rows: dict[str, list[tuple[str, list]]], images: bool = True) -> Path:
    """``rows[split]`` = [(image name, votes or a full list of fields), ...]; images are written for names
    that end in .png unless ``images`` is False."""
    for split, folder in FOLDERS.items():
        d = root / folder
        d.mkdir(parents=True, exist_ok=True)
        with (d / "label.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            for name, votes in rows.get(split, []):
                w.writerow([name, BOX, *votes])
                if images and name.endswith(".png") and not (d / name).exists():
                    grey_face(d / name, f"{split}/{name}")
    return root


def standard_rows(start: int = 0) -> dict[str, list[tuple[str, list]]]:
    """Every class once per split, plus an unknown-majority, an NF-majority and a tied row in each."""
    rows: dict[str, list[tuple[str, list]]] = {}
    n = start
    for split in FOLDERS:
        part = []
        for votes in [*CLEAR, UNKNOWN_MAJORITY, NF_MAJORITY, TIE_WITH_UNKNOWN]:
            part.append((f"fer{n:07d}.png", list(votes)))
            n += 1
        rows[split] = part
    return rows

"""Emotion6 (Peng et al., CVPR 2015): images/<emotion>/<n>.jpg plus ground_truth.txt."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .config import EMOTION6_CLASSES, DataConfig
from .images import is_image_file
from .records import Record, distribution_from_label, normalise_distribution
from .scan_report import DataError, DataReport
from .scan import Candidate, scan_candidates

NEUTRAL = "neutral"
GROUND_TRUTH = "ground_truth.txt"
# Column layout documented in the dataset's readme; used only when the header cannot be read.
_DOCUMENTED_HEADER = ["image_filename", "valence", "arousal", *EMOTION6_CLASSES, NEUTRAL]


def _column_name(raw: str) -> str:
    name = raw.strip().strip("[]").strip().lower()
    return re.sub(r"^prob(ability)?\.?\s*", "", name)


def _header_columns(header: list[str], report: DataReport) -> tuple[int, dict[str, int]]:
    names = [_column_name(h) for h in header]
    wanted = [*EMOTION6_CLASSES, NEUTRAL]
    if all(w in names for w in wanted):
        file_col = next((i for i, n in enumerate(names) if "file" in n or "image" in n), 0)
        return file_col, {w: names.index(w) for w in wanted}
    report.warn(
        f"{GROUND_TRUTH}: header {header!r} does not name the emotion columns; "
        f"assuming the documented order {_DOCUMENTED_HEADER}"
    )
    return 0, {w: _DOCUMENTED_HEADER.index(w) for w in wanted}


def _class_order(cfg: DataConfig) -> list[str]:
    if cfg.classes is None:
        return list(EMOTION6_CLASSES)
    given = [c.lower() for c in cfg.classes if c.lower() != NEUTRAL]
    if sorted(given) != sorted(EMOTION6_CLASSES):
        raise DataError(
            f"data.classes for emotion6 must order the six Emotion6 classes {list(EMOTION6_CLASSES)}, "
            f"got {cfg.classes}"
        )
    return given


def load_emotion6(cfg: DataConfig, report: DataReport) -> tuple[list[str], list[Record], bool]:
    root = Path(cfg.root or "").expanduser().absolute()
    gt_path = root / GROUND_TRUTH
    if not gt_path.is_file():
        raise DataError(f"Emotion6: {gt_path} not found (data.root must be the folder holding it and images/)")
    images_dir = root / "images"
    report.row_file = str(gt_path)

    emotions = _class_order(cfg)
    classnames = [*emotions, NEUTRAL] if cfg.emotion6_neutral else list(emotions)
    label_of = {name: i for i, name in enumerate(emotions)}

    lines = gt_path.read_text(encoding="utf-8-sig").splitlines()
    if not lines:
        raise DataError(f"Emotion6: {gt_path} is empty")
    file_col, columns = _header_columns(lines[0].split("\t"), report)
    all_names = [*emotions, NEUTRAL]
    width = max(file_col, *columns.values()) + 1

    candidates: list[Candidate] = []
    seen: set[str] = set()
    gt_key = str(gt_path)
    for row, line in enumerate(lines[1:], start=1):
        if not line.strip():
            continue
        report.num_entries += 1
        fields = line.split("\t")
        if len(fields) < width:
            report.add_bad(gt_key, f"expected {width} tab-separated fields, got {len(fields)}", row=row)
            continue
        rel = fields[file_col].strip()
        key = str(images_dir / rel)
        seen.add(key)
        folder = Path(rel).parent.name.lower()
        if folder not in label_of:
            report.add_bad(key, f"folder '{folder}' is not an Emotion6 class", row=row, field="image_filename")
            continue
        label = label_of[folder]
        try:
            values = np.array([float(fields[columns[n]]) for n in all_names], dtype=np.float64)
            full, note = normalise_distribution(values, counts=False, tolerance=cfg.dist_tolerance)
        except ValueError as exc:
            report.add_bad(key, str(exc), row=row, field="probabilities")
            continue
        if note:
            report.warn(f"{gt_key} row {row}: {note}")
        if cfg.emotion6_neutral:
            dist = full
        elif full[:6].sum() > 0:
            # The six emotions alone sum to 1 - p(neutral); renormalising them is the intent.
            dist = full[:6] / full[:6].sum()
        else:
            report.warn(f"{gt_key} row {row}: all six emotion probabilities are 0 (only neutral); using the folder label")
            dist = distribution_from_label(label, len(classnames))
        candidates.append(Candidate(Record(key=key, label=label, dist=dist), row=row))

    if images_dir.is_dir():
        unlisted = [p for p in images_dir.rglob("*") if is_image_file(p) and str(p) not in seen]
        if unlisted:
            report.warn(f"Emotion6: {len(unlisted)} image(s) under {images_dir} are not in {GROUND_TRUTH} and were ignored")

    return classnames, scan_candidates(candidates, cfg, report), True

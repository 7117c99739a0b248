"""FER+ (Barsoum et al., ICMI 2016) as Microsoft ships it.

``root`` holds ``FER2013Train/``, ``FER2013Valid/`` and ``FER2013Test/`` (the official train,
val and test splits). Each folder has its images and a ``label.csv`` WITHOUT a header line:
image name, face box, the votes of 10 raters for neutral, happiness, surprise, sadness, anger,
disgust, fear and contempt, then the votes for unknown and NF (not a face).

- The face box is not used: every FER+ image is already the 48×48 face crop.
- A face whose majority vote is unknown or NF is set apart, as in the paper: dropped by
  default, kept with ``ferplus.keep_unknown`` (when it has any emotion vote). Either way
  it is listed under ``flagged`` in the data report. The majority is the largest vote
  count with ties going to the earlier column, so a face where an emotion ties with
  unknown or NF is kept.
- The distribution is the 8 emotion votes divided by their sum (unknown and NF left out);
  the label is its argmax (ties: the earlier class in ``data.classes`` order).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .config import FERPLUS_CLASSES, DataConfig
from .images import is_image_file
from .manifest import parse_numbers
from .records import DistributionProblem, Record
from .scan_report import HEADERLESS_ROW_CONVENTION, DataError, DataReport
from .scan import Candidate, scan_candidates
from .tables import read_table

FOLDERS = {"train": "FER2013Train", "val": "FER2013Valid", "test": "FER2013Test"}
LABEL_FILE = "label.csv"
NON_EMOTIONS = ("unknown", "NF")
COLUMNS = ["image", "box", *FERPLUS_CLASSES, *NON_EMOTIONS]
_VOTES = slice(2, 2 + len(FERPLUS_CLASSES) + len(NON_EMOTIONS))


def _class_order(cfg: DataConfig) -> list[str]:
    if cfg.classes is None:
        return list(FERPLUS_CLASSES)
    given = [c.lower() for c in cfg.classes]
    if sorted(given) != sorted(FERPLUS_CLASSES):
        raise DataError(f"data.classes for ferplus must order the eight FER+ classes {list(FERPLUS_CLASSES)}, "
                        f"got {cfg.classes}")
    return given


def load_ferplus(cfg: DataConfig, report: DataReport) -> tuple[list[str], list[Record], bool]:
    root = Path(cfg.root or "").expanduser().absolute()
    missing = [f"{folder}/{LABEL_FILE}" for folder in FOLDERS.values() if not (root / folder / LABEL_FILE).is_file()]
    if missing:
        raise DataError(f"FER+: {', '.join(missing)} not found under {root} (data.root must be the folder holding "
                        f"{', '.join(FOLDERS.values())}, each with its images and {LABEL_FILE})")
    classnames = _class_order(cfg)
    order = [FERPLUS_CLASSES.index(c) for c in classnames]
    vote_names = list(FERPLUS_CLASSES) + list(NON_EMOTIONS)
    report.row_convention = HEADERLESS_ROW_CONVENTION

    candidates: list[Candidate] = []
    for split, folder in FOLDERS.items():
        table = read_table(root / folder / LABEL_FILE, ",", COLUMNS, kind="FER+ labels")
        file, base = str(table.path), os.path.join(str(root), folder)
        listed: set[str] = set()
        for row, fields in table.rows:
            report.num_entries += 1
            if len(fields) != len(COLUMNS):
                report.add_bad(file, f"expected {len(COLUMNS)} fields (image, face box, 10 vote counts), "
                                     f"got {len(fields)}", row=row, file=file)
                continue
            if not fields[0]:
                report.add_bad(file, "empty image name", row=row, field="image", file=file)
                continue
            key = os.path.normpath(os.path.join(base, fields[0]))
            listed.add(key)
            try:
                counts = parse_numbers(fields[_VOTES], vote_names)
            except DistributionProblem as exc:
                report.add_bad(key, str(exc), row=row, field=exc.field, file=file)
                continue
            if not np.all(np.isfinite(counts)) or counts.sum() <= 0:
                report.add_bad(key, "no votes (all 10 vote counts are 0)" if np.all(np.isfinite(counts))
                               else "non-finite vote count", row=row, file=file)
                continue
            top = int(np.argmax(counts))
            if top >= len(FERPLUS_CLASSES):
                what = "unknown" if vote_names[top] == "unknown" else "NF (not a face)"
                reason = f"majority vote is {what}: {counts[top]:g} of {counts.sum():g} votes"
                if not cfg.ferplus.keep_unknown:
                    report.add_flagged(key, f"{reason}; dropped", row=row, file=file)
                    continue
                if counts[:len(FERPLUS_CLASSES)].sum() <= 0:
                    report.add_flagged(key, f"{reason}; dropped although ferplus.keep_unknown is set: no emotion "
                                            "has a vote", row=row, file=file)
                    continue
                report.add_flagged(key, f"{reason}; kept (ferplus.keep_unknown)", row=row, file=file)
            emotions = counts[order]
            dist = emotions / emotions.sum()
            candidates.append(Candidate(Record(key=key, label=int(np.argmax(dist)), dist=dist, split=split),
                                        row=row, file=file))
        unlisted = [n for n in os.listdir(base) if is_image_file(n) and os.path.join(base, n) not in listed]
        if unlisted:
            report.warn(f"FER+: {len(unlisted)} image(s) in {root / folder} are not in its {LABEL_FILE} and were ignored")
    return classnames, scan_candidates(candidates, cfg, report), True

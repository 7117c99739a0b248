"""FER+ (Barsoum et al., ICMI 2016) as Microsoft ships it.

``root`` holds ``FER2013Train/``, ``FER2013Valid/`` and ``FER2013Test/`` (the official train,
val and test splits). Each folder has its images and a ``label.csv`` WITHOUT a header line:
image name, face box, the votes of 10 raters for neutral, happiness, surprise, sadness, anger,
disgust, fear and contempt, then the votes for unknown and NF (not a face).

- The face box is not used: every FER+ image is already the 48×48 face crop.
- ``ferplus.protocol`` decides which faces are kept and what their target is. The paper's
  protocols (``majority``, ``crossentropy``, ``probability``, ``multi_target``) are described in
  :mod:`cascade.data.ferplus_protocols`; ``majority`` gives the numbers published FER+ results use.
- ``votes`` (the default) is this project's own reading, not one of the paper's: a face whose
  largest raw vote count is unknown or NF is dropped (kept with ``ferplus.keep_unknown`` when it
  has any emotion vote), ties going to the earlier column, so a face where an emotion ties with
  unknown or NF is kept; its distribution is all 8 emotion votes normalised, single votes
  included, and its label the distribution's argmax.
- Every face a protocol drops (or ``keep_unknown`` keeps) is listed under ``flagged`` in the data
  report, with the reason; the report names the protocol.
- Labels are the argmax of the target, ties going to the earlier class in ``data.classes`` order.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .config import FERPLUS_CLASSES, DataConfig
from .ferplus_protocols import apply_protocol
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
    # Normalised, so the keys built from it (normalised too) compare equal to the folder listing.
    root = Path(os.path.normpath(Path(cfg.root or "").expanduser().absolute()))
    missing = [f"{folder}/{LABEL_FILE}" for folder in FOLDERS.values() if not (root / folder / LABEL_FILE).is_file()]
    if missing:
        raise DataError(f"FER+: {', '.join(missing)} not found under {root} (data.root must be the folder holding "
                        f"{', '.join(FOLDERS.values())}, each with its images and {LABEL_FILE})")
    classnames = _class_order(cfg)
    order = [FERPLUS_CLASSES.index(c) for c in classnames]
    vote_names = list(FERPLUS_CLASSES) + list(NON_EMOTIONS)
    report.row_convention = HEADERLESS_ROW_CONVENTION
    protocol = cfg.ferplus.protocol
    report.protocol = protocol

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
            if protocol == "votes":
                dist = _votes_distribution(counts, order, key, row, file, cfg, report)
                if dist is None:
                    continue
            else:
                decision = apply_protocol(counts, protocol, FERPLUS_CLASSES)
                if not decision.kept:
                    report.add_flagged(key, f"{protocol}: {decision.reason}; dropped", row=row, file=file)
                    continue
                dist = decision.target[order]
            label = int(np.argmax(dist))
            keep_dist = None if protocol == "majority" else dist
            candidates.append(Candidate(Record(key=key, label=label, dist=keep_dist, split=split), row=row, file=file))
        unlisted = [n for n in os.listdir(base) if is_image_file(n) and os.path.normpath(os.path.join(base, n)) not in listed]
        if unlisted:
            report.warn(f"FER+: {len(unlisted)} image(s) in {root / folder} are not in its {LABEL_FILE} and were ignored")
    # Under majority the targets are one-hot labels: the distribution metrics do not apply.
    return classnames, scan_candidates(candidates, cfg, report), protocol != "majority"


def _votes_distribution(counts: np.ndarray, order: list[int], key: str, row: int, file: str, cfg: DataConfig,
                        report: DataReport) -> np.ndarray | None:
    """The ``votes`` protocol: all 8 emotion votes normalised, or None when the face is dropped."""
    vote_names = list(FERPLUS_CLASSES) + list(NON_EMOTIONS)
    top = int(np.argmax(counts))
    if top >= len(FERPLUS_CLASSES):
        what = "unknown" if vote_names[top] == "unknown" else "NF (not a face)"
        reason = f"majority vote is {what}: {counts[top]:g} of {counts.sum():g} votes"
        if not cfg.ferplus.keep_unknown:
            report.add_flagged(key, f"{reason}; dropped", row=row, file=file)
            return None
        if counts[:len(FERPLUS_CLASSES)].sum() <= 0:
            report.add_flagged(key, f"{reason}; dropped although ferplus.keep_unknown is set: no emotion "
                                    "has a vote", row=row, file=file)
            return None
        report.add_flagged(key, f"{reason}; kept (ferplus.keep_unknown)", row=row, file=file)
    emotions = counts[order]
    return emotions / emotions.sum()

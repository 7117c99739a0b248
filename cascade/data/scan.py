"""The shared last step of every file-based loader: de-duplicate, open every image, keep the good ones."""

from __future__ import annotations

import time
from dataclasses import dataclass

from .config import DataConfig
from .images import check_images
from .records import Record
from .scan_report import DataReport


@dataclass
class Candidate:
    record: Record
    row: int | None = None
    file: str | None = None   # the table that lists it, when a dataset has several


def scan_candidates(candidates: list[Candidate], cfg: DataConfig, report: DataReport) -> list[Record]:
    first: dict[str, Candidate] = {}
    unique: list[Candidate] = []
    for cand in candidates:
        key = cand.record.key
        if key in first:
            earlier = first[key]
            where = "an earlier entry" if earlier.row is None else f"row {earlier.row}"
            if earlier.file is not None and earlier.row is not None:
                where += f" of {earlier.file}"
            report.add_bad(key, f"duplicate path (first listed at {where})", row=cand.row, file=cand.file)
            continue
        first[key] = cand
        unique.append(cand)

    start = time.perf_counter()
    reasons = check_images([c.record.key for c in unique], cfg.max_image_pixels, cfg.scan_workers)
    report.scan_seconds = round(time.perf_counter() - start, 3)
    report.num_scanned = len(unique)

    kept: list[Record] = []
    for cand, reason in zip(unique, reasons):
        if reason is None:
            kept.append(cand.record)
        else:
            report.add_bad(cand.record.key, reason, row=cand.row, file=cand.file)
    return kept

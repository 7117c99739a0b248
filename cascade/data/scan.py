"""The shared last step of every file-based loader: de-duplicate, open every image, keep the good ones."""

from __future__ import annotations

import time
from dataclasses import dataclass

from .config import DataConfig
from .images import check_images
from .records import Record
from .report import DataReport


@dataclass
class Candidate:
    record: Record
    row: int | None = None


def scan_candidates(candidates: list[Candidate], cfg: DataConfig, report: DataReport) -> list[Record]:
    first_row: dict[str, int | None] = {}
    unique: list[Candidate] = []
    for cand in candidates:
        key = cand.record.key
        if key in first_row:
            where = f"row {first_row[key]}" if first_row[key] is not None else "an earlier entry"
            report.add_bad(key, f"duplicate path (first listed at {where})", row=cand.row)
            continue
        first_row[key] = cand.row
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
            report.add_bad(cand.record.key, reason, row=cand.row)
    return kept

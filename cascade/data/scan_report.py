"""What a dataset scan found: kept items, bad items with reasons, warnings."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..fileio import atomic_write_text  # noqa: F401  (re-exported for data.splits)

log = logging.getLogger("cascade.data")

ROW_CONVENTION = "row N is the N-th line after the header (1-based; the header line is not counted), i.e. line N+1 of the file"
HEADERLESS_ROW_CONVENTION = "row N is line N of the file (1-based; the file has no header line)"


class DataError(ValueError):
    """Bad dataset input. Carries the report so callers can show every problem, not just the first."""

    def __init__(self, message: str, report: DataReport | None = None) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class BadItem:
    """One problem: ``key`` is the item (image path, or ``SHARD#KEY`` for a sample of a tar shard);
    ``row`` and ``file`` say where a table listed it, when the report reads several tables."""

    key: str
    reason: str
    row: int | None = None
    field: str | None = None
    file: str | None = None

    def describe(self) -> str:
        parts = [self.key]
        if self.row is not None:
            parts.append(f"row {self.row}" + (f" of {self.file}" if self.file and self.file != self.key else ""))
        if self.field is not None:
            parts.append(f"field '{self.field}'")
        return f"{', '.join(parts)}: {self.reason}"


@dataclass
class DataReport:
    source: str
    format: str
    on_bad: str = "error"
    row_file: str | None = None
    row_convention: str = ROW_CONVENTION
    classnames: list[str] = field(default_factory=list)
    num_entries: int = 0
    num_scanned: int = 0
    num_kept: int = 0
    counts_per_class: dict[str, int] = field(default_factory=dict)
    has_distributions: bool = False
    bad: list[BadItem] = field(default_factory=list)
    # Items a dataset's own rule sets apart (FER+: the majority vote is unknown or not-a-face),
    # each with what was done to it; unlike bad items they never fail a scan.
    flagged: list[BadItem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    scan_seconds: float = 0.0

    def add_bad(self, key: str, reason: str, row: int | None = None, field: str | None = None,
                file: str | None = None) -> BadItem:
        item = BadItem(key=key, reason=reason, row=row, field=field, file=file)
        self.bad.append(item)
        return item

    def add_flagged(self, key: str, reason: str, row: int | None = None, file: str | None = None) -> BadItem:
        item = BadItem(key=key, reason=reason, row=row, file=file)
        self.flagged.append(item)
        return item

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        log.warning(message)

    def bad_keys(self) -> set[str]:
        return {b.key for b in self.bad}

    def summary(self, limit: int = 10) -> str:
        if self.row_file:
            where = f"; rows refer to {self.row_file}: {self.row_convention}"
        elif any(b.row is not None for b in self.bad):
            where = f"; {self.row_convention}"
        else:
            where = ""
        lines = [f"{len(self.bad)} bad item(s) in {self.source}{where}:"]
        lines += [f"  - {b.describe()}" for b in self.bad[:limit]]
        if len(self.bad) > limit:
            lines.append(f"  ... and {len(self.bad) - limit} more")
        if self.on_bad == "error":
            lines.append("Fix the data, or set data.on_bad: skip to drop these items (they stay listed in data_report.json).")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["num_bad"] = len(self.bad)
        d["num_flagged"] = len(self.flagged)
        return d

    def to_json(self, indent: int = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def write(self, path: str | os.PathLike[str]) -> Path:
        return atomic_write_text(path, self.to_json() + "\n")



"""Delimited tables (CSV/TSV) with a header line or with named columns, rows numbered for messages."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from .scan_report import HEADERLESS_ROW_CONVENTION, ROW_CONVENTION, DataError

SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
}


@dataclass
class Table:
    """A table's column names (None: an ignored column of a headerless file) and its rows.

    Each row is ``(number, fields)``: with a header, N is the N-th line after it; without
    one, N is the file's line N (the line the row ends on, for quoted fields spanning lines).
    """

    path: Path
    header: list[str | None]
    rows: list[tuple[int, list[str]]]
    headerless: bool
    kind: str = "manifest"

    @property
    def row_convention(self) -> str:
        return HEADERLESS_ROW_CONVENTION if self.headerless else ROW_CONVENTION

    @property
    def names(self) -> list[str]:
        return [h for h in self.header if h is not None]

    def has(self, name: str) -> bool:
        return name in self.header

    def column(self, name: str, what: str) -> int:
        if name not in self.header:
            raise DataError(f"{self.kind} {self.path}: {what} column '{name}' not found; columns are {self.names}")
        return self.header.index(name)


def delimiter_for(path: Path, explicit: str | None) -> str:
    if explicit is not None:
        return explicit
    return "\t" if path.suffix.lower() in {".tsv", ".tab"} else ","


def read_table(path: Path, delimiter: str, columns: list[str | None] | None = None, kind: str = "manifest") -> Table:
    """Read ``path``; with ``columns`` the file has no header line and these name its columns."""
    rows: list[tuple[int, list[str]]] = []
    header: list[str | None]
    with path.open("r", encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        if columns is None:
            try:
                header = [h.strip() for h in next(reader)]
            except StopIteration:
                raise DataError(f"{kind} {path} is empty (a header line is required)") from None
            except csv.Error as exc:
                raise DataError(f"{kind} {path}: cannot parse the header: {exc}") from None
            offset = reader.line_num
        else:
            header, offset = list(columns), 0
        try:
            for fields in reader:
                fields = [f.strip() for f in fields]
                if not any(fields):
                    continue
                # Rows are numbered by the file line they end on, so a user can jump straight to them.
                rows.append((reader.line_num - offset, fields))
        except csv.Error as exc:
            raise DataError(f"{kind} {path}: cannot parse line {reader.line_num}: {exc}") from None
    named = [h for h in header if h is not None]
    dupes = sorted({h for h in named if named.count(h) > 1})
    if dupes:
        raise DataError(f"{kind} {path}: duplicate column name(s) {dupes}")
    if columns is not None and rows and _is_header_line(rows[0][1], header):
        raise DataError(f"{kind} {path}: line 1 is a header line ({rows[0][1]}), but manifest.columns says the file "
                        "has none; drop manifest.columns to use the file's header")
    return Table(path=path, header=header, rows=rows, headerless=columns is not None, kind=kind)


def _is_header_line(fields: list[str], names: list[str | None]) -> bool:
    pairs = [(f, n) for f, n in zip(fields, names) if n is not None]
    return len(fields) == len(names) and bool(pairs) and all(f.casefold() == n.casefold() for f, n in pairs)

"""CSV/TSV manifests: a path column plus a label and/or named distribution (or vote-count) columns."""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import numpy as np

from .config import DataConfig
from .records import DistributionProblem, Record, distribution_from_label, normalise_distribution
from .report import DataError, DataReport
from .scan import Candidate, scan_candidates

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
_INT = re.compile(r"^[+-]?\d+$")


def _delimiter(path: Path, explicit: str | None) -> str:
    if explicit is not None:
        return explicit
    return "\t" if path.suffix.lower() in {".tsv", ".tab"} else ","


def _read_rows(path: Path, delimiter: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    with path.open("r", encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise DataError(f"manifest {path} is empty (a header line is required)") from None
        except csv.Error as exc:
            raise DataError(f"manifest {path}: cannot parse the header: {exc}") from None
        header_lines = reader.line_num
        rows: list[tuple[int, list[str]]] = []
        try:
            for fields in reader:
                if not fields or all(not f.strip() for f in fields):
                    continue
                # Rows are numbered by the file line they end on, so a user can jump straight to them.
                rows.append((reader.line_num - header_lines, [f.strip() for f in fields]))
        except csv.Error as exc:
            raise DataError(f"manifest {path}: cannot parse line {reader.line_num}: {exc}") from None
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise DataError(f"manifest {path}: duplicate column name(s) {dupes}")
    return header, rows


def _column(header: list[str], name: str, path: Path, what: str) -> int:
    if name not in header:
        raise DataError(f"manifest {path}: {what} column '{name}' not found; columns are {header}")
    return header.index(name)


class _LabelParser:
    def __init__(self, classnames: list[str]) -> None:
        self.exact = {c: i for i, c in enumerate(classnames)}
        self.folded = {c.casefold(): i for i, c in enumerate(classnames)}
        self.n = len(classnames)

    def __call__(self, value: str) -> int | None:
        if value in self.exact:
            return self.exact[value]
        if value.casefold() in self.folded:
            return self.folded[value.casefold()]
        if _INT.match(value):
            i = int(value)
            if 0 <= i < self.n:
                return i
        return None


def load_manifest(cfg: DataConfig, report: DataReport) -> tuple[list[str], list[Record], bool]:
    opts = cfg.manifest
    path = Path(cfg.root or "").expanduser().absolute()
    if not path.is_file():
        raise DataError(f"manifest {path} not found (data.root must be the CSV/TSV file)")
    base = path.parent
    report.row_file = str(path)
    header, rows = _read_rows(path, _delimiter(path, opts.delimiter))

    path_col = _column(header, opts.path_column, path, "path")

    label_col: int | None
    if opts.label_column is None:
        label_col = None
    elif isinstance(opts.label_column, int):
        if opts.label_column >= len(header):
            raise DataError(
                f"manifest {path}: label_column index {opts.label_column} is out of range "
                f"(the header has {len(header)} columns, indices 0..{len(header) - 1})"
            )
        label_col = opts.label_column
    elif opts.label_column in header:
        label_col = header.index(opts.label_column)
    elif "label_column" in opts.model_fields_set:
        raise DataError(f"manifest {path}: label column '{opts.label_column}' not found; columns are {header}")
    else:
        label_col = None

    dist_names: list[str] | None = None
    if opts.distribution_columns is not None:
        for name in opts.distribution_columns:
            _column(header, name, path, "distribution")
        dupes = sorted({n for n in opts.distribution_columns if opts.distribution_columns.count(n) > 1})
        if dupes:
            raise DataError(f"manifest {path}: distribution column(s) listed twice: {dupes}")
        dist_names = list(opts.distribution_columns)
    elif cfg.classes is not None and all(c in header for c in cfg.classes):
        dist_names = list(cfg.classes)

    if dist_names is not None:
        if cfg.classes is None:
            classnames = list(dist_names)
        else:
            classnames = list(cfg.classes)
            if set(dist_names) != set(classnames):
                raise DataError(
                    f"manifest {path}: distribution columns {dist_names} must name exactly the classes "
                    f"{classnames} (missing {sorted(set(classnames) - set(dist_names))}, "
                    f"extra {sorted(set(dist_names) - set(classnames))})"
                )
        dist_cols = [header.index(c) for c in classnames]
    else:
        dist_cols = []
        if label_col is None:
            raise DataError(
                f"manifest {path}: no label column and no distribution columns; set manifest.label_column, "
                f"manifest.distribution_columns, or data.classes matching column names in {header}"
            )
        if cfg.classes is not None:
            classnames = list(cfg.classes)
        else:
            values = sorted({f[label_col] for _, f in rows if label_col < len(f) and f[label_col]})
            if values and all(_INT.match(v) for v in values):
                raise DataError(
                    f"manifest {path}: labels are integers, so data.classes must give the class names in index order"
                )
            classnames = values
            if len(classnames) < 2:
                raise DataError(f"manifest {path}: need at least two distinct labels, found {classnames}")

    split_col = _column(header, opts.split_column, path, "split") if opts.split_column else None
    label_name = header[label_col] if label_col is not None else None
    parse_label = _LabelParser(classnames)
    num_classes = len(classnames)
    manifest_key = str(path)

    candidates: list[Candidate] = []
    for row, fields in rows:
        report.num_entries += 1
        if len(fields) != len(header):
            report.add_bad(manifest_key, f"expected {len(header)} fields, got {len(fields)}", row=row)
            continue
        raw_path = fields[path_col]
        if not raw_path:
            report.add_bad(manifest_key, "empty path", row=row, field=opts.path_column)
            continue
        key = os.path.normpath(raw_path if os.path.isabs(raw_path) else base / raw_path)

        dist: np.ndarray | None = None
        if dist_cols:
            try:
                values = np.array([float(fields[c]) for c in dist_cols], dtype=np.float64)
            except ValueError:
                bad = next(header[c] for c in dist_cols if not _is_float(fields[c]))
                report.add_bad(key, f"not a number: {fields[header.index(bad)]!r}", row=row, field=bad)
                continue
            negative = [header[c] for c, v in zip(dist_cols, values) if v < 0]
            if negative:
                report.add_bad(
                    key, f"negative value {fields[header.index(negative[0])]}", row=row, field=negative[0]
                )
                continue
            try:
                dist, note = normalise_distribution(
                    values, counts=opts.counts, tolerance=cfg.dist_tolerance, suggest_counts=True
                )
            except DistributionProblem as exc:
                report.add_bad(key, str(exc), row=row, field=",".join(classnames))
                continue
            if note:
                report.warn(f"{path} row {row}: {note}")

        label_text = fields[label_col] if label_col is not None else ""
        if label_col is not None and label_text:
            label = parse_label(label_text)
            if label is None:
                report.add_bad(key, f"unknown label {label_text!r} (classes: {classnames})", row=row, field=label_name)
                continue
        elif dist is not None:
            # np.argmax takes the lowest class index on ties, the same rule the metrics use.
            label = int(np.argmax(dist))
        else:
            report.add_bad(key, "empty label", row=row, field=label_name)
            continue

        if dist is None:
            dist = distribution_from_label(label, num_classes, cfg.label_smoothing)

        split = None
        if split_col is not None:
            split = SPLIT_ALIASES.get(fields[split_col].lower())
            if split is None:
                report.add_bad(
                    key, f"unknown split {fields[split_col]!r} (use train, val or test)", row=row, field=opts.split_column
                )
                continue

        candidates.append(Candidate(Record(key=key, label=label, dist=dist, split=split), row=row))

    return classnames, scan_candidates(candidates, cfg, report), bool(dist_cols)


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True

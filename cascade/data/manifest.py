"""CSV/TSV manifests: a path column plus a label and/or named distribution (or vote-count) columns.

A manifest has a header line, or ``manifest.columns`` names the columns of a file without
one. ``data.root`` is one file (a split column or a seeded split divides it) or a mapping
``{train: FILE, val: FILE, test: FILE}``, one file per split. Image paths are relative to
the folder of the file that lists them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from .config import DataConfig, ManifestOptions
from .records import UNLABELLED, DistributionProblem, Record, distribution_from_label, normalise_distribution
from .scan_report import DataError, DataReport
from .scan import Candidate, scan_candidates
from .tables import SPLIT_ALIASES, Table, delimiter_for, read_table

__all__ = ["SPLIT_ALIASES", "LabelParser", "load_manifest", "parse_numbers", "vote_distribution"]

_INT = re.compile(r"^[+-]?\d+$")


class LabelParser:
    """A label given as a class name (exact, then case-insensitive) or as a class index."""

    def __init__(self, classnames: list[str]) -> None:
        self.exact = {c: i for i, c in enumerate(classnames)}
        self.folded = {c.casefold(): i for i, c in enumerate(classnames)}
        self.n = len(classnames)

    def by_name(self, name: str) -> int | None:
        """The index of a class name (exact, then case-insensitive); None for other text."""
        return self.exact.get(name, self.folded.get(name.casefold()))

    def __call__(self, value: str | int) -> int | None:
        if isinstance(value, int) and not isinstance(value, bool):
            return value if 0 <= value < self.n else None
        value = str(value)
        if value in self.exact:
            return self.exact[value]
        if value.casefold() in self.folded:
            return self.folded[value.casefold()]
        if _INT.match(value):
            i = int(value)
            if 0 <= i < self.n:
                return i
        return None


def parse_numbers(fields: list[str], names: list[str]) -> np.ndarray:
    """Non-negative numbers from text fields named ``names``; DistributionProblem naming the
    column of the first that is not one."""
    values = np.empty(len(fields), dtype=np.float64)
    for k, (text, name) in enumerate(zip(fields, names)):
        try:
            values[k] = float(text)
        except ValueError:
            raise DistributionProblem(f"not a number: {text!r}", name) from None
        if values[k] < 0:
            raise DistributionProblem(f"negative value {text}", name)
    return values


def vote_distribution(
    fields: list[str], names: list[str], *, counts: bool, tolerance: float
) -> tuple[np.ndarray, str | None]:
    """Text fields (named ``names``) as a distribution and a warning, or DistributionProblem."""
    values = parse_numbers(fields, names)
    try:
        return normalise_distribution(values, counts=counts, tolerance=tolerance, suggest_counts=True)
    except DistributionProblem as exc:
        raise DistributionProblem(str(exc), ",".join(names)) from None


def _label_column(table: Table, opts: ManifestOptions) -> int | None:
    if opts.label_column is None:
        return None
    if isinstance(opts.label_column, int):
        if opts.label_column >= len(table.header):
            raise DataError(
                f"manifest {table.path}: label_column index {opts.label_column} is out of range "
                f"(the file has {len(table.header)} columns, indices 0..{len(table.header) - 1})"
            )
        return opts.label_column
    if table.has(opts.label_column):
        return table.header.index(opts.label_column)
    if "label_column" in opts.model_fields_set:
        raise DataError(f"manifest {table.path}: label column '{opts.label_column}' not found; columns are {table.names}")
    return None


def _distribution_names(tables: list[Table], cfg: DataConfig) -> list[str] | None:
    opts = cfg.manifest
    if opts.distribution_columns is not None:
        dupes = sorted({n for n in opts.distribution_columns if opts.distribution_columns.count(n) > 1})
        for table in tables:
            for name in opts.distribution_columns:
                table.column(name, "distribution")
        if dupes:
            raise DataError(f"manifest {tables[0].path}: distribution column(s) listed twice: {dupes}")
        return list(opts.distribution_columns)
    if cfg.classes is not None and all(all(t.has(c) for c in cfg.classes) for t in tables):
        return list(cfg.classes)
    return None


def _classnames(tables: list[Table], cfg: DataConfig, dist_names: list[str] | None) -> list[str]:
    if dist_names is not None:
        if cfg.classes is None:
            return list(dist_names)
        if set(dist_names) != set(cfg.classes):
            raise DataError(
                f"manifest {tables[0].path}: distribution columns {dist_names} must name exactly the classes "
                f"{cfg.classes} (missing {sorted(set(cfg.classes) - set(dist_names))}, "
                f"extra {sorted(set(dist_names) - set(cfg.classes))})"
            )
        return list(cfg.classes)
    label_cols = [_label_column(t, cfg.manifest) for t in tables]
    if any(c is None for c in label_cols):
        t = tables[label_cols.index(None)]
        raise DataError(
            f"manifest {t.path}: no label column and no distribution columns; set manifest.label_column, "
            f"manifest.distribution_columns, or data.classes matching column names in {t.names}"
        )
    if cfg.classes is not None:
        return list(cfg.classes)
    values = sorted({f[c] for t, c in zip(tables, label_cols) for _, f in t.rows if c < len(f) and f[c]})
    if values and all(_INT.match(v) for v in values):
        raise DataError(
            f"manifest {tables[0].path}: labels are integers, so data.classes must give the class names in index order"
        )
    if len(values) < 2:
        raise DataError(f"manifest {tables[0].path}: need at least two distinct labels, found {values}")
    return values


def load_manifest(cfg: DataConfig, report: DataReport) -> tuple[list[str], list[Record], bool]:
    opts = cfg.manifest
    tables: list[tuple[str | None, Table]] = []
    for split, root in cfg.split_roots().items():
        path = Path(root or "").expanduser().absolute()
        if not path.is_file():
            where = f"data.root.{split}" if split else "data.root"
            raise DataError(f"manifest {path} not found ({where} must be the CSV/TSV file)")
        table = read_table(path, delimiter_for(path, opts.delimiter), opts.columns)
        table.column(opts.path_column, "path")
        tables.append((split, table))
    if len(tables) == 1:
        report.row_file = str(tables[0][1].path)
    report.row_convention = tables[0][1].row_convention

    unlabelled = {split for split, t in tables if _is_unlabelled(t, split, len(tables), cfg)}
    labelled = [t for split, t in tables if split not in unlabelled]
    dist_names = _distribution_names(labelled, cfg)
    classnames = _classnames(labelled, cfg, dist_names)
    candidates: list[Candidate] = []
    for split, table in tables:
        if split in unlabelled:
            report.warn(f"manifest {table.path}: no label or distribution columns, so its {len(table.rows)} "
                        f"{split} item(s) are unlabelled (for label-free training, train.supervision: pseudo)")
        candidates += _table_candidates(table, split, cfg, report, classnames, dist_names is not None,
                                        file=str(table.path) if len(tables) > 1 else None,
                                        labelled=split not in unlabelled)
    return classnames, scan_candidates(candidates, cfg, report), dist_names is not None


def _is_unlabelled(table: Table, split: str | None, num_tables: int, cfg: DataConfig) -> bool:
    """The train file of a per-split mapping may carry no labels at all (label-free training)."""
    if split != "train" or num_tables < 2:
        return False
    label = cfg.manifest.label_column
    if isinstance(label, int) or (label is not None and table.has(label)):
        return False
    named = cfg.manifest.distribution_columns or cfg.classes or []
    return not any(table.has(c) for c in named)


def _table_candidates(table: Table, split_of_file: str | None, cfg: DataConfig, report: DataReport,
                      classnames: list[str], with_dist: bool, file: str | None,
                      labelled: bool = True) -> list[Candidate]:
    opts = cfg.manifest
    path = table.path
    base = path.parent
    path_col = table.column(opts.path_column, "path")
    if not labelled:
        return _unlabelled_candidates(table, path_col, split_of_file, report, file)
    label_col = _label_column(table, opts)
    dist_cols = [table.header.index(c) for c in classnames] if with_dist else []
    split_col = table.column(opts.split_column, "split") if opts.split_column else None
    label_name = table.header[label_col] if label_col is not None else None
    parse_label = LabelParser(classnames)
    width = len(table.header)
    manifest_key = str(path)

    out: list[Candidate] = []
    for row, fields in table.rows:
        report.num_entries += 1
        if len(fields) != width:
            report.add_bad(manifest_key, f"expected {width} fields, got {len(fields)}", row=row, file=file)
            continue
        raw_path = fields[path_col]
        if not raw_path:
            report.add_bad(manifest_key, "empty path", row=row, field=opts.path_column, file=file)
            continue
        key = os.path.normpath(raw_path if os.path.isabs(raw_path) else base / raw_path)

        dist: np.ndarray | None = None
        if dist_cols:
            try:
                dist, note = vote_distribution([fields[c] for c in dist_cols], classnames, counts=opts.counts,
                                               tolerance=cfg.dist_tolerance)
            except DistributionProblem as exc:
                report.add_bad(key, str(exc), row=row, field=exc.field, file=file)
                continue
            if note:
                report.warn(f"{path} row {row}: {note}")

        label_text = fields[label_col] if label_col is not None else ""
        if label_col is not None and label_text:
            label = parse_label(label_text)
            if label is None:
                report.add_bad(key, f"unknown label {label_text!r} (classes: {classnames})", row=row,
                               field=label_name, file=file)
                continue
        elif dist is not None:
            # np.argmax takes the lowest class index on ties, the same rule the metrics use.
            label = int(np.argmax(dist))
        else:
            report.add_bad(key, "empty label", row=row, field=label_name, file=file)
            continue

        if dist is None:
            dist = distribution_from_label(label, len(classnames), cfg.label_smoothing)

        split = split_of_file
        if split_col is not None:
            split = SPLIT_ALIASES.get(fields[split_col].lower())
            if split is None:
                report.add_bad(key, f"unknown split {fields[split_col]!r} (use train, val or test)", row=row,
                               field=opts.split_column, file=file)
                continue

        out.append(Candidate(Record(key=key, label=label, dist=dist, split=split), row=row, file=file))
    return out


def _unlabelled_candidates(table: Table, path_col: int, split: str | None, report: DataReport,
                           file: str | None) -> list[Candidate]:
    out: list[Candidate] = []
    for row, fields in table.rows:
        report.num_entries += 1
        raw_path = fields[path_col] if path_col < len(fields) else ""
        if not raw_path:
            report.add_bad(str(table.path), "empty path", row=row, field=table.header[path_col], file=file)
            continue
        key = os.path.normpath(raw_path if os.path.isabs(raw_path) else table.path.parent / raw_path)
        out.append(Candidate(Record(key=key, label=UNLABELLED, dist=None, split=split), row=row, file=file))
    return out

"""`load_index`: read any supported format into a scanned, validated DatasetIndex."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import DataConfig
from .emotion6 import load_emotion6
from .imagefolder import load_imagefolder
from .manifest import load_manifest
from .records import DatasetIndex
from .report import DataError, DataReport
from .synthetic import SyntheticSpec, load_synthetic


def _source(cfg: DataConfig) -> str:
    if cfg.format == "synthetic":
        s = cfg.synthetic
        return f"synthetic(seed={s.seed}, num_samples={s.num_samples}, image_size={s.image_size})"
    return str(Path(cfg.root or "").expanduser().absolute())


def load_index(cfg: DataConfig | dict[str, Any]) -> DatasetIndex:
    """Load and scan a dataset.

    Every listed image is opened and decoded once. Problems are collected in the report;
    with on_bad="error" any problem raises DataError (carrying the report) after the whole
    dataset has been checked, so one run shows every bad item rather than the first.
    """
    if not isinstance(cfg, DataConfig):
        cfg = DataConfig.model_validate(cfg)
    source = _source(cfg)
    report = DataReport(source=source, format=cfg.format, on_bad=cfg.on_bad)

    spec: SyntheticSpec | None = None
    if cfg.format == "synthetic":
        classnames, records, spec = load_synthetic(cfg, report)
        has_dist = True
    elif cfg.format == "emotion6":
        classnames, records, has_dist = load_emotion6(cfg, report)
    elif cfg.format == "imagefolder":
        classnames, records, has_dist = load_imagefolder(cfg, report)
    elif cfg.format == "manifest":
        classnames, records, has_dist = load_manifest(cfg, report)
    else:  # pragma: no cover - the Literal type rules this out
        raise DataError(f"unknown data format {cfg.format!r}")

    report.bad.sort(key=lambda b: (b.row is None, b.row or 0))
    index = DatasetIndex(
        classnames=classnames,
        records=records,
        report=report,
        has_distributions=has_dist,
        source=source,
        synthetic=spec,
    )
    report.classnames = list(classnames)
    report.num_kept = len(records)
    report.counts_per_class = index.class_counts()
    report.has_distributions = has_dist

    if report.bad and cfg.on_bad == "error":
        raise DataError(report.summary(), report)
    if not records:
        raise DataError(f"{source}: no usable items" + (f"\n{report.summary()}" if report.bad else ""), report)
    # Emotion6's neutral exists only inside distributions; no image carries it as a hard label.
    label_free = {"neutral"} if cfg.format == "emotion6" and cfg.emotion6_neutral else set()
    empty = [name for name, n in report.counts_per_class.items() if n == 0 and name not in label_free]
    if empty:
        report.warn(f"class(es) {empty} have no items")
    return index

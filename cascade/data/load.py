"""`load_index`: read any supported format into a scanned, validated DatasetIndex."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import DataConfig, is_url
from .emotion6 import load_emotion6
from .ferplus import load_ferplus
from .imagefolder import load_imagefolder
from .manifest import load_manifest
from .records import DatasetIndex
from .scan_report import DataError, DataReport
from .shards import load_webdataset
from .synthetic import SyntheticSpec, load_synthetic

LOADERS = {
    "emotion6": load_emotion6,
    "imagefolder": load_imagefolder,
    "manifest": load_manifest,
    "ferplus": load_ferplus,
    "webdataset": load_webdataset,
}


def _source(cfg: DataConfig) -> str:
    if cfg.format == "synthetic":
        s = cfg.synthetic
        return f"synthetic(seed={s.seed}, num_samples={s.num_samples}, image_size={s.image_size})"

    def one(root: str) -> str:
        return root if is_url(root) else str(Path(root).expanduser().absolute())

    if isinstance(cfg.root, dict):
        return ", ".join(f"{split}: {one(root)}" for split, root in cfg.split_roots().items())
    return one(cfg.root or "")


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
    elif cfg.format in LOADERS:
        classnames, records, has_dist = LOADERS[cfg.format](cfg, report)
    else:  # pragma: no cover - the Literal type rules this out
        raise DataError(f"unknown data format {cfg.format!r}")
    if isinstance(cfg.root, dict) and "val" not in cfg.root:
        what = "shards" if cfg.format == "webdataset" else "file"
        report.warn(f"data.root has no val {what}: the best checkpoint cannot be chosen on validation data")

    # Row order within each table; tables in the order they were first reported.
    tables = {f: i for i, f in enumerate(dict.fromkeys(b.file for b in report.bad))}
    report.bad.sort(key=lambda b: (tables[b.file], b.row is None, b.row or 0))
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

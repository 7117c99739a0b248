"""The data source chosen in the sidebar: config, loading, and a summary for the Overview."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data import DataConfig, DataError, DatasetIndex
from ..data.config import resolve_root
from ..train.data import DataBundle as LoadedData  # noqa: F401  (the pages name it so)
from ..train.data import load_data  # noqa: F401

SOURCE_LABELS: dict[str, str] = {
    "synthetic": "Built-in synthetic faces",
    "emotion6": "Emotion6 (folder)",
    "imagefolder": "Image folder (one sub-folder per class)",
    "manifest": "Manifest (CSV/TSV file)",
    "ferplus": "FER+ (folder with FER2013Train/Valid/Test)",
    "webdataset": "WebDataset shards (brace pattern of .tar files or URLs)",
}


def default_emotion6_root() -> str:
    env = os.environ.get("CASCADE_EMOTION6")
    if env:
        return env
    here = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "Emotion6"
    return str(here)


def make_data_config(kind: str, path: str | None = None, *, synthetic_size: int = 600, seed: int = 0,
                     on_bad: str = "skip") -> DataConfig:
    """A validated DataConfig; raises ValueError naming the problem (e.g. a missing path)."""
    if kind == "synthetic":
        return DataConfig(format="synthetic", synthetic={"num_samples": synthetic_size, "seed": seed}, on_bad=on_bad)
    if kind not in SOURCE_LABELS:
        raise ValueError(f"unknown data source {kind!r}")
    if not path or not str(path).strip():
        raise ValueError(f"{SOURCE_LABELS[kind]}: enter a path")
    if kind == "webdataset":   # a pattern such as /data/train-{000000..000009}.tar, checked when loaded
        return DataConfig(format=kind, root=resolve_root(str(path).strip(), os.getcwd()), on_bad=on_bad)
    p = Path(os.path.expanduser(str(path).strip()))
    if kind == "manifest":
        if not p.is_file():
            raise ValueError(f"manifest: no such file {p}")
    elif not p.is_dir():
        raise ValueError(f"{kind}: no such folder {p}")
    return DataConfig(format=kind, root=str(p.resolve()), on_bad=on_bad)


@dataclass
class DataSummary:
    source: str
    format: str
    num_items: int
    classnames: list[str]
    counts: dict[str, int]
    has_distributions: bool
    split_sizes: dict[str, int]
    example_key: str | None = None
    example_label: str | None = None
    example_distribution: dict[str, float] = field(default_factory=dict)
    num_bad: int = 0
    bad: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def example_item(index: DatasetIndex, prefer_mixed: bool = True) -> int:
    """An item whose distribution is the least one-hot (so the example shows a real mixture)."""
    if not len(index):
        raise ValueError("empty dataset")
    if not prefer_mixed or not index.has_distributions:
        return 0
    best, best_h = 0, -1.0
    for i in range(min(len(index), 200)):
        d = np.asarray(index.distribution(i), dtype=np.float64)
        h = float(-(d[d > 0] * np.log(d[d > 0])).sum())
        if h > best_h:
            best, best_h = i, h
    return best


def summarize(data: LoadedData) -> DataSummary:
    index = data.index
    report = index.report
    s = DataSummary(
        source=index.source, format=data.config.format, num_items=len(index), classnames=list(index.classnames),
        counts=index.class_counts(), has_distributions=index.has_distributions,
        split_sizes={k: len(v) for k, v in data.splits.items()},
        num_bad=len(report.bad), bad=[b.describe() for b in report.bad[:20]], warnings=list(report.warnings[:20]),
    )
    if len(index):
        i = example_item(index)
        rec = index.records[i]
        s.example_key = rec.key
        s.example_label = index.classnames[rec.label]
        s.example_distribution = {c: float(v) for c, v in zip(index.classnames, index.distribution(i))}
    return s


def sample_images(data: LoadedData, per_class: int = 1, max_pixels: int | None = 40_000_000
                  ) -> list[tuple[str, Any]]:
    """(class name, PIL image) for the first ``per_class`` items of each class; unreadable ones skipped."""
    out, seen = [], {}
    for i, rec in enumerate(data.index.records):
        if seen.get(rec.label, 0) >= per_class:
            continue
        try:
            img = data.index.load_image(i, max_pixels=max_pixels)
        except Exception:  # noqa: BLE001 - a bad file is skipped here, reported by the scan
            continue
        seen[rec.label] = seen.get(rec.label, 0) + 1
        out.append((data.index.classnames[rec.label], img))
        if len(seen) == data.index.num_classes and all(v >= per_class for v in seen.values()):
            break
    return out


__all__ = ["DataError", "DataSummary", "LoadedData", "SOURCE_LABELS", "load_data", "make_data_config",
           "sample_images", "summarize"]

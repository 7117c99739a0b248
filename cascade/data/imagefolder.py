"""ImageFolder trees: <root>/<class>/**/<image>, label from the class folder."""

from __future__ import annotations

from pathlib import Path

from .config import DataConfig
from .images import is_image_file
from .records import Record, distribution_from_label
from .scan_report import DataError, DataReport
from .scan import Candidate, scan_candidates


def _visible(p: Path) -> bool:
    return not p.name.startswith(".")


def load_imagefolder(cfg: DataConfig, report: DataReport) -> tuple[list[str], list[Record], bool]:
    root = Path(cfg.root or "").expanduser().absolute()
    if not root.is_dir():
        raise DataError(f"imagefolder: {root} is not a folder")
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and _visible(p))

    if cfg.classes is None:
        classnames = folders
    else:
        classnames = list(cfg.classes)
        missing = [c for c in classnames if c not in folders]
        if missing:
            raise DataError(f"imagefolder: class folder(s) {missing} not found under {root} (found {folders})")
        ignored = [f for f in folders if f not in classnames]
        if ignored:
            report.warn(f"imagefolder: folder(s) {ignored} are not in data.classes and were ignored")
    if len(classnames) < 2:
        raise DataError(f"imagefolder: need at least two class folders under {root}, found {folders}")

    candidates: list[Candidate] = []
    skipped_other = 0
    for label, name in enumerate(classnames):
        files = sorted(p for p in (root / name).rglob("*") if p.is_file() and _visible(p))
        images = [p for p in files if is_image_file(p)]
        skipped_other += len(files) - len(images)
        if not images:
            report.warn(f"imagefolder: class '{name}' has no images")
        dist = distribution_from_label(label, len(classnames), cfg.label_smoothing)
        for p in images:
            report.num_entries += 1
            candidates.append(Candidate(Record(key=str(p), label=label, dist=dist.copy())))
    if skipped_other:
        report.warn(f"imagefolder: {skipped_other} file(s) without an image extension were ignored")

    return classnames, scan_candidates(candidates, cfg, report), False

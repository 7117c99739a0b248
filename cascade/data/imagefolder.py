"""ImageFolder trees: <root>/<class>/**/<image>, label from the class folder.

``data.root`` may also map splits to trees, ``{train: ..., val: ..., test: ...}``; then the
train entry may be a folder of images with no class folders at all: unlabelled items, for
label-free training.
"""

from __future__ import annotations

from pathlib import Path

from .config import DataConfig
from .images import is_image_file
from .records import UNLABELLED, Record, distribution_from_label
from .scan_report import DataError, DataReport
from .scan import Candidate, scan_candidates


def _visible(p: Path) -> bool:
    return not p.name.startswith(".")


def _folders(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and _visible(p))


def _root(value: str | None, split: str | None) -> Path:
    root = Path(value or "").expanduser().absolute()
    if not root.is_dir():
        where = f" (data.root.{split})" if split else ""
        raise DataError(f"imagefolder: {root} is not a folder{where}")
    return root


def _images(folder: Path, report: DataReport) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and _visible(p))
    images = [p for p in files if is_image_file(p)]
    if len(files) > len(images):
        report.warn(f"imagefolder: {len(files) - len(images)} file(s) without an image extension under {folder} "
                    "were ignored")
    return images


def load_imagefolder(cfg: DataConfig, report: DataReport) -> tuple[list[str], list[Record], bool]:
    roots = {split: _root(value, split) for split, value in cfg.split_roots().items()}
    per_split = None not in roots
    # The train tree of a per-split mapping may hold images directly, with no class folders.
    unlabelled = {split for split, root in roots.items()
                  if per_split and split == "train" and not _folders(root)}
    labelled = {split: root for split, root in roots.items() if split not in unlabelled}
    if not labelled:
        raise DataError(f"imagefolder: no class folders under {', '.join(str(r) for r in roots.values())}")
    found = sorted({f for root in labelled.values() for f in _folders(root)})
    classnames = found if cfg.classes is None else list(cfg.classes)
    if len(classnames) < 2:
        raise DataError(f"imagefolder: need at least two class folders under "
                        f"{', '.join(str(r) for r in labelled.values())}, found {found}")

    candidates: list[Candidate] = []
    for split, root in roots.items():
        if split in unlabelled:
            images = _images(root, report)
            report.warn(f"imagefolder: {root} has no class folders, so its {len(images)} {split} image(s) are "
                        "unlabelled (for label-free training, train.supervision: pseudo)")
            for p in images:
                report.num_entries += 1
                candidates.append(Candidate(Record(key=str(p), label=UNLABELLED, split=split)))
            continue
        folders = _folders(root)
        if cfg.classes is not None:
            missing = [c for c in classnames if c not in folders]
            if missing and not per_split:
                raise DataError(f"imagefolder: class folder(s) {missing} not found under {root} (found {folders})")
            ignored = [f for f in folders if f not in classnames]
            if ignored:
                report.warn(f"imagefolder: folder(s) {ignored} under {root} are not in data.classes and were ignored")
        for label, name in enumerate(classnames):
            if not (root / name).is_dir():
                continue
            images = _images(root / name, report)
            if not images and not per_split:
                report.warn(f"imagefolder: class '{name}' has no images")
            dist = distribution_from_label(label, len(classnames), cfg.label_smoothing)
            for p in images:
                report.num_entries += 1
                candidates.append(Candidate(Record(key=str(p), label=label, dist=dist.copy(), split=split)))

    return classnames, scan_candidates(candidates, cfg, report), False

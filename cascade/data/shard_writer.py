"""Any scanned dataset as WebDataset tar shards (``cascade shards``), with the same splits,
class names and distributions, and a manifest of what went where.

Per split, shards ``<split>-000000.tar``, ``<split>-000001.tar``, ... hold up to
``shard_size`` samples each, in a seeded random order (so readers that stream shards, as
open_clip does, see mixed classes too). A sample is ``<key>.<ext>`` (the image's own bytes
for jpg/jpeg/png/webp files, a lossless PNG otherwise) plus ``<key>.json`` holding
``label``, ``classes``, ``split``, ``source`` and, for datasets with distributions,
``distribution``. The key is the item's position in the scanned dataset (8 digits).

``manifest.json`` gives the classes, the shards of each split, their sample counts and the
``data`` section that reads them back; ``manifest.csv`` has one row per sample: split,
shard, key, label, source; ``data_report.json`` is the scan of the source (bad items left
out, flagged ones). Each file appears under its final name only once complete.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import webdataset as wds

from ..fileio import atomic_path, write_json
from .config import SPLIT_NAMES
from .records import SYNTHETIC_PREFIX, DatasetIndex
from .scan_report import DataError
from .splits import relative_keys
from .tar_members import IMAGE_EXTS, read_member

MANIFEST_VERSION = 1
DIGITS = 6


def shard_pattern(split: str, count: int) -> str:
    """The brace pattern naming ``count`` shards of ``split``."""
    last = max(count - 1, 0)
    return f"{split}-{{{0:0{DIGITS}d}..{last:0{DIGITS}d}}}.tar" if count > 1 else f"{split}-{0:0{DIGITS}d}.tar"


def _image_bytes(index: DatasetIndex, i: int, max_pixels: int | None) -> tuple[str, bytes]:
    rec = index.records[i]
    if rec.member is not None:
        return rec.member.ext, read_member(rec.member, rec.key)
    if not rec.key.startswith(SYNTHETIC_PREFIX):
        ext = Path(rec.key).suffix.lower().lstrip(".")
        if ext in IMAGE_EXTS:
            return ext, Path(rec.key).read_bytes()
    buf = io.BytesIO()
    index.load_image(i, max_pixels=max_pixels).save(buf, format="PNG")
    return "png", buf.getvalue()


def _check_target(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise DataError(f"shards: --out {out} is a file, not a folder")
    if out.is_dir():
        taken = sorted(p.name for p in out.iterdir() if p.suffix == ".tar" or p.name.startswith("manifest."))
        if taken:
            raise DataError(f"shards: {out} already holds {', '.join(taken[:3])}{' ...' if len(taken) > 3 else ''}; "
                            "choose an empty folder (nothing there is overwritten)")


def write_shards(index: DatasetIndex, splits: dict[str, list[int]], out_dir: str | os.PathLike[str], *,
                 shard_size: int = 10_000, seed: int = 0, max_pixels: int | None = None,
                 log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Write the shards and manifests into ``out_dir``; returns the manifest."""
    if shard_size < 1:
        raise DataError(f"shards: --shard-size must be at least 1, got {shard_size}")
    out = Path(out_dir).expanduser().absolute()
    _check_target(out)
    out.mkdir(parents=True, exist_ok=True)
    root, rel = relative_keys(index.keys)
    classes = list(index.classnames)
    split_info: dict[str, Any] = {}
    with atomic_path(out / "manifest.csv") as csv_tmp, open(csv_tmp, "w", newline="", encoding="utf-8") as fh:
        rows = csv.writer(fh)
        rows.writerow(["split", "shard", "key", "label", "source"])
        for s, split in enumerate(SPLIT_NAMES):
            items = list(splits.get(split, []))
            if not items:
                continue
            order = np.random.default_rng([seed, s]).permutation(items).tolist()
            count = math.ceil(len(order) / shard_size)
            shards = []
            for k in range(count):
                name = f"{split}-{k:0{DIGITS}d}.tar"
                chunk = order[k * shard_size:(k + 1) * shard_size]
                size = _write_one(out / name, chunk, index, split, classes, rel, max_pixels, rows)
                shards.append({"file": name, "num_samples": len(chunk), "bytes": size})
                if log is not None:
                    log(f"shards: {name}: {len(chunk)} samples, {size / 2**20:.1f} MiB")
            split_info[split] = {"pattern": shard_pattern(split, count), "num_samples": len(order), "shards": shards}

    manifest = {
        "version": MANIFEST_VERSION,
        "source": index.source,
        "source_root": root,
        "classnames": classes,
        "has_distributions": index.has_distributions,
        "num_samples": sum(v["num_samples"] for v in split_info.values()),
        "shard_size": shard_size,
        "seed": seed,
        "splits": split_info,
        "data": {"format": "webdataset",
                 "root": {split: str(out / v["pattern"]) for split, v in split_info.items()},
                 "classes": classes},
        "samples": "manifest.csv",
        "data_report": "data_report.json",
    }
    index.report.write(out / "data_report.json")
    write_json(out / "manifest.json", manifest)
    return manifest


def _write_one(path: Path, chunk: list[int], index: DatasetIndex, split: str, classes: list[str],
               rel: list[str], max_pixels: int | None, rows) -> int:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            # mtime fixed: the same dataset gives byte-identical shards.
            writer = wds.TarWriter(fh, encoder=False, mtime=0)
            for i in chunk:
                rec = index.records[i]
                ext, image = _image_bytes(index, i, max_pixels)
                meta: dict[str, Any] = {"label": classes[rec.label], "classes": classes, "split": split,
                                        "source": rel[i]}
                if index.has_distributions:
                    meta["distribution"] = {c: float(p) for c, p in zip(classes, index.distribution(i))}
                key = f"{i:08d}"
                writer.write({"__key__": key, ext: image, "json": json.dumps(meta).encode("utf-8")})
                rows.writerow([split, path.name, key, classes[rec.label], rel[i]])
            writer.close()
            fh.flush()
            os.fsync(fh.fileno())
        size = tmp.stat().st_size
    return size

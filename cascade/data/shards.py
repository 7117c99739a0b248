"""``format: webdataset``: tar shards of image + json samples, read through an index.

``root`` is a brace pattern of ``.tar`` shards (``/data/emoset-{000000..000117}.tar``, or
URLs ``webdataset.gopen`` opens), or a mapping ``{train: PATTERN, val: ..., test: ...}``.
A sample is one image (``jpg``/``jpeg``/``png``/``webp``) and a ``json`` object:

- ``label``: a class name (or an index into the class order);
- ``distribution`` (probabilities) or ``votes`` (counts): ``{class name: value}``, classes
  left out count 0; a list is read in the order of ``classes``;
- ``classes`` (optional): the class order, as ``cascade shards`` writes it;
- ``split`` (optional): train, val or test, when ``root`` is a single pattern;
- ``source`` (optional): where the sample came from (``cascade shards`` writes it).

A ``cls`` member (an integer class index, the common WebDataset convention) may stand in
for the json. Class order: ``data.classes``, else the samples' ``classes``, else the
sorted class names found.

Why an index and not a stream. open_clip streams shards: each rank and DataLoader worker
takes whole shards and reads them front to back. That fits web-scale sets that are seen
less than once; here it would give up what the trainer guarantees for every format: one
seeded shuffle over all samples each epoch, augmentation that is a function of
(seed, epoch, item), resume at any step, DDP runs equal to one process, and every sample
exactly once per epoch across ranks even when shards hold unequal counts (a stream has to
pad, drop or resample to keep ranks in step). Reading through an index keeps all of that
unchanged: the scan reads every shard once, front to back (it must: bad samples are found
before training, as for every format), and records where each image's bytes lie
(:mod:`.tar_members`). Training then reads a sample with one positioned read, through the
same per-rank index lists and DataLoader workers as image folders. The price: shards must
sit on a file system that allows random reads, i.e. the shared storage of a cluster, or a
node-local copy, which shards named by URL get automatically (``data.webdataset.cache_dir``).
Many multi-node users train on shared storage, where a few thousand large files instead
of millions of small ones are what relieves the metadata servers. Under DDP the scan runs
once, on rank 0, and the index travels to the other ranks (:mod:`cascade.train.shared_data`),
which fetch their own copies of URL shards (:func:`localize_members`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from webdataset.shardlists import expand_urls

from .config import DataConfig, is_url
from .images import check_image_bytes, pixel_limit
from .manifest import LabelParser
from .records import DistributionProblem, Record, TarMember, distribution_from_label, normalise_distribution
from .scan_report import DataError, DataReport
from .tables import SPLIT_ALIASES
from .tar_members import IMAGE_EXTS, ShardError, default_cache_dir, iter_samples, local_copy

KEY_SEPARATOR = "#"


def sample_key(shard: str, key: str) -> str:
    """The record key of a shard's sample: ``SHARD#KEY``."""
    return f"{shard}{KEY_SEPARATOR}{key}"


@dataclass
class _Parsed:
    """What one sample says, before the class order is known."""

    key: str
    member: TarMember | None = None
    label: Any = None
    values: Any = None            # dict or list of numbers, or None
    counts: bool = False          # ``votes`` rather than ``distribution``
    split: str | None = None
    classes: tuple[str, ...] | None = None
    problem: str | None = None
    field: str | None = None


@dataclass
class _Shard:
    url: str
    split: str | None
    samples: list[_Parsed] = field(default_factory=list)
    problem: str | None = None
    skipped: list[str] = field(default_factory=list)


def shard_urls(cfg: DataConfig) -> list[tuple[str, str | None]]:
    """``(url or absolute path, split fixed by data.root or None)`` of every shard, in order."""
    out: list[tuple[str, str | None]] = []
    seen: dict[str, str] = {}
    for split, pattern in cfg.split_roots().items():
        where = f"data.root.{split}" if split else "data.root"
        urls = expand_urls(str(pattern))
        if not urls:
            raise DataError(f"webdataset: {where} = {pattern!r} names no shard")
        for url in urls:
            url = url if is_url(url) else os.path.normpath(os.path.abspath(os.path.expanduser(url)))
            if url in seen:
                raise DataError(f"webdataset: shard {url} is listed twice ({seen[url]} and {where})")
            seen[url] = where
            out.append((url, split))
    return out


def localize_members(index, cache_dir: str | None = None) -> None:
    """Point the samples of shards named by URL at this machine's copies, fetching any that are
    missing: an index scanned on another machine (rank 0 of a multi-node run) names that
    machine's cache. Shards named by a local path are shared storage and stay as they are."""
    cache = default_cache_dir(cache_dir)
    local: dict[str, str] = {}
    for rec in index.records:
        m = rec.member
        if m is None or not is_url(m.shard):
            continue
        if m.shard not in local:
            local[m.shard] = local_copy(m.shard, cache)
        if m.path != local[m.shard]:
            rec.member = dataclasses.replace(m, path=local[m.shard])


def load_webdataset(cfg: DataConfig, report: DataReport) -> tuple[list[str], list[Record], bool]:
    shards = [_Shard(url, split) for url, split in shard_urls(cfg)]
    cache = default_cache_dir(cfg.webdataset.cache_dir)
    workers = cfg.scan_workers or min(8, os.cpu_count() or 1)
    start = time.perf_counter()
    with pixel_limit(cfg.max_image_pixels):
        if workers == 1 or len(shards) == 1:
            for shard in shards:
                _read_shard(shard, cache, cfg.max_image_pixels)
        else:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="shard-scan") as pool:
                list(pool.map(lambda s: _read_shard(s, cache, cfg.max_image_pixels), shards))
    report.scan_seconds = round(time.perf_counter() - start, 3)
    report.row_file = None

    for shard in shards:
        if shard.problem is not None:
            report.add_bad(shard.url, shard.problem)
        if shard.skipped:
            report.warn(f"{shard.url}: {len(shard.skipped)} member(s) without a sample key and extension were "
                        f"ignored (first: {shard.skipped[0]})")
        report.num_entries += len(shard.samples)
        report.num_scanned += sum(1 for s in shard.samples if s.member is not None)

    classnames = _classnames(cfg, shards, report)
    records, with_dist = _records(cfg, shards, classnames, report)
    if 0 < with_dist < len(records):
        report.warn(f"{len(records) - with_dist} of {len(records)} samples carry no distribution or votes: "
                    "distribution metrics are not computed (n/a); those samples train on their label")
    return classnames, records, bool(records) and with_dist == len(records)


def _read_shard(shard: _Shard, cache, max_pixels: int | None) -> None:
    try:
        path = local_copy(shard.url, cache)
        if not os.path.isfile(path):
            raise ShardError("missing shard file")
        for sample in iter_samples(path, shard.skipped, shard.url):
            shard.samples.append(_parse(sample, max_pixels))
    except ShardError as exc:
        shard.problem = str(exc)
    except OSError as exc:
        shard.problem = f"cannot read shard: {exc}"


def _parse(sample, max_pixels: int | None) -> _Parsed:
    out = _Parsed(sample.key)
    parts = sample.parts
    if sample.repeated:
        out.problem = f"member(s) stored twice under this key: {sorted(set(sample.repeated))}"
        return out
    images = [ext for ext in IMAGE_EXTS if ext in parts]
    if not images:
        out.problem = f"no image ({'/'.join(IMAGE_EXTS)}); members: {sorted(parts)}"
        return out
    if len(images) > 1:
        out.problem = f"several images ({', '.join(images)}): which one is the sample is ambiguous"
        return out
    member, data = parts[images[0]]
    out.member = member
    if "json" in parts:
        _parse_json(out, parts["json"][1])
    elif "cls" in parts:
        text = parts["cls"][1].decode("utf-8", "replace").strip()
        try:
            out.label = int(text)
        except ValueError:
            out.problem, out.field = f"cls is not a class index: {text!r}", "cls"
    else:
        out.problem = "no json (or cls) with the label"
    if out.problem is None:
        bad_image = check_image_bytes(data, max_pixels)
        if bad_image is not None:
            out.problem, out.field = bad_image, images[0]
    return out


def _parse_json(out: _Parsed, raw: bytes) -> None:
    try:
        meta = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        out.problem, out.field = f"json does not parse: {exc}", "json"
        return
    if not isinstance(meta, dict):
        out.problem, out.field = f"json is a {type(meta).__name__}, not an object", "json"
        return
    if "distribution" in meta and "votes" in meta:
        out.problem, out.field = "json has both distribution and votes; keep one", "json"
        return
    out.label = meta.get("label")
    name = "votes" if "votes" in meta else "distribution"
    out.values, out.counts = meta.get(name), name == "votes"
    if "classes" in meta:
        classes = meta["classes"]
        if not isinstance(classes, list) or not all(isinstance(c, str) and c for c in classes):
            out.problem, out.field = "classes must be a list of class names", "json.classes"
            return
        out.classes = tuple(classes)
    split = meta.get("split")
    if split is not None:
        out.split = SPLIT_ALIASES.get(str(split).lower())
        if out.split is None:
            out.problem, out.field = f"unknown split {split!r} (use train, val or test)", "json.split"


def _classnames(cfg: DataConfig, shards: list[_Shard], report: DataReport) -> list[str]:
    if cfg.classes is not None:
        return list(cfg.classes)
    usable = [s for shard in shards for s in shard.samples if s.problem is None]
    if not usable:
        return []   # nothing to name: the bad items say why
    orders = Counter(s.classes for s in usable if s.classes is not None)
    if orders:
        order, n = orders.most_common(1)[0]
        if len(orders) > 1:
            report.warn(f"webdataset: samples give {len(orders)} different class orders; using the most common "
                        f"({n} samples): {list(order)}; set data.classes to choose")
        return list(order)
    names: set[str] = set()
    for s in usable:
        if isinstance(s.label, str):
            names.add(s.label)
        if isinstance(s.values, dict):
            names.update(str(k) for k in s.values)
    if any(isinstance(s.label, int) and not isinstance(s.label, bool) for s in usable) or \
            any(isinstance(s.values, list) for s in usable):
        raise DataError("webdataset: samples give labels or distributions by position but name no classes; "
                        "set data.classes to the class names in index order")
    if len(names) < 2:
        raise DataError(f"webdataset: need at least two class names in the samples, found {sorted(names)}")
    return sorted(names)


def _records(cfg: DataConfig, shards: list[_Shard], classnames: list[str],
             report: DataReport) -> tuple[list[Record], int]:
    parse_label = LabelParser(classnames)
    records: list[Record] = []
    with_dist = 0
    for shard in shards:
        seen: set[str] = set()
        for s in shard.samples:
            key = sample_key(shard.url, s.key)
            if s.key in seen:
                report.add_bad(key, "duplicate sample key in this shard")
                continue
            seen.add(s.key)
            if s.problem is not None:
                report.add_bad(key, s.problem, field=s.field)
                continue
            try:
                label, dist, note = _targets(s, classnames, parse_label, cfg)
            except DistributionProblem as exc:
                report.add_bad(key, str(exc), field=exc.field)
                continue
            if note:
                report.warn(f"{key}: {note}")
            split = s.split
            if shard.split is not None:
                if split is not None and split != shard.split:
                    report.add_bad(key, f"split field says {split!r} but the shard is listed under "
                                        f"data.root.{shard.split}", field="json.split")
                    continue
                split = shard.split
            with_dist += dist is not None
            if dist is None:
                dist = distribution_from_label(label, len(classnames), cfg.label_smoothing)
            records.append(Record(key=key, label=label, dist=dist, split=split, member=s.member))
    return records, with_dist


def _targets(s: _Parsed, classnames: list[str], parse_label: LabelParser, cfg: DataConfig) -> tuple[int, np.ndarray | None, str | None]:
    where = "json.votes" if s.counts else "json.distribution"
    dist: np.ndarray | None = None
    note: str | None = None
    if s.values is not None:
        values = np.zeros(len(classnames), dtype=np.float64)
        if isinstance(s.values, dict):
            items = list(s.values.items())
        elif isinstance(s.values, list):
            order = list(s.classes) if s.classes is not None else classnames
            if len(s.values) != len(order):
                raise DistributionProblem(f"{len(s.values)} values for {len(order)} classes", where)
            items = list(zip(order, s.values))
        else:
            raise DistributionProblem(f"must be an object {{class: value}} or a list, got {type(s.values).__name__}", where)
        for name, value in items:
            i = parse_label.by_name(str(name))
            if i is None:
                raise DistributionProblem(f"class {name!r} is not one of {classnames}", where)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise DistributionProblem(f"value for {name!r} is not a number: {value!r}", where)
            values[i] = value
        try:
            dist, note = normalise_distribution(values, counts=s.counts, tolerance=cfg.dist_tolerance,
                                             suggest_counts=False)
        except DistributionProblem as exc:
            raise DistributionProblem(str(exc), where) from None
    if s.label is not None and s.label != "":
        label = parse_label(s.label) if not isinstance(s.label, bool) else None
        if label is None:
            raise DistributionProblem(f"unknown label {s.label!r} (classes: {classnames})", "json.label")
    elif dist is not None:
        # np.argmax takes the lowest class index on ties, the same rule the metrics use.
        label = int(np.argmax(dist))
    else:
        raise DistributionProblem("no label, distribution or votes", "json")
    return label, dist, note

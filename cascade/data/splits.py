"""Train/val/test splits: seeded and stratified, from a split column, or from a saved file."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .config import SPLIT_NAMES, DataConfig
from .records import DatasetIndex
from .scan_report import DataError, atomic_write_text
SPLITS_FORMAT_VERSION = 1


def make_splits(
    index: DatasetIndex, ratios: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 0
) -> dict[str, list[int]]:
    """Stratified split: every class is divided in the given ratios (to within one item).

    Each class's items are shuffled and laid on [0, 1) at spacing 1/n with a random offset;
    the ratio boundaries then cut them. The random offset spreads rounding across classes,
    so the split totals stay close to the ratios. A class with at least as many items as
    there are non-empty splits gets at least one item in each of them.
    """
    if len(ratios) != 3:
        raise ValueError(f"ratios must be (train, val, test), got {ratios}")
    r = np.asarray(ratios, dtype=np.float64)
    if np.any(r < 0) or abs(r.sum() - 1.0) > 1e-6 or r[0] <= 0:
        raise ValueError(f"ratios must be non-negative, sum to 1 and give train a share, got {tuple(ratios)}")
    bounds = np.cumsum(r)[:-1]
    active = [k for k in range(3) if r[k] > 0]

    rng = np.random.default_rng(seed)
    labels = index.labels
    out: list[list[int]] = [[], [], []]
    for c in range(index.num_classes):
        members = np.flatnonzero(labels == c)
        if members.size == 0:
            continue
        members = rng.permutation(members)
        n = members.size
        positions = (np.arange(n) + rng.random()) / n
        which = np.searchsorted(bounds, positions, side="right")
        if n >= len(active):
            for k in active:
                if not np.any(which == k):
                    counts = np.bincount(which, minlength=3)
                    donor = int(np.argmax(counts))
                    which[np.flatnonzero(which == donor)[-1]] = k
        for k in range(3):
            out[k].extend(int(i) for i in members[which == k])
    return {name: sorted(part) for name, part in zip(SPLIT_NAMES, out)}


def splits_from_records(index: DatasetIndex) -> dict[str, list[int]]:
    """Use the split each record was given (a manifest split column)."""
    missing = [i for i, rec in enumerate(index.records) if rec.split is None]
    if missing:
        raise DataError(f"{len(missing)} record(s) have no split assigned (first: {index.records[missing[0]].key})")
    out: dict[str, list[int]] = {name: [] for name in SPLIT_NAMES}
    for i, rec in enumerate(index.records):
        if rec.split not in out:
            raise DataError(f"{rec.key}: unknown split {rec.split!r}")
        out[rec.split].append(i)
    if not out["train"]:
        raise DataError("the split column assigns no item to train")
    return out


def relative_keys(keys: list[str]) -> tuple[str | None, list[str]]:
    if not keys or not all(os.path.isabs(k) for k in keys):
        return None, list(keys)
    root = os.path.commonpath([os.path.dirname(k) for k in keys])
    return root, [os.path.relpath(k, root) for k in keys]


def split_keys(splits: dict[str, list[int]], index: DatasetIndex) -> tuple[str, dict[str, list[str]]]:
    """The items of every split by key, relative to the keys' common root: ``(root, {split: keys})``,
    as a split file stores them."""
    root, rel = relative_keys(index.keys)
    return root, {name: [rel[i] for i in splits.get(name, [])] for name in SPLIT_NAMES}


def save_splits(path: str | os.PathLike[str], splits: dict[str, list[int]], index: DatasetIndex) -> Path:
    """Write the splits as JSON naming every item by key, so they survive re-ordering of the data."""
    root, keys = split_keys(splits, index)
    payload = {
        "version": SPLITS_FORMAT_VERSION,
        "source": index.source,
        "classnames": index.classnames,
        "num_records": len(index),
        "root": root,
        "splits": {
            name: {"indices": [int(i) for i in splits.get(name, [])], "keys": keys[name]} for name in SPLIT_NAMES
        },
    }
    return atomic_write_text(path, json.dumps(payload, indent=1) + "\n")


def load_splits(path: str | os.PathLike[str], index: DatasetIndex) -> dict[str, list[int]]:
    """Map a saved split file onto `index` by key; any key that no longer exists is an error."""
    p = Path(path)
    try:
        payload = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"splits file {p} not found") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"splits file {p} is not valid JSON: {exc}") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("splits"), dict):
        raise DataError(f"splits file {p} has no 'splits' object")
    unknown = sorted(set(payload["splits"]) - set(SPLIT_NAMES))
    if unknown:
        raise DataError(f"splits file {p}: unknown split name(s) {unknown}; expected {list(SPLIT_NAMES)}")
    saved_classes = payload.get("classnames")
    if saved_classes is not None and saved_classes != index.classnames:
        raise DataError(f"splits file {p} was made for classes {saved_classes}, the dataset has {index.classnames}")

    keys = index.keys
    by_abs = {k: i for i, k in enumerate(keys)}
    _, rel = relative_keys(keys)
    by_rel = {k: i for i, k in enumerate(rel)}
    saved_root = payload.get("root")

    out: dict[str, list[int]] = {}
    seen: dict[int, str] = {}
    missing: list[str] = []
    for name in SPLIT_NAMES:
        entry = payload["splits"].get(name, {"keys": []})
        saved_keys = entry.get("keys") if isinstance(entry, dict) else None
        if not isinstance(saved_keys, list):
            raise DataError(f"splits file {p}: split '{name}' has no 'keys' list")
        part: list[int] = []
        for k in saved_keys:
            i = by_abs.get(os.path.join(saved_root, k)) if saved_root else by_abs.get(k)
            if i is None:
                # The dataset may have moved; keys relative to its root still identify items.
                i = by_rel.get(k)
            if i is None:
                missing.append(k)
                continue
            if i in seen:
                raise DataError(f"splits file {p}: {k} is in both '{seen[i]}' and '{name}'")
            seen[i] = name
            part.append(i)
        out[name] = sorted(part)
    if missing:
        raise DataError(
            f"splits file {p} does not match the dataset: {len(missing)} saved key(s) are not in it "
            f"(first: {missing[:3]}). The data changed since the split was saved; make a new split."
        )
    return out


def resolve_splits(cfg: DataConfig, index: DatasetIndex) -> dict[str, list[int]]:
    """The split a run should use: a given file, else the manifest's split column, else a fresh seeded one."""
    if cfg.splits_file:
        return load_splits(cfg.splits_file, index)
    if index.records and any(rec.split is not None for rec in index.records):
        return splits_from_records(index)
    return make_splits(index, cfg.splits.as_tuple(), cfg.split_seed)

from __future__ import annotations

import json
import shutil
from collections import Counter

import numpy as np
import pytest

from cascade.data import (
    DataConfig,
    DataError,
    DataReport,
    DatasetIndex,
    Record,
    load_index,
    load_splits,
    make_splits,
    resolve_splits,
    save_splits,
)


def _fake_index(counts: list[int], prefix: str = "/data/img") -> DatasetIndex:
    records = []
    for c, n in enumerate(counts):
        records += [Record(key=f"{prefix}/{c}/{i}.jpg", label=c, dist=None) for i in range(n)]
    names = [f"c{c}" for c in range(len(counts))]
    return DatasetIndex(names, records, DataReport(source=prefix, format="test"), False, prefix)


def _per_class(index: DatasetIndex, idx: list[int]) -> Counter:
    return Counter(int(index.records[i].label) for i in idx)


def test_stratified_partition():
    index = _fake_index([100, 40, 7, 3])
    splits = make_splits(index, (0.7, 0.15, 0.15), seed=0)
    all_idx = splits["train"] + splits["val"] + splits["test"]
    assert sorted(all_idx) == list(range(len(index)))
    for name, ratio in zip(["train", "val", "test"], [0.7, 0.15, 0.15]):
        per = _per_class(index, splits[name])
        for c, n in enumerate([100, 40, 7, 3]):
            assert per[c] >= 1, (name, c)
            if n >= 40:
                assert abs(per[c] - ratio * n) < 1.0 + 1e-9
    assert _per_class(index, splits["train"])[0] == 70


def test_seeded_and_reproducible():
    index = _fake_index([50, 50, 50])
    assert make_splits(index, seed=1) == make_splits(index, seed=1)
    assert make_splits(index, seed=1) != make_splits(index, seed=2)


def test_empty_test_split_and_bad_ratios():
    index = _fake_index([10, 10])
    splits = make_splits(index, (0.8, 0.2, 0.0))
    assert splits["test"] == [] and len(splits["train"]) == 16
    with pytest.raises(ValueError):
        make_splits(index, (0.5, 0.2, 0.2))


def test_save_and_load_roundtrip(tmp_path):
    index = _fake_index([20, 20, 20])
    splits = make_splits(index, seed=0)
    path = save_splits(tmp_path / "splits.json", splits, index)
    assert not list(tmp_path.glob(".*.tmp"))
    blob = json.loads(path.read_text())
    assert blob["splits"]["val"]["indices"] == splits["val"]
    assert load_splits(path, index) == splits

    shuffled = _fake_index([20, 20, 20])
    order = np.random.default_rng(0).permutation(len(shuffled))
    shuffled.records = [shuffled.records[i] for i in order]
    reloaded = load_splits(path, shuffled)
    assert {shuffled.records[i].key for i in reloaded["test"]} == {index.records[i].key for i in splits["test"]}

    moved = _fake_index([20, 20, 20], prefix="/elsewhere/copy")
    assert load_splits(path, moved) == splits


def test_load_rejects_mismatched_data(tmp_path):
    index = _fake_index([20, 20, 20])
    path = save_splits(tmp_path / "s.json", make_splits(index), index)
    smaller = _fake_index([20, 20, 20])
    smaller.records = smaller.records[:-5]
    with pytest.raises(DataError, match="does not match the dataset: 5 saved key"):
        load_splits(path, smaller)

    blob = json.loads(path.read_text())
    blob["splits"]["val"]["keys"].append(blob["splits"]["train"]["keys"][0])
    path.write_text(json.dumps(blob))
    with pytest.raises(DataError, match="in both 'train' and 'val'"):
        load_splits(path, index)
    with pytest.raises(DataError, match="not found"):
        load_splits(tmp_path / "nope.json", index)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DataError, match="not valid JSON"):
        load_splits(tmp_path / "bad.json", index)

    other = _fake_index([20, 20, 20])
    other.classnames = ["x", "y", "z"]
    with pytest.raises(DataError, match="made for classes"):
        load_splits(save_splits(tmp_path / "t.json", make_splits(index), index), other)


def test_resolve_prefers_given_file(tmp_path, save_image):
    for c in ["a", "b"]:
        for i in range(6):
            save_image(tmp_path / "data" / c / f"{i}.png")
    cfg = DataConfig(format="imagefolder", root=str(tmp_path / "data"), split_seed=5)
    index = load_index(cfg)
    fresh = resolve_splits(cfg, index)
    assert fresh == make_splits(index, (0.7, 0.15, 0.15), seed=5)
    custom = {"train": list(range(8)), "val": [8, 9], "test": [10, 11]}
    save_splits(tmp_path / "given.json", custom, index)
    shutil.copytree(tmp_path / "data", tmp_path / "moved")
    moved_cfg = cfg.model_copy(update={"root": str(tmp_path / "moved"), "splits_file": str(tmp_path / "given.json")})
    assert resolve_splits(moved_cfg, load_index(moved_cfg)) == custom

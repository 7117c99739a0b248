from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from cascade.data import DataConfig, DataError, load_index, resolve_splits

CLASSES = ["anger", "joy", "sadness"]
COLORS = {"anger": (220, 30, 30), "joy": (240, 220, 40), "sadness": (30, 60, 200)}


def _images(tmp_path: Path, save_image, n: int = 3) -> list[str]:
    rels = []
    for c in CLASSES:
        for i in range(n):
            rel = f"imgs/{c}/{i}.png"
            save_image(tmp_path / rel, COLORS[c])
            rels.append(rel)
    return rels


def test_vote_counts_in_shuffled_column_order(tmp_path, save_image, write_table):
    rels = _images(tmp_path, save_image, n=1)
    votes = {"anger": [6, 1, 0], "joy": [2, 8, 1], "sadness": [2, 1, 9]}
    header = ["sadness", "path", "joy", "anger"]
    rows = [[votes["sadness"][k], rel, votes["joy"][k], votes["anger"][k]] for k, rel in enumerate(rels)]
    manifest = write_table(tmp_path / "m.csv", header, rows)

    idx = load_index(
        {"format": "manifest", "root": str(manifest), "classes": CLASSES,
         "manifest": {"label_column": None, "counts": True}}
    )
    assert idx.classnames == CLASSES
    assert idx.has_distributions
    for k, rec in enumerate(idx.records):
        raw = np.array([votes[c][k] for c in CLASSES], dtype=float)
        np.testing.assert_allclose(rec.dist, raw / raw.sum())
        assert rec.label == k
        assert rec.key == str(tmp_path / rels[k])


def test_class_order_from_distribution_columns_without_classes(tmp_path, save_image, write_table):
    rels = _images(tmp_path, save_image, n=1)
    manifest = write_table(
        tmp_path / "m.csv",
        ["path", "sadness", "anger", "joy"],
        [[rels[0], 0.1, 0.8, 0.1], [rels[1], 0.2, 0.1, 0.7], [rels[2], 0.6, 0.2, 0.2]],
    )
    idx = load_index({"format": "manifest", "root": str(manifest),
                      "manifest": {"distribution_columns": ["joy", "anger", "sadness"]}})
    assert idx.classnames == ["joy", "anger", "sadness"]
    np.testing.assert_allclose(idx.records[0].dist, [0.1, 0.8, 0.1])
    assert [r.label for r in idx.records] == [1, 0, 2]


def test_label_by_name_and_by_index(tmp_path, save_image, write_table):
    rels = _images(tmp_path, save_image, n=2)
    labels = [rel.split("/")[1] for rel in rels]
    by_name = write_table(tmp_path / "named.csv", ["file", "emotion"], list(zip(rels, labels)))
    idx = load_index({"format": "manifest", "root": str(by_name),
                      "manifest": {"path_column": "file", "label_column": "emotion"}})
    assert idx.classnames == sorted(CLASSES)
    assert [idx.classnames[r.label] for r in idx.records] == labels
    assert not idx.has_distributions
    np.testing.assert_allclose(idx.records[0].dist, np.eye(3)[idx.records[0].label])

    by_index = write_table(
        tmp_path / "indexed.tsv",
        ["x", "path", "y"],
        [["?", rel, CLASSES.index(lab)] for rel, lab in zip(rels, labels)],
        delimiter="\t",
    )
    idx2 = load_index({"format": "manifest", "root": str(by_index), "classes": CLASSES,
                       "label_smoothing": 0.3, "manifest": {"label_column": 2}})
    assert [CLASSES[r.label] for r in idx2.records] == labels
    np.testing.assert_allclose(idx2.records[0].dist.sum(), 1.0)
    assert idx2.records[0].dist.max() == pytest.approx(0.7 + 0.1)


def test_integer_labels_need_class_names(tmp_path, save_image, write_table):
    rels = _images(tmp_path, save_image, n=1)
    manifest = write_table(tmp_path / "m.csv", ["path", "label"], [[r, i] for i, r in enumerate(rels)])
    with pytest.raises(DataError, match="data.classes"):
        load_index({"format": "manifest", "root": str(manifest)})


def test_relative_paths_resolve_against_manifest_folder(tmp_path, save_image, write_table, monkeypatch):
    rels = _images(tmp_path, save_image, n=1)
    sub = tmp_path / "lists"
    manifest = write_table(sub / "m.csv", ["path", "label"], [[f"../{r}", r.split("/")[1]] for r in rels])
    monkeypatch.chdir(tmp_path / "imgs")
    idx = load_index({"format": "manifest", "root": str(manifest)})
    assert [r.key for r in idx.records] == [str(tmp_path / r) for r in rels]


def test_distribution_columns_detected_from_classes_and_label_kept(tmp_path, save_image, write_table):
    rels = _images(tmp_path, save_image, n=1)
    manifest = write_table(
        tmp_path / "m.csv",
        ["path", "label", "joy", "sadness", "anger"],
        [[rels[0], "joy", 0.3, 0.3, 0.4], [rels[1], "joy", 0.5, 0.2, 0.3], [rels[2], "sadness", 0.1, 0.8, 0.1]],
    )
    idx = load_index({"format": "manifest", "root": str(manifest), "classes": CLASSES})
    assert idx.has_distributions
    np.testing.assert_allclose(idx.records[0].dist, [0.4, 0.3, 0.3])
    assert [r.label for r in idx.records] == [1, 1, 2]


def test_argmax_tie_takes_lowest_class_index(tmp_path, save_image, write_table):
    rels = _images(tmp_path, save_image, n=1)
    manifest = write_table(tmp_path / "m.csv", ["path", "anger", "joy", "sadness"], [[rels[0], 0.0, 0.5, 0.5]])
    idx = load_index({"format": "manifest", "root": str(manifest), "classes": CLASSES})
    assert idx.records[0].label == 1


def test_split_column(tmp_path, save_image, write_table):
    rels = _images(tmp_path, save_image, n=3)
    tags = ["train", "Validation", "test"] * 3
    manifest = write_table(tmp_path / "m.csv", ["path", "label", "split"],
                           [[r, r.split("/")[1], t] for r, t in zip(rels, tags)])
    cfg = DataConfig(format="manifest", root=str(manifest), manifest={"split_column": "split"})
    idx = load_index(cfg)
    splits = resolve_splits(cfg, idx)
    assert {k: len(v) for k, v in splits.items()} == {"train": 3, "val": 3, "test": 3}
    assert all(idx.records[i].split == "val" for i in splits["val"])


def test_missing_columns_are_named(tmp_path, save_image, write_table):
    rels = _images(tmp_path, save_image, n=1)
    manifest = write_table(tmp_path / "m.csv", ["file", "label"], [[r, "joy"] for r in rels])
    with pytest.raises(DataError, match=r"m\.csv.*path column 'path' not found"):
        load_index({"format": "manifest", "root": str(manifest)})
    with pytest.raises(DataError, match="label column 'emo' not found"):
        load_index({"format": "manifest", "root": str(manifest),
                    "manifest": {"path_column": "file", "label_column": "emo"}})
    with pytest.raises(DataError, match="out of range"):
        load_index({"format": "manifest", "root": str(manifest),
                    "manifest": {"path_column": "file", "label_column": 5}})
    with pytest.raises(DataError, match="must name exactly the classes"):
        load_index({"format": "manifest", "root": str(manifest), "classes": CLASSES,
                    "manifest": {"path_column": "file", "distribution_columns": ["label"]}})


def test_config_rejects_unknown_keys_by_name():
    with pytest.raises(ValidationError, match="pth_column"):
        DataConfig(format="manifest", root="x.csv", manifest={"pth_column": "p"})
    with pytest.raises(ValidationError, match="on_bda"):
        DataConfig.model_validate({"on_bda": "skip"})
    with pytest.raises(ValidationError, match="root is required"):
        DataConfig(format="imagefolder")
    with pytest.raises(ValidationError, match="sum to 1"):
        DataConfig(splits={"train": 0.5, "val": 0.1, "test": 0.1})


def test_imagefolder_order_and_ignored_files(tmp_path, save_image):
    for c in ["b", "a", "c"]:
        save_image(tmp_path / c / "x.jpg")
        save_image(tmp_path / c / "nested" / "y.PNG")
    (tmp_path / "a" / "notes.txt").write_text("hello")
    (tmp_path / ".hidden").mkdir()
    idx = load_index({"format": "imagefolder", "root": str(tmp_path)})
    assert idx.classnames == ["a", "b", "c"]
    assert len(idx) == 6
    assert any("without an image extension" in w for w in idx.report.warnings)
    idx2 = load_index({"format": "imagefolder", "root": str(tmp_path), "classes": ["c", "a"]})
    assert idx2.classnames == ["c", "a"]
    assert idx2.report.counts_per_class == {"c": 2, "a": 2}
    assert any("'b'" in w for w in idx2.report.warnings)

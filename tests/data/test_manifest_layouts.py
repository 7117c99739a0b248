"""Manifests without a header line (manifest.columns) and one manifest per split (data.root mapping)."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from cascade.config import ConfigError
from cascade.data import DataConfig, DataError, load_index, resolve_splits
from cascade.run_config import load_run_config

CLASSES = ["anger", "joy", "sadness"]
COLORS = {"anger": (220, 30, 30), "joy": (240, 220, 40), "sadness": (30, 60, 200)}


def _rows_file(path: Path, rows, delimiter=",") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        csv.writer(fh, delimiter=delimiter).writerows(rows)
    return path


def test_headerless_columns_named_and_ignored(tmp_path, save_image):
    rows = []
    for k, c in enumerate(CLASSES):
        save_image(tmp_path / "img" / f"{c}.png", COLORS[c])
        votes = [1, 1, 1]
        votes[k] = 7
        # id, path, a free-text note, three vote counts (the file's own class order), a quality score
        rows.append([f"id{k}", f"img/{c}.png", "note, with comma", *votes, 0.5])
    manifest = _rows_file(tmp_path / "votes.csv", rows)
    cfg = DataConfig(format="manifest", root=str(manifest), manifest={
        "columns": ["id", "path", None, "anger", "joy", "sadness", "quality"],
        "label_column": None, "counts": True, "distribution_columns": ["joy", "anger", "sadness"]})
    idx = load_index(cfg)
    assert idx.classnames == ["joy", "anger", "sadness"]
    assert [r.key for r in idx.records] == [str(tmp_path / "img" / f"{c}.png") for c in CLASSES]
    np.testing.assert_allclose(idx.records[0].dist, np.array([1, 7, 1]) / 9)   # joy, anger, sadness
    assert [r.label for r in idx.records] == [1, 0, 2]
    assert idx.report.row_convention.startswith("row N is line N")


def test_headerless_bad_rows_are_file_lines(tmp_path, save_image):
    save_image(tmp_path / "a.png", COLORS["joy"])
    manifest = _rows_file(tmp_path / "m.tsv", [["a.png", "joy"], ["b.png", "joy"], ["a.png"]], delimiter="\t")
    cfg = {"format": "manifest", "root": str(manifest), "classes": CLASSES,
           "manifest": {"columns": ["path", "label"]}}
    with pytest.raises(DataError) as err:
        load_index(cfg)
    msg = str(err.value)
    assert "row 2" in msg and "missing file" in msg and "row 3" in msg and "line N of the file" in msg


def test_headerless_file_that_has_a_header_is_refused(tmp_path, save_image):
    save_image(tmp_path / "a.png", COLORS["joy"])
    manifest = _rows_file(tmp_path / "m.csv", [["path", "label"], ["a.png", "joy"]])
    with pytest.raises(DataError, match="line 1 is a header line"):
        load_index({"format": "manifest", "root": str(manifest), "manifest": {"columns": ["path", "label"]}})
    with pytest.raises(ValidationError, match="duplicate column name"):
        DataConfig(format="manifest", root=str(manifest), manifest={"columns": ["path", "path"]})
    with pytest.raises(ValidationError, match="name at least one column"):
        DataConfig(format="manifest", root=str(manifest), manifest={"columns": [None, None]})


def _split_files(tmp_path, save_image, header=True):
    files = {}
    for split, n in (("train", 2), ("val", 1), ("test", 1)):
        rows = []
        for c in CLASSES:
            for i in range(n):
                save_image(tmp_path / split / "img" / f"{c}{i}.png", COLORS[c])
                rows.append([f"img/{c}{i}.png", c])
        # a label only train has would make the class list depend on the file; all share the three
        files[split] = _rows_file(tmp_path / split / "list.csv", ([["path", "label"]] if header else []) + rows)
    return files


def test_one_manifest_per_split(tmp_path, save_image):
    files = _split_files(tmp_path, save_image)
    cfg = DataConfig(format="manifest", root={k: str(v) for k, v in files.items()})
    idx = load_index(cfg)
    assert idx.classnames == CLASSES
    splits = resolve_splits(cfg, idx)
    assert {k: len(v) for k, v in splits.items()} == {"train": 6, "val": 3, "test": 3}
    for split, items in splits.items():
        # image paths resolve against the folder of the file that lists them
        assert all(idx.records[i].key.startswith(str(tmp_path / split / "img")) for i in items)
    assert idx.report.row_file is None


def test_per_split_bad_rows_name_their_file(tmp_path, save_image):
    files = _split_files(tmp_path, save_image, header=False)
    with files["val"].open("a") as fh:
        fh.write("img/nothere.png,joy\nimg/anger0.png,rage\n")
    cfg = {"format": "manifest", "root": {k: str(v) for k, v in files.items()}, "on_bad": "skip",
           "classes": CLASSES, "manifest": {"columns": ["path", "label"]}}
    idx = load_index(cfg)
    described = [b.describe() for b in idx.report.bad]
    assert described == [
        f"{tmp_path / 'val' / 'img' / 'nothere.png'}, row 4 of {files['val']}: missing file",
        f"{tmp_path / 'val' / 'img' / 'anger0.png'}, row 5 of {files['val']}, field 'label': unknown label 'rage' "
        f"(classes: {CLASSES})",
    ]
    assert len(idx) == 12


def test_per_split_mapping_is_validated(tmp_path, save_image):
    files = _split_files(tmp_path, save_image)
    with pytest.raises(ValidationError, match="needs a train entry"):
        DataConfig(format="manifest", root={"val": str(files["val"])})
    with pytest.raises(ValidationError, match="unknown split name"):
        DataConfig(format="manifest", root={"train": str(files["train"]), "valid": str(files["val"])})
    with pytest.raises(ValidationError, match="not 'emotion6'"):
        DataConfig(format="emotion6", root={"train": str(tmp_path)})
    with pytest.raises(ValidationError, match="drop manifest.split_column"):
        DataConfig(format="manifest", root={"train": str(files["train"])}, manifest={"split_column": "split"})
    idx = load_index({"format": "manifest", "root": {"train": str(files["train"]), "test": str(files["test"])}})
    assert any("no val file" in w for w in idx.report.warnings)


def test_run_config_resolves_each_split_file(tmp_path, save_image):
    files = _split_files(tmp_path, save_image)
    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text("data:\n  format: manifest\n  root: {train: train/list.csv, val: val/list.csv}\n")
    cfg = load_run_config(cfg_file)
    assert cfg.data.root == {"train": str(files["train"]), "val": str(files["val"])}
    over = load_run_config(cfg_file, ["data.root.test=test/list.csv"])
    assert over.data.root["test"] == str(Path.cwd() / "test" / "list.csv")
    with pytest.raises(ConfigError, match="data.root"):
        load_run_config(cfg_file, ["data.root={val: val/list.csv}"])

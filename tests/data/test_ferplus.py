"""format: ferplus — FER+'s three split folders with headerless label.csv files, as shipped."""
from __future__ import annotations

import json

import numpy as np
import pytest
from support.ferplus import CLEAR, FOLDERS, TIE_WITH_UNKNOWN, standard_rows, write_ferplus

from cascade.data import DataError, load_index, resolve_splits
from cascade.data.config import FERPLUS_CLASSES, DataConfig


def _cfg(root, **extra) -> DataConfig:
    return DataConfig(format="ferplus", root=str(root), **extra)


def test_official_splits_votes_and_unknown_majority_dropped(tmp_path):
    rows = standard_rows()
    write_ferplus(tmp_path, rows)
    cfg = _cfg(tmp_path)
    idx = load_index(cfg)
    assert idx.classnames == list(FERPLUS_CLASSES) and idx.has_distributions
    # 8 clear faces + the tie per split; unknown- and NF-majority faces are set apart
    assert len(idx) == 3 * 9 and not idx.report.bad
    splits = resolve_splits(cfg, idx)
    assert {k: len(v) for k, v in splits.items()} == {"train": 9, "val": 9, "test": 9}
    for split, folder in FOLDERS.items():
        assert all(f"/{folder}/" in idx.records[i].key for i in splits[split])

    by_name = {r.key.rsplit("/", 1)[1]: r for r in idx.records}
    for name, votes in rows["val"]:
        if name not in by_name:
            continue
        rec = by_name[name]
        emotions = np.array(votes[:8], dtype=float)
        np.testing.assert_allclose(rec.dist, emotions / emotions.sum())
        assert rec.label == int(np.argmax(emotions))
    tie = by_name[rows["train"][10][0]]
    assert rows["train"][10][1] == TIE_WITH_UNKNOWN and tie.label == 0 and tie.dist[0] == 1.0

    flagged = idx.report.flagged
    assert len(flagged) == 6
    unknown = [f for f in flagged if "majority vote is unknown" in f.reason]
    nf = [f for f in flagged if "NF (not a face)" in f.reason]
    assert len(unknown) == len(nf) == 3 and all(f.reason.endswith("dropped") for f in flagged)
    # each names its label file and the line it is on (the files have no header line)
    first = unknown[0]
    assert first.file == str(tmp_path / "FER2013Train" / "label.csv") and first.row == 9
    report = json.loads(idx.report.to_json())
    assert report["num_flagged"] == 6 and "no header line" in report["row_convention"]


def test_keep_unknown_keeps_faces_with_emotion_votes(tmp_path):
    write_ferplus(tmp_path, standard_rows())
    idx = load_index(_cfg(tmp_path, ferplus={"keep_unknown": True}))
    # unknown-majority faces have emotion votes and are kept; NF-only faces have none and are not
    assert len(idx) == 3 * 10
    kept = [f for f in idx.report.flagged if "kept (ferplus.keep_unknown)" in f.reason]
    dropped = [f for f in idx.report.flagged if "no emotion has a vote" in f.reason]
    assert len(kept) == 3 and len(dropped) == 3
    rec = next(r for r in idx.records if r.key == kept[0].key)
    np.testing.assert_allclose(rec.dist, [2 / 3, 1 / 3, 0, 0, 0, 0, 0, 0])


def test_class_order_from_data_classes(tmp_path):
    write_ferplus(tmp_path, {"train": [("a.png", CLEAR[1]), ("b.png", CLEAR[7])], "val": [("c.png", CLEAR[0])],
                             "test": [("d.png", CLEAR[2])]})
    order = ["contempt", "anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise"]
    idx = load_index(_cfg(tmp_path, classes=order))
    rec = next(r for r in idx.records if r.key.endswith("b.png"))
    assert idx.classnames == order and rec.label == 0
    np.testing.assert_allclose(rec.dist[[0, 5, 2]], [0.6, 0.3, 0.1])
    with pytest.raises(DataError, match="eight FER\\+ classes"):
        load_index(_cfg(tmp_path, classes=["anger", "joy"]))


def test_bad_rows_named_by_file_and_row(tmp_path):
    rows = standard_rows()
    rows["val"] += [
        ("fer9000000.png", [0] * 10),                       # no votes at all
        ("fer9000001.png", [1, "x", 0, 0, 0, 0, 0, 0, 0, 0]),
        ("fer9000002.png", [5, 5]),                          # too few fields
        ("missing.png", CLEAR[0]),                           # listed, no image
    ]
    write_ferplus(tmp_path, rows)
    (tmp_path / "FER2013Valid" / "missing.png").unlink(missing_ok=True)
    (tmp_path / "FER2013Test" / "fer0000022.png").write_bytes(b"\x89PNG broken")
    val_labels = str(tmp_path / "FER2013Valid" / "label.csv")

    with pytest.raises(DataError) as err:
        load_index(_cfg(tmp_path))
    msg = str(err.value)
    assert "5 bad item(s)" in msg and f"row 12 of {val_labels}" in msg and "no header line" in msg

    idx = load_index(_cfg(tmp_path, on_bad="skip"))
    bad = {(b.file, b.row): b for b in idx.report.bad}
    assert bad[(val_labels, 12)].reason == "no votes (all 10 vote counts are 0)"
    assert bad[(val_labels, 13)].field == "happiness" and "not a number" in bad[(val_labels, 13)].reason
    assert "expected 12 fields" in bad[(val_labels, 14)].reason
    assert bad[(val_labels, 15)].reason == "missing file"
    broken = bad[(str(tmp_path / "FER2013Test" / "label.csv"), 1)]
    assert broken.key.endswith("fer0000022.png") and "image" in broken.reason
    assert len(idx) == 3 * 9 - 1


def test_missing_split_folder_is_named(tmp_path):
    write_ferplus(tmp_path, standard_rows())
    (tmp_path / "FER2013Test" / "label.csv").unlink()
    with pytest.raises(DataError, match="FER2013Test/label.csv not found"):
        load_index(_cfg(tmp_path))

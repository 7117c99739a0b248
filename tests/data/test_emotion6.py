from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from cascade.data import (
    EMOTION6_CLASSES,
    DataConfig,
    DataError,
    load_index,
    load_splits,
    make_splits,
    resolve_splits,
    save_splits,
)

EMOTION6_ROOT = Path(__file__).parents[2] / ".." / "shared" / "datasets" / "Emotion6"
needs_emotion6 = [
    pytest.mark.data,
    pytest.mark.skipif(not (EMOTION6_ROOT / "ground_truth.txt").is_file(), reason=f"Emotion6 not at {EMOTION6_ROOT}"),
]


@pytest.fixture(scope="module")
def emotion6_6way():
    return load_index({"format": "emotion6", "root": str(EMOTION6_ROOT)})


@pytest.fixture(scope="module")
def emotion6_7way():
    return load_index({"format": "emotion6", "root": str(EMOTION6_ROOT), "emotion6_neutral": True})


class TestRealEmotion6:
    pytestmark = needs_emotion6

    def test_counts(self, emotion6_6way):
        idx = emotion6_6way
        assert len(idx) == 1980
        assert idx.classnames == list(EMOTION6_CLASSES)
        assert idx.report.counts_per_class == {c: 330 for c in EMOTION6_CLASSES}
        assert idx.report.num_scanned == 1980 and not idx.report.bad
        assert idx.has_distributions

    def test_six_way_renormalised(self, emotion6_6way, emotion6_7way):
        d6 = np.stack([r.dist for r in emotion6_6way.records])
        d7 = np.stack([r.dist for r in emotion6_7way.records])
        assert d6.shape == (1980, 6) and d7.shape == (1980, 7)
        np.testing.assert_allclose(d6.sum(axis=1), 1.0, atol=1e-12)
        np.testing.assert_allclose(d7.sum(axis=1), 1.0, atol=1e-12)
        np.testing.assert_allclose(d6, d7[:, :6] / d7[:, :6].sum(axis=1, keepdims=True))
        assert emotion6_7way.classnames[-1] == "neutral"

    def test_row_values_match_file(self, emotion6_7way):
        rec = next(r for r in emotion6_7way.records if r.key.endswith("disgust/1.jpg"))
        assert rec.label == EMOTION6_CLASSES.index("disgust")
        np.testing.assert_allclose(rec.dist, np.array([0.133333, 0.7, 0, 0.0666667, 0.1, 0, 0]) / 0.9999997, atol=1e-6)

    def test_split_stratified_saved_and_reloaded(self, emotion6_6way, tmp_path):
        idx = emotion6_6way
        splits = make_splits(idx, (0.7, 0.15, 0.15), seed=0)
        assert sorted(splits["train"] + splits["val"] + splits["test"]) == list(range(1980))
        for name, per_class in (("train", 231), ("val", 49.5), ("test", 49.5)):
            counts = Counter(idx.labels[splits[name]].tolist())
            assert all(abs(counts[c] - per_class) <= 1 for c in range(6)), (name, counts)
        path = save_splits(tmp_path / "emotion6_split.json", splits, idx)
        blob = json.loads(path.read_text())
        assert blob["root"].endswith("images") and blob["splits"]["train"]["keys"][0].count("/") == 1
        assert load_splits(path, idx) == splits
        cfg = DataConfig(format="emotion6", root=str(EMOTION6_ROOT), splits_file=str(path))
        assert resolve_splits(cfg, idx) == splits


GT_HEADER = "[image_filename]\t[valence]\t[arousal]\t[prob. joy]\t[prob. anger]\t[prob. disgust]\t[prob. fear]\t[prob. neutral]\t[prob. sadness]\t[prob. surprise]"


def _mini_emotion6(root: Path, save_image, rows: list[str]) -> Path:
    for c in EMOTION6_CLASSES:
        save_image(root / "images" / c / "1.jpg")
    (root / "ground_truth.txt").write_text("\n".join([GT_HEADER, *rows]) + "\n")
    return root


def test_header_names_the_columns(tmp_path, save_image):
    # Columns deliberately in a different order from the real file: values follow the header.
    rows = [f"{c}/1.jpg\t5\t5\t0.1\t0.2\t0.1\t0.1\t0.3\t0.1\t0.1" for c in EMOTION6_CLASSES]
    _mini_emotion6(tmp_path, save_image, rows)
    idx = load_index({"format": "emotion6", "root": str(tmp_path), "emotion6_neutral": True})
    np.testing.assert_allclose(idx.records[0].dist, [0.2, 0.1, 0.1, 0.1, 0.1, 0.1, 0.3])
    assert [r.label for r in idx.records] == list(range(6))
    six = load_index({"format": "emotion6", "root": str(tmp_path), "classes": ["joy", *EMOTION6_CLASSES[:3], *EMOTION6_CLASSES[4:]]})
    assert six.classnames[0] == "joy"
    np.testing.assert_allclose(six.records[0].dist, np.array([0.1, 0.2, 0.1, 0.1, 0.1, 0.1]) / 0.7)


def test_bad_ground_truth_rows(tmp_path, save_image):
    rows = [f"{c}/1.jpg\t5\t5\t0.1\t0.2\t0.1\t0.1\t0.3\t0.1\t0.1" for c in EMOTION6_CLASSES]
    rows[2] = "fear/1.jpg\t5\t5\t0.5\t0.5\t0.5\t0.1\t0.3\t0.1\t0.1"
    rows.append("joy/2.jpg\t5\t5\t0.1\t0.2\t0.1\t0.1\t0.3\t0.1\t0.1")
    rows.append("calm/1.jpg\t5\t5\t0.1\t0.2\t0.1\t0.1\t0.3\t0.1\t0.1")
    _mini_emotion6(tmp_path, save_image, rows)
    idx = load_index({"format": "emotion6", "root": str(tmp_path), "on_bad": "skip"})
    by_row = {b.row: b.reason for b in idx.report.bad}
    assert set(by_row) == {3, 7, 8}
    assert "sums to 2.1" in by_row[3] and by_row[7] == "missing file" and "not an Emotion6 class" in by_row[8]
    with pytest.raises(DataError, match=r"(?s)ground_truth.txt.*row 3"):
        load_index({"format": "emotion6", "root": str(tmp_path)})
    with pytest.raises(DataError, match="ground_truth.txt not found"):
        load_index({"format": "emotion6", "root": str(tmp_path / "images")})

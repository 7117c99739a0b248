"""FER+'s published label protocols (data.ferplus.protocol), on a hand-made label.csv whose kept
faces and targets are worked out by hand below."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from support.ferplus import CLEAR, write_ferplus

from cascade.data import load_index
from cascade.data.config import FERPLUS_CLASSES, DataConfig
from cascade.data.ferplus_protocols import apply_protocol, draw_labels
from cascade.train.batches import epoch_seed
from cascade.train.label_draw import LabelDraw

# Votes: neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF.
# T is the vote total after single votes are dropped.
ROWS = [
    ("a.png", [7, 2, 1, 0, 0, 0, 0, 0, 0, 0]),   # T 9: neutral 7 > 4.5; 7/9 ≥ 75 % alone
    ("b.png", [4, 4, 0, 0, 1, 0, 0, 0, 1, 0]),   # T 8: neutral = happiness = 4, no majority
    ("c.png", [5, 0, 3, 2, 0, 0, 0, 0, 0, 0]),   # T 10: 5 is not > 5; 5 + 3 = 8 ≥ 7.5
    ("d.png", [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]),   # every vote single: T 0
    ("e.png", [2, 6, 0, 0, 0, 0, 0, 0, 2, 0]),   # T 10: happiness 6 > 5; cover takes neutral + unknown (2 each)
    ("f.png", [3, 0, 0, 0, 0, 0, 0, 0, 5, 2]),   # top entry unknown
    ("g.png", [4, 0, 0, 0, 0, 0, 0, 0, 4, 2]),   # neutral ties unknown at the top
    ("h.png", [3, 3, 0, 2, 2, 0, 0, 0, 0, 0]),   # T 10: 3 + 3 = 6 < 7.5, the next tie (2, 2) would make 4 entries
    ("i.png", [4, 3, 3, 0, 0, 0, 0, 0, 0, 0]),   # T 10: 4, then the tie 3 + 3: 3 entries, 10 ≥ 7.5
    ("j.png", [3, 2, 2, 2, 0, 0, 0, 0, 0, 1]),   # T 9: 3 alone (the tie of three 2s would make 4 entries)
    ("k.png", [4, 2, 2, 0, 0, 0, 0, 0, 1, 1]),   # T 8: 4 + 2 + 2 = 8; only neutral has ≥ 30 % (2.4), 4 is not > 4
]
# Expected kept faces and their targets (first classes; the rest are 0), by hand from the rules.
EXPECTED = {
    "majority": {"a.png": [1], "e.png": [0, 1]},
    "crossentropy": {"a.png": [1], "b.png": [.5, .5], "c.png": [5 / 8, 0, 3 / 8], "e.png": [.25, .75],
                     "h.png": [.5, .5], "i.png": [.4, .3, .3], "k.png": [.5, .25, .25]},
    "multi_target": {"a.png": [1], "b.png": [.5, .5], "c.png": [.5, 0, .5], "e.png": [0, 1], "h.png": [.5, .5],
                     "i.png": [1 / 3, 1 / 3, 1 / 3]},
}
EXPECTED["probability"] = EXPECTED["crossentropy"]
# val/test: one clear face each (CLEAR rows keep neutral / happiness under every protocol).
OTHER = {"val": [("v.png", CLEAR[0])], "test": [("t.png", CLEAR[1])]}


def _full(head: list[float]) -> np.ndarray:
    return np.pad(np.asarray(head, dtype=float), (0, 8 - len(head)))


def _load(root: Path, protocol: str, **extra):
    write_ferplus(root, {"train": ROWS, **OTHER})
    return load_index(DataConfig(format="ferplus", root=str(root), ferplus={"protocol": protocol}, **extra))


def _train(idx) -> dict:
    return {Path(r.key).name: r for r in idx.records if r.split == "train"}


@pytest.mark.parametrize("protocol", ["majority", "crossentropy", "probability", "multi_target"])
def test_protocol_keeps_the_hand_worked_faces_and_targets(tmp_path, protocol):
    idx = _load(tmp_path, protocol)
    kept = _train(idx)
    expected = EXPECTED[protocol]
    assert sorted(kept) == sorted(expected)
    for name, head in expected.items():
        target = _full(head)
        rec = kept[name]
        assert rec.label == int(np.argmax(target))            # ties: the earlier class
        if protocol == "majority":
            assert rec.dist is None
        else:
            np.testing.assert_allclose(rec.dist, target)
    assert idx.has_distributions is (protocol != "majority")
    assert sum(r.split != "train" for r in idx.records) == 2

    report = json.loads(idx.report.to_json())
    assert report["protocol"] == protocol
    dropped = {Path(f["key"]).name: f["reason"] for f in report["flagged"]}
    assert sorted(dropped) == sorted({n for n, _ in ROWS} - set(expected))
    assert all(r.startswith(f"{protocol}: ") and r.endswith("; dropped") for r in dropped.values())
    assert "no entry has more than one vote" in dropped["d.png"]
    assert "top entry is unknown: 5 of 10 votes left" in dropped["f.png"]
    assert "top entry is unknown" in dropped["g.png"]


def test_majority_reasons_name_the_top_entry():
    names = list(FERPLUS_CLASSES)
    tie = apply_protocol(ROWS[1][1], "majority", names)
    assert not tie.kept and "neutral = happiness" in tie.reason and "4 of 8 votes" in tie.reason
    nf = apply_protocol([0, 0, 0, 0, 0, 0, 0, 0, 2, 8], "majority", names)
    assert not nf.kept and "NF (not a face)" in nf.reason


def test_votes_stays_the_default_and_keep_unknown_needs_it(tmp_path):
    write_ferplus(tmp_path, {"train": ROWS, **OTHER})
    idx = load_index(DataConfig(format="ferplus", root=str(tmp_path)))
    # every face whose largest raw count is an emotion (g: neutral ties unknown, the earlier column wins)
    assert sorted(_train(idx)) == sorted(n for n, _ in ROWS if n != "f.png")
    assert idx.report.protocol == "votes" and idx.has_distributions
    np.testing.assert_allclose(_train(idx)["a.png"].dist, _full([.7, .2, .1]))   # single votes stay
    with pytest.raises(ValueError, match="keep_unknown applies to protocol 'votes' only"):
        DataConfig(format="ferplus", root=str(tmp_path), ferplus={"protocol": "majority", "keep_unknown": True})


def test_class_order_applies_to_protocol_targets(tmp_path):
    order = ["surprise", "neutral", "happiness", "sadness", "anger", "disgust", "fear", "contempt"]
    idx = _load(tmp_path, "crossentropy", classes=order)
    rec = _train(idx)["c.png"]
    np.testing.assert_allclose(rec.dist[:2], [3 / 8, 5 / 8])
    assert idx.classnames == order and rec.label == 1


def test_probability_draws_a_label_per_epoch_as_a_pure_function(tmp_path):
    idx = _load(tmp_path, "probability")
    draw = LabelDraw(idx, seed=3)
    c = next(i for i, r in enumerate(idx.records) if r.key.endswith("c.png"))
    a = next(i for i, r in enumerate(idx.records) if r.key.endswith("a.png"))
    epochs = 4000
    labels = np.array([draw.labels([c], e)[0] for e in range(epochs)])
    assert set(labels.tolist()) == {0, 2}                         # only classes with weight
    assert abs((labels == 0).mean() - 5 / 8) < 0.03               # 3σ ≈ 0.023 over 4000 draws
    assert all(draw.labels([a], e)[0] == 0 for e in range(50))    # a one-class target always gives it

    # the same (seed, epoch, item) gives the same label whatever the batch around it
    items = list(range(len(idx)))
    together = draw.labels(items, 7)
    alone = [draw.labels([i], 7)[0] for i in reversed(items)][::-1]
    assert together.tolist() == alone
    assert draw.labels(items, 7).tolist() == together.tolist()
    differ = sum(LabelDraw(idx, seed=s).labels([c], 7)[0] != LabelDraw(idx, seed=s).labels([c], 8)[0]
                 for s in range(40))
    assert differ > 5                                             # epochs draw afresh

    # in a batch: label and (smoothed) one-hot distribution follow the draw
    batch = {"index": np.array([c, a]), "label": np.zeros(2, dtype=np.int64),
             "dist": np.zeros((2, 8), dtype=np.float32)}
    batch = {k: torch.as_tensor(v) for k, v in batch.items()}
    out = LabelDraw(idx, seed=3, smoothing=0.2)(batch, 11)
    want = draw.labels([c, a], 11)
    assert out["label"].tolist() == want.tolist()
    expect = np.full((2, 8), 0.025)
    expect[[0, 1], want] += 0.8
    np.testing.assert_allclose(out["dist"].numpy(), expect, rtol=1e-6)


def test_draw_labels_inverts_the_cumulative_distribution():
    dists = np.array([[0.0, 0.5, 0.5], [1.0, 0.0, 0.0], [0.2, 0.0, 0.8]])
    keys = [epoch_seed(0, 0, 1 + i) for i in range(3)]
    got = draw_labels(dists, keys)
    assert got[1] == 0 and got[0] in (1, 2) and got[2] in (0, 2)
    with pytest.raises(ValueError, match="3 keys"):
        draw_labels(dists[:2], keys)


def test_absolute_root_with_dotdot_lists_no_unlisted_images(tmp_path):
    write_ferplus(tmp_path, {"train": ROWS, **OTHER})
    (tmp_path / "elsewhere").mkdir()
    root = f"{tmp_path}/elsewhere/../"
    idx = load_index(DataConfig(format="ferplus", root=root))
    assert not [w for w in idx.report.warnings if "not in its label.csv" in w]
    assert len(idx) == len(ROWS) - 1 + 2
    (tmp_path / "FER2013Train" / "stray.png").write_bytes((tmp_path / "FER2013Train" / "a.png").read_bytes())
    idx = load_index(DataConfig(format="ferplus", root=root))
    assert [w for w in idx.report.warnings if "1 image(s)" in w and "not in its label.csv" in w]


# ---- the real FER+ labels (third-party data, not in the repository) --------------------------------
# CASCADE_FERPLUS_LABELS names either the FER+ data folder (FER2013Train/Valid/Test, each with its
# label.csv: what ``format: ferplus`` reads) or Microsoft's fer2013new.csv. The published majority
# counts are those of the label.csv files. fer2013new.csv holds a different version of the votes
# (1,602 of its named rows differ from the label files) and names four images twice, so majority
# keeps more there.

SPLIT_OF_USAGE = {"Training": "FER2013Train", "PublicTest": "FER2013Valid", "PrivateTest": "FER2013Test"}
PUBLISHED_MAJORITY = {"FER2013Train": 25_045, "FER2013Valid": 3_191, "FER2013Test": 3_137}
FER2013NEW_MAJORITY = {"FER2013Train": 25_060, "FER2013Valid": 3_199, "FER2013Test": 3_153}


def _real_votes(where: Path) -> dict[str, list[list[float]]]:
    """Vote rows per split folder, from the label.csv files or from fer2013new.csv (Usage, Image
    name, 10 vote columns; a row without an image name has no image and is in no label file)."""
    out: dict[str, list[list[float]]] = {f: [] for f in SPLIT_OF_USAGE.values()}
    if where.is_dir():
        for folder in out:
            with (where / folder / "label.csv").open(newline="") as fh:
                out[folder] = [[float(v) for v in row[2:12]] for row in csv.reader(fh)]
        return out
    with where.open(newline="") as fh:
        reader = csv.reader(fh)
        next(reader)
        for row in reader:
            if row[1].strip():
                out[SPLIT_OF_USAGE[row[0]]].append([float(v) for v in row[2:12]])
    return out


@pytest.mark.skipif(not os.environ.get("CASCADE_FERPLUS_LABELS"),
                    reason="CASCADE_FERPLUS_LABELS (the FER+ data folder or fer2013new.csv) is not set")
def test_majority_on_the_real_labels_keeps_the_published_counts():
    where = Path(os.environ["CASCADE_FERPLUS_LABELS"])
    votes = _real_votes(where)
    kept = {folder: sum(apply_protocol(v, "majority", FERPLUS_CLASSES).kept for v in rows)
            for folder, rows in votes.items()}
    assert kept == (PUBLISHED_MAJORITY if where.is_dir() else FER2013NEW_MAJORITY)

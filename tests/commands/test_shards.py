"""``cascade shards``: any dataset → WebDataset shards with the same splits, classes and targets."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from cascade.cli import main
from cascade.data import DataConfig, load_index, resolve_splits

CLASSES = ["anger", "joy", "sadness"]


def _dataset(tmp_path: Path) -> Path:
    """A manifest with vote counts and a split column; images in three file formats."""
    rng = np.random.default_rng(0)
    rows = [["path", "split", "anger", "joy", "sadness"]]
    for i in range(15):
        ext = ("jpg", "png", "bmp")[i % 3]
        arr = rng.integers(0, 256, (18 + i, 22, 3), dtype=np.uint8)
        rel = f"img/{i}.{ext}"
        (tmp_path / "img").mkdir(exist_ok=True)
        Image.fromarray(arr).save(tmp_path / rel)
        votes = rng.integers(0, 6, 3) + (np.arange(3) == i % 3) * 5
        rows.append([rel, ("train", "train", "train", "val", "test")[i % 5], *votes.tolist()])
    with (tmp_path / "m.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    cfg = {"data": {"format": "manifest", "root": "m.csv", "classes": CLASSES,
                    "manifest": {"label_column": None, "counts": True, "split_column": "split"}}}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
    return tmp_path / "run.yaml"


def test_shards_round_trip_targets_splits_and_pixels(tmp_path, capsys):
    config = _dataset(tmp_path)
    out = tmp_path / "shards"
    assert main(["shards", "--config", str(config), "--out", str(out), "--shard-size", "4"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)["data"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert printed == manifest["data"]
    assert manifest["classnames"] == CLASSES and manifest["num_samples"] == 15
    assert {k: (v["num_samples"], len(v["shards"])) for k, v in manifest["splits"].items()} == \
        {"train": (9, 3), "val": (3, 1), "test": (3, 1)}
    assert manifest["splits"]["train"]["pattern"] == "train-{000000..000002}.tar"
    assert sorted(p.name for p in out.glob("*.tar")) == ["test-000000.tar", "train-000000.tar", "train-000001.tar",
                                                          "train-000002.tar", "val-000000.tar"]

    src_cfg = DataConfig.model_validate({**yaml.safe_load(config.read_text())["data"], "root": str(tmp_path / "m.csv")})
    src = load_index(src_cfg)
    src_splits = resolve_splits(src_cfg, src)
    shard_cfg = DataConfig.model_validate(manifest["data"])
    back = load_index(shard_cfg)
    back_splits = resolve_splits(shard_cfg, back)
    assert back.classnames == src.classnames and back.has_distributions

    # manifest.csv: which sample went where
    with (out / "manifest.csv").open() as fh:
        where = {(r["shard"], r["key"]): r for r in csv.DictReader(fh)}
    assert len(where) == 15
    root = Path(manifest["source_root"])
    source_of = {}
    for i, rec in enumerate(back.records):
        shard, key = rec.key.rsplit("#", 1)
        source_of[i] = str(root / where[(Path(shard).name, key)]["source"])
    src_pos = {k: i for i, k in enumerate(src.keys)}
    for split in ("train", "val", "test"):
        assert sorted(source_of[i] for i in back_splits[split]) == sorted(src.keys[i] for i in src_splits[split])
    for i, rec in enumerate(back.records):
        j = src_pos[source_of[i]]
        assert rec.label == src.records[j].label
        # float64 through JSON is exact; reading renormalises a sum of 1 ± 1 ulp, so the last bit may move
        np.testing.assert_allclose(rec.dist, src.records[j].dist, rtol=0, atol=1e-15)
        assert np.array_equal(np.asarray(back.load_image(i)), np.asarray(src.load_image(j)))
    # jpg and png keep their bytes; bmp becomes a lossless png
    exts = {rec.member.ext for rec in back.records}
    assert exts == {"jpg", "png"}
    jpg = next(i for i, r in enumerate(back.records) if r.member.ext == "jpg")
    assert Path(source_of[jpg]).read_bytes() == \
        (out / Path(back.records[jpg].member.path).name).read_bytes()[
            back.records[jpg].member.offset:back.records[jpg].member.offset + back.records[jpg].member.size]


def test_shards_are_reproducible_and_never_overwrite(tmp_path, capsys):
    config = _dataset(tmp_path)
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["shards", "--config", str(config), "--out", str(a)]) == 0
    assert main(["shards", "--config", str(config), "--out", str(b)]) == 0
    assert (a / "train-000000.tar").read_bytes() == (b / "train-000000.tar").read_bytes()
    before = (a / "manifest.json").read_text()
    capsys.readouterr()
    assert main(["shards", "--config", str(config), "--out", str(a)]) == 2
    assert "already holds" in capsys.readouterr().err
    assert (a / "manifest.json").read_text() == before


def test_bad_input_stops_before_writing(tmp_path, capsys):
    config = _dataset(tmp_path)
    (tmp_path / "img" / "3.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "out"
    assert main(["shards", "--config", str(config), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "3.jpg" in err and "row 4" in err and not out.exists()
    assert main(["shards", "--config", str(config), "--set", "data.on_bad=skip", "--out", str(out)]) == 0
    report = json.loads((out / "data_report.json").read_text())
    assert report["num_bad"] == 1 and json.loads((out / "manifest.json").read_text())["num_samples"] == 14

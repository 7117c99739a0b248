"""Emotion6 → cascade shards → train: the shard run sees the folder run's samples, splits and distributions."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from cascade.cli import main
from cascade.run_config import load_run_config
from cascade.train import train
from cascade.train.data import load_data

from .helpers import REPO

PER_CLASS = 4


def _subset(root: Path, out: Path) -> Path:
    """The first PER_CLASS images of each class, in Emotion6's own layout (images linked, not copied)."""
    lines = (root / "ground_truth.txt").read_text(encoding="utf-8-sig").splitlines()
    kept, count = [lines[0]], {}
    for line in lines[1:]:
        rel = line.split("\t")[0].strip()
        cls = rel.split("/")[0]
        if count.get(cls, 0) < PER_CLASS:
            count[cls] = count.get(cls, 0) + 1
            (out / "images" / cls).mkdir(parents=True, exist_ok=True)
            (out / "images" / rel).symlink_to(root / "images" / rel)
            kept.append(line)
    (out / "ground_truth.txt").write_text("\n".join(kept) + "\n")
    return out


def _keys(run: Path) -> dict[str, set[str]]:
    saved = json.loads((run / "splits.json").read_text())
    root = saved["root"]
    return {k: {str(Path(root) / key) if root else key for key in v["keys"]} for k, v in saved["splits"].items()}


@pytest.mark.slow
@pytest.mark.data
def test_emotion6_through_shards_trains_on_the_same_data(tmp_path, emotion6_root):
    subset = _subset(emotion6_root, tmp_path / "e6")
    overrides = ["backbone.model_name=cascade-tiny", "backbone.pretrained=none", f"data.root={subset}",
                 "model.prompt_tokens=2", "train.epochs.warmup=1", "train.epochs.unfreeze=0", "train.epochs.global=0",
                 "train.batch_size=8", "train.device=cpu", "train.amp=none", f"run.runs_dir={tmp_path / 'runs'}"]
    folder_cfg = load_run_config(REPO / "configs" / "emotion6-b32.yaml", [*overrides, "train.num_workers=0",
                                                                         "run.name=folder"])
    (tmp_path / "folder.yaml").write_text(folder_cfg.to_yaml())
    out = tmp_path / "shards"
    assert main(["shards", "--config", str(tmp_path / "folder.yaml"), "--out", str(out), "--shard-size", "5"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())

    shard_raw = yaml.safe_load(folder_cfg.to_yaml())
    shard_raw["data"] = manifest["data"]
    shard_raw["train"]["num_workers"] = 1     # samples read from the shards by a DataLoader worker
    shard_raw["run"]["name"] = "shards"
    (tmp_path / "shards.yaml").write_text(yaml.safe_dump(shard_raw))
    folder_run = train(folder_cfg, quiet=True)
    shard_run = train(load_run_config(tmp_path / "shards.yaml"), quiet=True)

    # the same samples in every split: shard keys map back to the source images through manifest.csv
    with (out / "manifest.csv").open() as fh:
        source = {f"{out / r['shard']}#{r['key']}": str(Path(manifest["source_root"]) / r["source"])
                  for r in csv.DictReader(fh)}
    folder_keys, shard_keys = _keys(folder_run), _keys(shard_run)
    assert {k: len(v) for k, v in folder_keys.items()} == {"train": 12, "val": 6, "test": 6}
    for split in ("train", "val", "test"):
        assert {source[k] for k in shard_keys[split]} == folder_keys[split], split

    # the same classes, labels, distributions and pixels
    a, b = load_data(folder_cfg.data), load_data(load_run_config(tmp_path / "shards.yaml").data)
    assert a.classnames == b.classnames == ["anger", "disgust", "fear", "joy", "sadness", "surprise"]
    assert b.index.has_distributions
    pos = {k: i for i, k in enumerate(a.index.keys)}
    for j, rec in enumerate(b.index.records):
        i = pos[source[rec.key]]
        assert rec.label == a.index.records[i].label
        np.testing.assert_allclose(rec.dist, a.index.records[i].dist, rtol=0, atol=1e-15)
        assert np.array_equal(np.asarray(b.index.load_image(j)), np.asarray(a.index.load_image(i)))

    ev_a = json.loads((folder_run / "eval.json").read_text())
    ev_b = json.loads((shard_run / "eval.json").read_text())
    assert ev_a["sizes"] == ev_b["sizes"] and ev_a["classnames"] == ev_b["classnames"]
    assert ev_b["test"]["num_samples"] == 6 and ev_b["best_epoch"] == 1

"""Label-free training on Emotion6 images: a training manifest with only a path column,
labelled val and test manifests (a small subset, the random tiny backbone)."""
import pytest

from cascade.train import train
from cascade.train.pseudo import SELECTED_ON_VAL
from cascade.run_config import validate_run_config
from cascade.runfolder import EVAL, read_json

CLASSES = ("anger", "disgust", "fear", "joy", "sadness", "surprise")


@pytest.mark.data
def test_label_free_run_on_emotion6_reports_test_metrics(tmp_path, emotion6_root):
    images = emotion6_root / "images"
    per_class = {c: sorted(p.name for p in (images / c).iterdir() if p.suffix.lower() == ".jpg")[:8] for c in CLASSES}
    rows = {"train": [], "val": [], "test": []}
    for c, names in per_class.items():
        for k, name in enumerate(names):
            split = "train" if k < 4 else ("val" if k < 6 else "test")
            rows[split].append((str(images / c / name), c))
    (tmp_path / "train.csv").write_text("path\n" + "".join(f"{p}\n" for p, _ in rows["train"]))
    for split in ("val", "test"):
        (tmp_path / f"{split}.csv").write_text("path,label\n" + "".join(f"{p},{c}\n" for p, c in rows[split]))
    cfg = validate_run_config({
        "method": "shallow",
        "backbone": {"model_name": "cascade-tiny", "pretrained": "none"},
        "data": {"format": "manifest", "classes": list(CLASSES),
                 "root": {s: str(tmp_path / f"{s}.csv") for s in ("train", "val", "test")}},
        "train": {"epochs": {"warmup": 1, "unfreeze": 0, "global": 0}, "batch_size": 12, "device": "cpu",
                  "supervision": "pseudo", "augment": True, "input_pipeline": "cpu"},
        "run": {"runs_dir": str(tmp_path / "runs"), "name": "e6-free"}})
    ev = read_json(train(cfg, quiet=True) / EVAL)
    assert ev["supervision"] == "pseudo" and ev["selection"] == SELECTED_ON_VAL
    assert ev["sizes"] == {"train": 24, "val": 12, "test": 12}
    assert ev["pseudo_labels"]["items"] == 24 and "accuracy" not in ev["pseudo_labels"]
    assert ev["test"]["num_samples"] == 12 and 0.0 <= ev["test"]["fused"]["accuracy"] <= 1.0
    assert ev["targets"] == "labels only" and ev["random_weights"] is True

"""The Emotion6 example config's data path, with a random tiny backbone (no downloads)."""
import json

import pytest

from cascade.run_config import load_run_config
from cascade.train import train

from .helpers import REPO


@pytest.mark.slow
@pytest.mark.data
def test_emotion6_config_runs_zero_shot_on_a_tiny_backbone(tmp_path, emotion6_root):
    cfg = load_run_config(REPO / "configs" / "emotion6-b32.yaml", [
        "method=zeroshot", "backbone.model_name=cascade-tiny", "backbone.pretrained=none",
        f"data.root={emotion6_root}", "train.device=cpu", "train.num_workers=0", f"run.runs_dir={tmp_path}",
        "run.name=e6"])
    path = train(cfg, quiet=True)
    ev = json.loads((path / "eval.json").read_text())
    assert ev["classnames"] == ["anger", "disgust", "fear", "joy", "sadness", "surprise"]
    assert sum(ev["sizes"].values()) == 1980
    assert ev["test"]["num_samples"] == ev["sizes"]["test"] and ev["random_weights"] is True
    report = json.loads((path / "data_report.json").read_text())
    assert report["num_kept"] == 1980

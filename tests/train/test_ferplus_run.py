"""The shipped FER+ config on a FER+-layout fixture, with a random tiny backbone (no downloads)."""
import json

from support.ferplus import standard_rows, write_ferplus

from cascade.data.config import FERPLUS_CLASSES
from cascade.run_config import load_run_config
from cascade.train import train

from .helpers import REPO


def test_ferplus_config_runs_on_the_official_splits(tmp_path):
    rows = standard_rows()
    rows["train"].append(("fer9999999.png", [0] * 10))     # a row without votes, as the shipped files have
    root = write_ferplus(tmp_path / "FERPlus", rows)
    cfg = load_run_config(REPO / "configs" / "ferplus-b32.yaml", [
        "method=zeroshot", "backbone.model_name=cascade-tiny", "backbone.pretrained=none", f"data.root={root}",
        "train.device=cpu", "train.num_workers=0", f"run.runs_dir={tmp_path}", "run.name=fer"])
    path = train(cfg, quiet=True)
    ev = json.loads((path / "eval.json").read_text())
    assert ev["classnames"] == list(FERPLUS_CLASSES)
    assert ev["sizes"] == {"train": 9, "val": 9, "test": 9} and ev["test"]["num_samples"] == 9
    report = json.loads((path / "data_report.json").read_text())
    assert report["num_bad"] == 1 and report["num_flagged"] == 6 and report["num_kept"] == 27
    assert report["bad"][0]["row"] == 12 and report["bad"][0]["file"].endswith("FER2013Train/label.csv")

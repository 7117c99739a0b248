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
    # majority: the 8 clear faces per split; unknown, NF and the emotion/unknown tie are dropped
    assert ev["sizes"] == {"train": 8, "val": 8, "test": 8} and ev["test"]["num_samples"] == 8
    assert ev["test"]["fused"]["kl"] is None                  # one-hot targets: distribution metrics n/a
    report = json.loads((path / "data_report.json").read_text())
    assert report["protocol"] == "majority" and not report["has_distributions"]
    assert report["num_bad"] == 1 and report["num_flagged"] == 9 and report["num_kept"] == 24
    assert report["bad"][0]["row"] == 12 and report["bad"][0]["file"].endswith("FER2013Train/label.csv")

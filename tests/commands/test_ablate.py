"""``cascade ablate``: every method on the same splits, CSV + Markdown table."""
import csv
import json
from pathlib import Path

import pytest

from cascade.cli import main
from cascade.train.ablate import markdown_table, parse_methods

REPO = Path(__file__).resolve().parents[2]
TINY_YAML = REPO / "configs" / "synthetic-tiny.yaml"
ALL = ["zeroshot", "linear-probe", "shallow", "vpt-deep", "cascade", "cascade-no-nga", "nga-no-cascade",
       "concat-fusion"]


@pytest.mark.slow
def test_ablate_writes_a_table_with_every_method(tmp_path, capsys):
    out = tmp_path / "ablation"
    args = ["ablate", "--config", str(TINY_YAML), "--methods", ",".join(ALL), "--seeds", "1", "--out", str(out),
            "--quiet"]
    for o in ["data.synthetic.num_samples=60", "model.prompt_tokens=2", "train.epochs.warmup=1",
              "train.epochs.unfreeze=0", "train.epochs.global=1", "train.batch_size=16"]:
        args += ["--set", o]
    capsys.readouterr()
    assert main(args) == 0
    printed = capsys.readouterr().out
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [r["method"] for r in rows] == ALL
    assert {"accuracy", "macro_f1", "uar", "kl", "chebyshev", "clark", "canberra", "cosine", "intersection",
            "seed", "val_accuracy", "random_weights"} <= set(rows[0])
    md = (out / "results.md").read_text()
    assert "RANDOM backbone weights" in md and md in printed
    for m in ALL:
        assert f"| {m} | 1 |" in md
    # one split file for all runs: every run's splits.json names the same items
    splits = {json.dumps(json.loads((Path(r["run_dir"]) / "splits.json").read_text())["splits"]) for r in rows}
    assert len(splits) == 1
    # the test split was evaluated with the val-selected checkpoint
    ev = json.loads((Path(rows[4]["run_dir"]) / "eval.json").read_text())
    assert ev["method"] == "cascade" and ev["checkpoint"] == "best" and ev["best_epoch"] in (1, 2)
    # running again reuses the finished runs
    assert main(args) == 0


def test_markdown_table_mean_and_std():
    rows = [{"method": "a", "accuracy": 0.5, "kl": 1.0}, {"method": "a", "accuracy": 0.7, "kl": 3.0},
            {"method": "b", "accuracy": 0.9, "kl": None}]
    md = markdown_table(rows, ["a", "b"], random_weights=False, select_metric="accuracy", n_seeds=2)
    assert "| a | 2 | 0.6000 ± 0.1414 |" in md
    assert "RANDOM" not in md and "n/a" in md
    with pytest.raises(ValueError, match="unknown"):
        parse_methods("cascade,bogus")

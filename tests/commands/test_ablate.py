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


SMALL_ABLATION = ["data.synthetic.num_samples=60", "model.prompt_tokens=2", "train.epochs.warmup=1",
                  "train.epochs.unfreeze=0", "train.epochs.global=1", "train.batch_size=16"]


def _ablate(out, *extra, methods="zeroshot,cascade", seeds="1"):
    args = ["ablate", "--config", str(TINY_YAML), "--methods", methods, "--seeds", seeds, "--out", str(out), "--quiet"]
    for o in SMALL_ABLATION:
        args += ["--set", o]
    return main(args + list(extra))


@pytest.mark.slow
def test_rerun_with_another_config_refuses_stale_runs_then_retrains_with_force(tmp_path, capsys):
    out = tmp_path / "ab"
    assert _ablate(out) == 0
    run = out / "runs" / "cascade-seed0"
    first_eval = (run / "eval.json").read_text()
    # the same config again: the finished runs are reused as they are
    assert _ablate(out) == 0
    assert (run / "eval.json").read_text() == first_eval
    capsys.readouterr()
    # another learning rate: the old runs would be reported under the new config, so it stops
    assert _ablate(out, "--set", "train.lr.prompts=0.5") == 2
    err = capsys.readouterr().err
    assert "cascade-seed0" in err and "train.lr.prompts: 0.003 → 0.5" in err and "--force" in err
    assert "zeroshot-seed0" in err                      # every method's run shares the base config
    assert (run / "eval.json").read_text() == first_eval  # nothing was touched
    assert _ablate(out, "--set", "train.lr.prompts=0.5", "--force") == 0
    import yaml
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["lr"]["prompts"] == 0.5
    assert yaml.safe_load((out / "base_config.yaml").read_text())["train"]["lr"]["prompts"] == 0.5
    old = list((out / "superseded").glob("*/cascade-seed0"))
    assert len(old) == 1 and (old[0] / "eval.json").read_text() == first_eval


@pytest.mark.slow
def test_a_changed_split_is_stale_and_split_per_seed_varies_it(tmp_path, capsys):
    out = tmp_path / "ab"
    assert _ablate(out, methods="zeroshot") == 0
    capsys.readouterr()
    assert _ablate(out, "--set", "data.split_seed=7", methods="zeroshot") == 2
    assert "data.split_seed: 0 → 7" in capsys.readouterr().err
    # the same config, but the split file on disk holds other items (e.g. the data changed)
    path = out / "splits.json"
    payload = json.loads(path.read_text())
    sp = payload["splits"]
    sp["train"]["keys"][0], sp["test"]["keys"][0] = sp["test"]["keys"][0], sp["train"]["keys"][0]
    path.write_text(json.dumps(payload))
    assert _ablate(out, methods="zeroshot") == 2
    assert "splits.json: the split would now hold other items" in capsys.readouterr().err
    per_seed = tmp_path / "per-seed"
    assert _ablate(per_seed, "--split-per-seed", methods="zeroshot", seeds="2") == 0
    splits = [json.loads((per_seed / f"splits-seed{k}.json").read_text())["splits"]["test"]["keys"] for k in (0, 1)]
    assert splits[0] != splits[1]
    res = json.loads((per_seed / "results.json").read_text())
    assert res["split_per_seed"] is True and [r["split_seed"] for r in res["rows"]] == [0, 1]
    assert "split" in res["variance"] and "choice of split" in (per_seed / "results.md").read_text()
    shared = json.loads((out / "results.json").read_text())
    assert shared["split_per_seed"] is False and "not split variance" in (out / "results.md").read_text()


@pytest.mark.slow
def test_an_unfinished_run_is_resumed_not_reported(tmp_path):
    from cascade.runfolder import read_run_state

    out = tmp_path / "ab"
    assert _ablate(out, methods="cascade") == 0
    run = out / "runs" / "cascade-seed0"
    # make it look stopped half-way: its metrics would be partial
    state = json.loads((run / "state.json").read_text())
    state["state"] = "stopped"
    (run / "state.json").write_text(json.dumps(state))
    assert _ablate(out, methods="cascade") == 0
    assert read_run_state(run).state == "finished"
    assert json.loads((out / "results.json").read_text())["rows"][0]["partial"] is False

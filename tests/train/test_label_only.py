"""Label-only data has no emotion distributions: distribution metrics are n/a, and one setting
shapes the targets of training and evaluation alike."""
import json

import numpy as np
import pytest
from PIL import Image

from cascade.config import ConfigError
from cascade.metrics import DISTRIBUTION_METRICS
from cascade.train import train
from cascade.run_config import validate_run_config

from .helpers import read_jsonl

COLOURS = {"anger": (220, 40, 40), "joy": (240, 220, 60), "sadness": (40, 60, 200)}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("imagefolder")
    rng = np.random.default_rng(0)
    for name, colour in COLOURS.items():
        (root / name).mkdir()
        for i in range(14):
            arr = np.clip(np.array(colour) + rng.normal(0, 30, size=(40, 48, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(root / name / f"{i}.png")
    return root


def _config(root, runs, *, name, **data):
    return validate_run_config({
        "backbone": {"model_name": "cascade-tiny", "pretrained": "none"},
        "model": {"preset": "b32-4stage", "prompt_tokens": 2},
        "data": {"format": "imagefolder", "root": str(root), **data},
        "train": {"epochs": {"warmup": 1, "unfreeze": 0, "global": 1}, "batch_size": 8, "augment": False,
                  "device": "cpu", "lr": {"prompts": 3e-3}},
        "run": {"runs_dir": str(runs), "name": name}})


@pytest.fixture(scope="module")
def label_run(folder, tmp_path_factory):
    return train(_config(folder, tmp_path_factory.mktemp("runs"), name="labels"), quiet=True)


def test_distribution_metrics_are_null_for_label_only_data(label_run):
    ev = json.loads((label_run / "eval.json").read_text())
    assert ev["targets"] == "labels only"
    for split in ("val", "test"):
        fused = ev[split]["fused"]
        assert isinstance(fused["accuracy"], float)
        assert all(fused[k] is None for k in DISTRIBUTION_METRICS), fused
        assert all(st[k] is None for st in ev[split]["stages"] for k in DISTRIBUTION_METRICS)
    records = read_jsonl(label_run / "metrics.jsonl")
    assert records[0]["targets"] == "labels only"
    evals = [r for r in records if r["kind"] == "eval"]
    assert evals and all(r["metrics"]["fused"]["kl"] is None for r in evals)


def test_eval_command_and_sigma_sweep_say_n_a(label_run):
    from analysis.features import load_run, run_features
    from analysis.sigma import SigmaSweeper
    from cascade.evaluate import evaluate_run

    res = evaluate_run(label_run, "val", write=False)
    assert res["metrics"]["fused"]["kl"] is None and res["metrics"]["fused"]["accuracy"] is not None
    run = load_run(label_run)
    fs = run_features(run, "val", progress=False)
    row = SigmaSweeper(fs, run.model).evaluate([1.0] * 4)
    assert np.isnan(row["kl"]) and not np.isnan(row["accuracy"])


def test_training_log_says_the_loss_collapses_to_ce(folder, tmp_path, capsys):
    train(_config(folder, tmp_path, name="log"))
    err = capsys.readouterr().err
    assert "labels only" in err and "(1 + λ_dist)·CE = 2·CE" in err


def test_one_label_smoothing_setting(folder, tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=r"loss.label_smoothing \(0.2\) differs from data.label_smoothing \(0.1\)"):
        validate_run_config({"data": {"label_smoothing": 0.1}, "train": {"loss": {"label_smoothing": 0.2}}})
    validate_run_config({"data": {"label_smoothing": 0.1}, "train": {"loss": {"label_smoothing": 0.1}}})
    # the loss trains on the same smoothed targets the metrics are computed against
    import cascade.train.loop as loop

    seen = []
    real = loop.cascade_loss

    def spy(out, labels, target_dist=None, *a, **kw):
        seen.append(target_dist.detach().clone())
        return real(out, labels, target_dist, *a, **kw)

    monkeypatch.setattr(loop, "cascade_loss", spy)
    train(_config(folder, tmp_path, name="smooth", label_smoothing=0.3), quiet=True)
    assert seen and all(t is not None for t in seen)
    assert float(seen[0].max()) == pytest.approx(0.7 + 0.3 / 3) and float(seen[0].min()) == pytest.approx(0.1)

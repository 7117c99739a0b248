"""`cascade cka` / `cascade sigma-sweep` end to end on a tiny run trained by the trainer."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from support.browser import needs_browser
from support.cli import cli

REPO = Path(__file__).resolve().parents[2]
TINY_YAML = REPO / "configs" / "synthetic-tiny.yaml"






@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A cascade-tiny run on 80 synthetic faces: 2 epochs, best + last checkpoints."""
    from cascade.run_config import load_run_config
    from cascade.train import train

    runs = tmp_path_factory.mktemp("runs")
    cfg = load_run_config(TINY_YAML, [
        "data.synthetic.num_samples=80", "model.prompt_tokens=2", "train.epochs.warmup=1",
        "train.epochs.unfreeze=0", "train.epochs.global=1", "train.batch_size=16",
        f"run.runs_dir={runs}", "run.name=analysis-tiny",
    ])
    return train(cfg, quiet=True)


def test_commands_are_registered():
    from cascade.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert {"cka", "sigma-sweep"} <= set(sub.choices)
    args = parser.parse_args(["sigma-sweep", "--run", "x", "--sigmas", "0.5:2:3"])
    assert np.allclose(args.sigmas, [0.5, 1.0, 2.0]) and callable(args.func)
    with pytest.raises(SystemExit):
        parser.parse_args(["sigma-sweep", "--run", "x", "--sigmas", "0:1:3"])


@pytest.mark.slow
def test_features_cache_and_sweeper_match_the_trainer(run_dir):
    from analysis.features import load_run, run_features
    from analysis.sigma import SigmaSweeper

    run = load_run(run_dir)
    first = run_features(run, "val", progress=False)
    again = run_features(run, "val", progress=False)
    assert not first.cache_hit and again.cache_hit
    assert first.cache_path.parent == run_dir / "features"
    assert first.num_samples == len(run.splits["val"])
    assert first.labels.tolist() == run.index.labels[run.splits["val"]].tolist()

    # metrics at the learned σ equal the trainer's own validation of the best checkpoint
    got = SigmaSweeper(first, run.model, stage_metrics="all").evaluate()
    val = json.loads((run_dir / "checkpoints" / "best.json").read_text())["extra"]["val_metrics"]
    for k in ("accuracy", "macro_f1", "uar", "kl", "cosine", "intersection"):
        assert got[k] == pytest.approx(val["fused"][k], abs=1e-5), k
    for s, stage in enumerate(val["stages"]):
        assert got[f"stage{s + 1}.accuracy"] == pytest.approx(stage["accuracy"], abs=1e-9)


@pytest.mark.slow
def test_sigma_sweep_cli(run_dir, tmp_path, capsys):
    out = tmp_path / "sweep.csv"
    assert cli("sigma-sweep", "--run", run_dir, "--sigmas", "0.1:10:5", "--out", out, "--quiet") == 0
    text = capsys.readouterr().out
    assert "learned σ" in text and "joint" in text and "stage 4" in text and "best accuracy" in text
    df = pd.read_csv(out)
    assert len(df) == 5 * 5
    assert set(df["stage"].astype(str)) == {"1", "2", "3", "4", "joint"}

    out2 = tmp_path / "s2.csv"
    assert cli("sigma-sweep", "--run", run_dir, "--sigmas", "0.5,2", "--stage", "2", "--metric", "kl",
               "--out", out2, "--quiet") == 0
    df2 = pd.read_csv(out2)
    assert len(df2) == 2 and set(df2["stage"].astype(str)) == {"2"}
    capsys.readouterr()

    assert cli("sigma-sweep", "--run", run_dir, "--stage", "9", "--quiet") == 2
    assert "stages 1..4" in capsys.readouterr().err
    assert cli("sigma-sweep", "--run", run_dir, "--metric", "nope", "--quiet") == 2
    assert cli("sigma-sweep", "--run", tmp_path / "missing", "--quiet") == 2


@pytest.mark.slow
@needs_browser
def test_cka_cli_all_modes(run_dir, tmp_path, capsys):
    for mode, suffix in (("within", ".svg"), ("frozen", ".pdf"), ("stages", ".png")):
        out = tmp_path / f"{mode}{suffix}"
        assert cli("cka", "--run", run_dir, "--mode", mode, "--out", out, "--quiet") == 0, mode
        assert out.is_file() and out.stat().st_size > 500
        with open(out.with_suffix(".csv"), newline="") as fh:
            rows = list(csv.reader(fh))
        npz = np.load(out.with_suffix(".npz"))
        if mode == "stages":
            assert npz["matrix"].shape == (4, 13) and rows[0][-1] == "emb"
        else:
            assert npz["matrix"].shape == (12, 12) and rows[0][1:] == [str(b) for b in range(1, 13)]
        if mode == "within":
            assert np.allclose(np.diag(npz["matrix"]), 1.0, atol=1e-9)
    text = capsys.readouterr().out
    assert "drift" in text
    assert cli("cka", "--run", run_dir, "--out", tmp_path / "x.txt", "--quiet") == 2
    # against another run folder (here: the same one) gives CKA 1 on the block diagonal
    out = tmp_path / "self.svg"
    assert cli("cka", "--run", run_dir, "--mode", "frozen", "--against", run_dir, "--out", out, "--quiet") == 0
    assert np.allclose(np.diag(np.load(out.with_suffix(".npz"))["matrix"]), 1.0, atol=1e-9)


@pytest.mark.slow
def test_drift_over_checkpoints_and_apply_sigma(run_dir, tmp_path):
    from analysis.drift import drift_over_checkpoints
    from analysis.features import load_run
    from analysis.sigma import apply_sigma

    df = drift_over_checkpoints(run_dir)
    stages = df[df["kind"] == "stage"]
    assert set(stages["checkpoint"]) == {"best", "last"}
    assert len(stages) == 2 * 4 and stages["drift"].between(-0.1, 1.1).all()

    src = run_dir / "checkpoints" / "best.safetensors"
    before = src.read_bytes()
    out = apply_sigma(run_dir, [0.5, 0.5, 2.0, 1.0], tmp_path / "tuned.safetensors")
    assert src.read_bytes() == before
    tuned = load_run(run_dir, checkpoint=str(out))
    assert torch.allclose(tuned.model.sigma(), torch.tensor([0.5, 0.5, 2.0, 1.0]), rtol=1e-6)

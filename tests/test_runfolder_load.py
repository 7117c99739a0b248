"""One loader for a run's model: the dashboard's σ tuner scores a bf16 run as ``cascade sigma-sweep`` does."""
import pandas as pd
import pytest
import torch
import yaml

from analysis.features import LoadedRun, loaded_run, run_features
from analysis.sigma import SigmaSweeper
from cascade.checkpoint import load_checkpoint
from cascade.dashboard.models import checkpoint_backbone, load_run_checkpoint, load_spec_backbone
from cascade.runfolder import CONFIG, checkpoint_path, load_run
from cascade.train import train
from pages._analysis import checkpoint_features, sigma_bundle
from support.cli import cli
from support.threads import one_thread
from train.helpers import tiny_config

SIGMAS = (0.3, 1.0, 3.0)
METRICS = ("accuracy", "macro_f1", "kl")


@pytest.fixture(scope="module")
def bf16_run(tmp_path_factory):
    """cascade-tiny (random weights) on synthetic faces, its frozen blocks trained in bf16."""
    runs = tmp_path_factory.mktemp("bf16-runs")
    with one_thread():
        return train(tiny_config(runs, "run.name=bf16", "train.frozen_dtype=bf16", "train.epochs.unfreeze=0",
                                 "train.epochs.global=0"), quiet=True)


def test_load_run_applies_the_recorded_frozen_dtype(bf16_run):
    assert yaml.safe_load((bf16_run / CONFIG).read_text())["train"]["frozen_dtype"] == "bf16"
    loaded = load_run(bf16_run)
    assert loaded.frozen_dtype == "bf16" and loaded.model.frozen_dtype == torch.bfloat16
    assert loaded.checkpoint == checkpoint_path(bf16_run, "best") and not loaded.linear_probe
    assert loaded.splits_file == bf16_run / "splits.json" and loaded.config.method == "cascade"
    assert not loaded.model.training


@pytest.mark.slow
def test_sigma_tuner_scores_equal_sigma_sweep_on_a_bf16_run(bf16_run, tmp_path):
    out = tmp_path / "sweep.csv"
    with one_thread():
        assert cli("sigma-sweep", "--run", bf16_run, "--sigmas", ",".join(map(str, SIGMAS)), "--joint",
                   "--split", "val", "--device", "cpu", "--cache-dir", tmp_path / "cli-features", "--out", out,
                   "--quiet") == 0
    sweep = pd.read_csv(out)
    assert sorted(sweep["sigma"]) == pytest.approx(sorted(SIGMAS))

    # the σ tuner's path: the dashboard's loader, then the pages' features and sweeper (own feature cache)
    best = checkpoint_path(bf16_run, "best")
    spec, frozen_dtype = checkpoint_backbone(best)
    assert frozen_dtype == "bf16"
    with one_thread():
        loaded = load_run_checkpoint(best, load_spec_backbone(spec))
        assert loaded.model.frozen_dtype == torch.bfloat16
        bundle = sigma_bundle(loaded.model, checkpoint_features(loaded, "val", "run", "cpu"), label="bf16",
                              checkpoint=best, split="val")
    stages = loaded.model.num_stages
    for row in sweep.itertuples():
        tuner, _ = bundle.evaluate([row.sigma] * stages)
        for m in METRICS:
            assert tuner[m] == pytest.approx(getattr(row, m), abs=1e-9), (row.sigma, m)

    # not a coincidence: the same checkpoint with float32 blocks scores differently
    fp32 = load_checkpoint(best).eval()
    assert fp32.frozen_dtype == torch.float32
    run32 = LoadedRun(run_dir=bf16_run, config=loaded.config, model=fp32, checkpoint=best,
                      data=loaded_run(loaded).data)
    with one_thread():
        fs32 = run_features(run32, "val", cache_dir=tmp_path / "fp32-features", progress=False)
    sweeper32 = SigmaSweeper(fs32, fp32)
    kl32 = [sweeper32.evaluate([s] * stages)["kl"] for s in sweep["sigma"]]
    assert any(abs(a - b) > 1e-7 for a, b in zip(kl32, sweep["kl"]))


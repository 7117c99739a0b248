"""Drift: CKA within a model, prompted vs frozen, stages vs the frozen embedding, the monitor."""
from __future__ import annotations

import json
from pathlib import Path
import logging
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from analysis.drift import (
    DriftMonitor,
    block_drift,
    cross_model_cka,
    drift_from_logs,
    stage_boundaries,
    stage_drift,
    stage_vs_frozen_matrix,
    within_model_cka,
)
from analysis.features import extract_features, frozen_final_embedding, zero_prompt_model
from cascade.runfolder import DRIFT
from cascade import CascadeConfig, build_model

CLASSES = ["anger", "disgust", "fear", "joy", "sadness", "surprise"]


@pytest.fixture(scope="module")
def setup(tiny_backbone):
    torch.manual_seed(0)
    model = build_model(tiny_backbone, CLASSES, CascadeConfig.from_preset("b32-4stage", prompt_tokens=4)).eval()
    with torch.no_grad():
        for name, p in model.cascade_named_parameters():
            if name.startswith("prompts."):
                p.mul_(20.0)          # strong prompts: visible drift
    g = torch.Generator().manual_seed(1)
    x = torch.randn(40, 3, 64, 64, generator=g)
    run = extract_features(model, x, poolings=["cls"], progress=False)
    frozen_model = zero_prompt_model(model)
    frozen = extract_features(frozen_model, x, poolings=["cls"], progress=False)
    return SimpleNamespace(model=model, x=x, run=run, frozen=frozen, frozen_model=frozen_model)


def test_stage_boundaries():
    stages = [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11], [12]]
    assert stage_boundaries(stages, list(range(1, 13))) == [3.5, 7.5, 10.5]
    assert stage_boundaries([[6, 7, 8], [9, 10, 11], [12]], list(range(1, 13))) == [4.5, 7.5, 10.5]


def test_within_model(setup):
    res = within_model_cka(setup.run, model=setup.model, batch_size=20)
    m = res.matrix
    assert m.shape == (12, 12)
    assert np.allclose(np.diag(m), 1.0, atol=1e-9)
    assert np.allclose(m, m.T, atol=1e-9)
    assert res.rows == [str(b) for b in range(1, 13)]
    assert res.row_boundaries == [3.5, 7.5, 10.5]


def test_prompted_vs_frozen(setup):
    same = block_drift(setup.frozen, setup.frozen)
    assert np.allclose(same["drift"], 0.0, atol=1e-9)
    res = cross_model_cka(setup.run, setup.frozen, model=setup.model)
    drift = block_drift(setup.run, setup.frozen)
    assert np.allclose(1 - res.diagonal, drift["drift"].to_numpy(), atol=1e-9)
    assert (drift["drift"] > 1e-4).all()           # the strong prompts moved every block
    with pytest.raises(ValueError, match="same items"):
        cross_model_cka(setup.run, setup.frozen.subset(list(range(20))))


def test_stage_drift_against_frozen_embedding(setup):
    emb = frozen_final_embedding(setup.frozen, setup.model)
    with torch.no_grad():
        clip = setup.model.visual(setup.x)
    assert torch.allclose(emb, clip, atol=1e-4)
    # frozen CLIP's own last-block stage: e_4 = f_12 proj is the embedding itself
    frozen_stage = stage_drift(setup.frozen, setup.frozen_model, emb, which="embedding")
    assert frozen_stage["drift"].iloc[-1] == pytest.approx(0.0, abs=1e-9)
    z = stage_drift(setup.run, setup.model, emb)
    assert list(z["stage"]) == [1, 2, 3, 4] and list(z["blocks"]) == ["1-4", "5-8", "9-11", "12"]
    assert np.allclose(z["drift"], 1 - z["cka"])
    mat = stage_vs_frozen_matrix(setup.run, setup.model, setup.frozen, emb)
    assert mat.matrix.shape == (4, 13) and mat.cols[-1] == "emb"
    assert mat.rows == ["stage 1 (blocks 1-4)", "stage 2 (blocks 5-8)", "stage 3 (blocks 9-11)", "stage 4 (block 12)"]
    assert np.allclose(mat.matrix[:, -1], z["cka"], atol=1e-9)


def _state(model, run_dir, step=0, **kw):
    return SimpleNamespace(model=model, run_dir=run_dir, global_step=step, epoch=0, rank=0, **kw)


def test_monitor_threshold_reads_drift_relative_to_step_0(setup, tmp_path, caplog):
    """At step 0 the absolute drift is far from 0 (proj is not orthogonal), yet nothing has
    drifted; the threshold reads the share of the step-0 alignment lost since."""
    import copy

    model = copy.deepcopy(setup.model)
    mon = DriftMonitor(setup.x[:16], every_k_steps=2, threshold=0.0)
    with caplog.at_level(logging.WARNING, logger="analysis.drift"):
        mon.on_train_start(_state(model, tmp_path))
    rec0 = mon.history[-1]
    assert rec0["kind"] == "drift" and len(rec0["stage_cka"]) == 4 and len(rec0["block_cka"]) == 12
    assert max(rec0["stage_drift"]) > 0.05           # the absolute value is no baseline
    assert rec0["threshold_on"] == "relative" and rec0["stage_cka_step0"] == rec0["stage_cka"]
    assert rec0["stage_drift_relative"] == [0.0] * 4 and rec0["block_drift_relative"] == [0.0] * 12
    assert not caplog.records
    model.set_sigma([10.0] * 4)                     # NGA now averages more blocks: Z_2 and Z_3 move away
    with caplog.at_level(logging.WARNING, logger="analysis.drift"):
        for step in (1, 2):
            mon.on_step_end(_state(model, tmp_path, step))
    rec = mon.history[-1]
    lost = [s + 1 for s, d in enumerate(rec["stage_drift_relative"]) if d > 0]
    assert rec["stage_drift_relative"][3] == 0.0       # a one-block stage: σ changes nothing
    for s, d in enumerate(rec["stage_drift_relative"]):
        assert d == pytest.approx(1 - rec["stage_cka"][s] / rec0["stage_cka"][s])
    warned = [r.getMessage() for r in caplog.records]
    assert lost and len(warned) == len(lost)
    for s, msg in zip(lost, warned):
        assert f"stage {s}" in msg and "of its step-0 alignment" in msg
        assert "raise σ" in msg and "train.loss.distill" in msg
    # still above the threshold: no repeated warning; every K steps only
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="analysis.drift"):
        for step in (3, 4):
            mon.on_step_end(_state(model, tmp_path, step))
    assert not caplog.records
    assert [r["global_step"] for r in mon.history] == [0, 2, 4]
    lines = [json.loads(x) for x in (tmp_path / DRIFT).read_text().splitlines()]
    assert len(lines) == 3 and all(x["kind"] == "drift" for x in lines)
    df = drift_from_logs(tmp_path)
    assert set(df["kind"]) == {"stage", "block"}
    assert len(df[df["kind"] == "stage"]) == 3 * 4
    assert (df[df["global_step"] == 0]["drift_relative"] == 0).all()


def test_resumed_monitor_reads_its_step_0_baseline(setup, tmp_path):
    first = DriftMonitor(setup.x[:8], every_k_steps=1, per_block=False)
    written = []
    sink = SimpleNamespace(write=written.append, records=lambda: written)
    first.on_train_start(_state(setup.model, tmp_path, 0, metrics_log=sink))
    again = DriftMonitor(setup.x[:8], every_k_steps=1, per_block=False)
    again.on_train_start(_state(setup.model, tmp_path, 5, metrics_log=sink))
    assert len(written) == 1                          # a resumed run does not log step 0 again
    rec = again.check(setup.model, 6, 1)
    assert rec["stage_cka_step0"] == written[0]["stage_cka"]
    assert rec["stage_drift_relative"] == pytest.approx([0.0] * 4, abs=1e-9)


def test_probe_defaults_to_a_few_hundred_val_images():
    from analysis.drift import probe_batch
    from cascade.run_config import validate_run_config

    assert validate_run_config({}).train.drift.probe_size >= 256
    assert validate_run_config({"train": {"drift": {"probe_size": None}}}).train.drift.probe_size is None

    class Items:
        def __len__(self):
            return 30

        def __getitem__(self, i):
            return {"image": torch.full((3, 2, 2), float(i))}

    assert probe_batch(Items()).shape[0] == 30            # fewer than 256: the whole split
    assert probe_batch(Items(), n=None).shape[0] == 30
    assert probe_batch(Items(), n=8).shape[0] == 8


def test_monitor_quiet_below_threshold_and_uses_metrics_log(setup, tmp_path, caplog):
    written = []
    sink = SimpleNamespace(write=written.append)
    mon = DriftMonitor({"image": setup.x[:8]}, every_k_steps=1, threshold=1.5, per_block=False)
    with caplog.at_level(logging.WARNING, logger="analysis.drift"):
        mon.on_step_end(_state(setup.model, tmp_path, 1, metrics_log=sink))
    assert not caplog.records and not mon.warnings
    assert len(written) == 1 and "block_cka" not in written[0]
    assert not (tmp_path / DRIFT).exists()


def test_monitor_zero_prompts_embedding_mode(setup, tmp_path):
    # frozen CLIP itself: its last-block stage embedding has no drift at all
    mon = DriftMonitor(setup.x[:12], threshold=0.5, which="embedding")
    rec = mon.check(setup.frozen_model, 0)
    assert rec["stage_drift"][-1] == pytest.approx(0.0, abs=1e-6)
    assert np.allclose(rec["block_drift"], 0.0, atol=1e-6)


def test_monitor_restores_training_mode(setup):
    model = setup.model
    model.train()
    model.visual.eval()
    try:
        DriftMonitor(setup.x[:8]).measure(model)
        assert model.training and not model.visual.training
    finally:
        model.eval()


def test_monitor_rejects_tiny_probe(setup):
    with pytest.raises(ValueError, match="at least 4"):
        DriftMonitor(setup.x[:3])


def test_library_train_monitors_drift_when_configured(tmp_path):
    """The trainer adds the configured callbacks itself (cascade.callbacks entry point), so a run
    started from Python or the dashboard monitors drift as the CLI does."""
    from cascade.run_config import load_run_config
    from cascade.train import train

    repo = Path(__file__).resolve().parents[2]
    cfg = load_run_config(repo / "configs" / "synthetic-tiny.yaml", [
        "data.synthetic.num_samples=60", "train.epochs.warmup=1", "train.epochs.unfreeze=0", "train.epochs.global=0",
        "train.batch_size=16", "train.drift.every_k_steps=2", "train.drift.per_block=false",
        f"run.runs_dir={tmp_path}", "run.name=lib"])
    run = train(cfg, quiet=True)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    drift = [r for r in records if r.get("kind") == "drift"]
    assert [r["global_step"] for r in drift] == [0, 2]
    n_val = len(json.loads((run / "splits.json").read_text())["splits"]["val"]["keys"])
    assert drift[0]["n"] == n_val < 256              # the whole val split: fewer than probe_size images
    assert drift[1]["threshold_on"] == "relative"


def test_drift_config_logs_into_metrics_jsonl(tmp_path):
    """`train.drift.every_k_steps` turns the monitor on through the CLI; records land in metrics.jsonl."""
    import json

    from cascade.cli import main

    repo = Path(__file__).resolve().parents[2]
    rc = main(["train", "--config", str(repo / "configs" / "synthetic-tiny.yaml"), "--quiet",
               "--set", "data.synthetic.num_samples=60", "--set", "train.epochs.warmup=1",
               "--set", "train.epochs.unfreeze=0", "--set", "train.epochs.global=0",
               "--set", "train.batch_size=16", "--set", "train.drift.every_k_steps=1",
               "--set", "train.drift.probe_size=8", "--set", f"run.runs_dir={tmp_path}",
               "--set", "run.name=drift"])
    assert rc == 0
    records = [json.loads(line) for line in (tmp_path / "drift" / "metrics.jsonl").read_text().splitlines()]
    drift = [r for r in records if r.get("kind") == "drift"]
    steps = [r for r in records if r.get("kind") == "step"]
    assert drift and len(drift) >= 2
    assert {r["global_step"] for r in drift} >= {0, 1}
    assert not (tmp_path / "drift" / "drift.jsonl").exists()
    assert steps

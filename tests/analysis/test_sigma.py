"""σ sweeps from cached features equal full forward passes; apply_sigma; NGA curves."""
from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
import torch

from analysis.sigma import (
    HeadSpec,
    SigmaSweeper,
    apply_sigma,
    benchmark_sweep,
    nga_limits,
    nga_weight_curves,
    parse_sigma_grid,
)
from cascade import CascadeConfig, build_model, load_checkpoint, save_checkpoint
from cascade.metrics import CLASSIFICATION_METRICS, DISTRIBUTION_METRICS, EmotionMetrics
from cascade.model import BlockFeatures

CLASSES = ["anger", "disgust", "fear", "joy", "sadness", "surprise"]
METRICS = list(CLASSIFICATION_METRICS) + list(DISTRIBUTION_METRICS)


def perturbed_model(backbone, config, seed=0):
    """A model whose trainable parts moved away from their initialisation (as after training)."""
    model = build_model(backbone, CLASSES, config)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in model.cascade_named_parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model.eval()


def features(model, n=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = model.backbone_info.image_size
    x = torch.randn(n, 3, s, s, generator=g)
    with torch.no_grad():
        bf = model.forward_features(x)
    labels = torch.randint(0, len(CLASSES), (n,), generator=g)
    dists = torch.softmax(torch.randn(n, len(CLASSES), generator=g) * 2, -1)
    return bf, labels, dists


def reference(model, bf, sigmas):
    """The full head in float64 with σ overridden: what the sweep must reproduce."""
    with torch.no_grad():
        return model.forward_head(BlockFeatures(bf.features.double(), bf.block_ids),
                                  sigmas=torch.tensor(sigmas, dtype=torch.float64))


CONFIGS = {
    "b32-4stage": dict(),
    "free-nga": dict(nga="free"),
    "concat": dict(fusion="concat"),
    "fusion-subset": dict(fusion_stages=[2, 4]),
    "mean-pool-own-ln": dict(pooling="mean", layernorm="own"),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_sweep_equals_full_forward(tiny_backbone, name):
    cfg = CascadeConfig.from_preset("b32-4stage", **CONFIGS[name])
    model = perturbed_model(tiny_backbone, cfg)
    bf, labels, dists = features(model)
    sweeper = SigmaSweeper(bf, model, labels=labels, dists=dists, stage_metrics="all")
    s_n = model.num_stages
    learned = model.sigma().tolist()
    configs = [[0.05, 0.5, 3.0, 40.0], [1.0] * s_n, [7.0] * s_n, [0.2] * s_n]
    # one stage varied at a time, the others held at the learned σ
    for stage in range(s_n):
        for v in (0.1, 0.7, 2.5, 25.0):
            c = list(learned)
            c[stage] = v
            configs.append(c)
    fused, stages = sweeper.logits(np.array(configs))
    for i, sig in enumerate(configs):
        ref = reference(model, bf, sig)
        assert torch.allclose(fused[i], ref.logits, atol=1e-6, rtol=0), sig
        assert torch.allclose(stages[i], ref.stage_logits, atol=1e-6, rtol=0), sig
    # the float32 forward agrees to float32 rounding
    with torch.no_grad():
        ref32 = model.forward_head(bf, sigmas=torch.tensor(configs[0]))
    assert torch.allclose(fused[0].float(), ref32.logits, atol=1e-4)


def test_metrics_equal_emotion_metrics(tiny_backbone):
    model = perturbed_model(tiny_backbone, CascadeConfig.from_preset("b32-4stage"))
    bf, labels, dists = features(model, n=40, seed=1)
    sweeper = SigmaSweeper(bf, model, labels=labels, dists=dists, stage_metrics="all")
    for sig in ([0.3, 1.0, 2.0, 5.0], [4.0] * 4):
        got = sweeper.evaluate(sig, details=True)
        ref = reference(model, bf, sig)
        m = EmotionMetrics(len(CLASSES))
        m.update(ref.logits, labels, dists)
        want = m.compute()
        for k in METRICS:
            assert got[k] == pytest.approx(want[k], abs=1e-9), k
        assert got["confusion"] == m.confusion()
        for s in range(4):
            ms = EmotionMetrics(len(CLASSES))
            ms.update(ref.stage_logits[s], labels, dists)
            ws = ms.compute()
            for k in METRICS:
                assert got[f"stage{s + 1}.{k}"] == pytest.approx(ws[k], abs=1e-9), (s, k)
        assert got["sigma"] == pytest.approx(sig)


def test_without_distributions_gives_nan(tiny_backbone):
    model = perturbed_model(tiny_backbone, CascadeConfig.from_preset("b32-4stage"))
    bf, labels, _ = features(model, n=12)
    out = SigmaSweeper(bf, model, labels=labels).evaluate([1.0] * 4)
    assert 0.0 <= out["accuracy"] <= 1.0
    assert math.isnan(out["kl"])


def test_sweep_frames(tiny_backbone):
    model = perturbed_model(tiny_backbone, CascadeConfig.from_preset("b32-4stage"))
    bf, labels, dists = features(model)
    sweeper = SigmaSweeper(bf, model, labels=labels, dists=dists)
    grid = parse_sigma_grid("0.1:10:7")
    learned = model.sigma().tolist()

    one = sweeper.sweep(grid, stage=2)
    assert len(one) == 7 and set(one["stage"]) == {2}
    assert np.allclose(one["sigma_2"], grid)
    for s in (1, 3, 4):
        assert np.allclose(one[f"sigma_{s}"], learned[s - 1], rtol=1e-6)
    for _, row in one.iterrows():
        single = sweeper.evaluate([row[f"sigma_{s}"] for s in range(1, 5)])
        assert row["accuracy"] == pytest.approx(single["accuracy"])
        assert row["kl"] == pytest.approx(single["kl"], abs=1e-12)

    joint = sweeper.sweep(grid)
    assert set(joint["stage"]) == {"joint"}
    assert np.allclose(joint[["sigma_1", "sigma_2", "sigma_3", "sigma_4"]].to_numpy(), grid[:, None])

    full = SigmaSweeper(bf, model, labels=labels, dists=dists, stage_metrics="all").sweep(grid, stage=3)
    for _, row in full.iloc[[0, 4]].iterrows():
        ref = SigmaSweeper(bf, model, labels=labels, dists=dists, stage_metrics="all").evaluate(
            [row[f"sigma_{s}"] for s in range(1, 5)])
        for key in ("stage1.kl", "stage3.macro_f1", "stage3.clark", "stage4.accuracy", "canberra"):
            assert row[key] == pytest.approx(ref[key], abs=1e-12), key

    both = sweeper.sweep_all(grid)
    assert len(both) == 7 * 5
    assert list(dict.fromkeys(both["stage"])) == [1, 2, 3, 4, "joint"]
    assert "stage3.accuracy" in both.columns

    assert sweeper.evaluate()["accuracy"] == sweeper.evaluate(learned)["accuracy"]
    with pytest.raises(ValueError, match="1-based"):
        sweeper.sweep(grid, stage=0)
    with pytest.raises(ValueError, match="4 values"):
        sweeper.evaluate([1.0, 2.0])
    with pytest.raises(ValueError, match="> 0"):
        sweeper.evaluate([1.0, -2.0, 1.0, 1.0])


def test_headspec_matches_model(tiny_backbone):
    model = perturbed_model(tiny_backbone, CascadeConfig.from_preset("b32-4stage"))
    bf, labels, dists = features(model)
    a = SigmaSweeper(bf, model, labels=labels, dists=dists).logits([0.5, 1, 2, 3])
    b = SigmaSweeper(bf.features, HeadSpec.from_model(model), labels=labels, dists=dists).logits([0.5, 1, 2, 3])
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_parse_sigma_grid():
    g = parse_sigma_grid("0.1:10:3")
    assert np.allclose(g, [0.1, 1.0, 10.0])
    assert np.allclose(parse_sigma_grid("0.5, 1,2"), [0.5, 1.0, 2.0])
    assert np.allclose(parse_sigma_grid([1, 2]), [1.0, 2.0])
    for bad in ("0:1:5", "1:2", "a:b:c", "1,-1", "", "1:10:0"):
        with pytest.raises(ValueError):
            parse_sigma_grid(bad)


def test_nga_weight_curves_and_limits():
    stages = [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11], [12]]
    df = nga_weight_curves(stages, [0.01, 1.0, 100.0, [0.5, 1, 2, 3]])
    assert set(df.columns) >= {"stage", "curve", "sigma", "block", "weight"}
    sums = df.groupby(["curve", "stage"])["weight"].sum()
    assert np.allclose(sums, 1.0)
    small = df[(df["sigma"] == 0.01) & (df["stage"] == 1)].sort_values("block")["weight"].to_numpy()
    assert np.allclose(small, [0, 0, 0, 1], atol=1e-12)
    big = df[(df["sigma"] == 100.0) & (df["stage"] == 3)]["weight"].to_numpy()
    assert np.allclose(big, 1 / 3, atol=1e-3)
    lim = nga_limits(stages)
    assert set(lim["curve"]) == {"σ→0: last block", "σ→∞: mean"}
    assert np.allclose(lim.groupby(["curve", "stage"])["weight"].sum(), 1.0)
    with pytest.raises(ValueError):
        nga_weight_curves(stages, [[1.0, 2.0]])


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_apply_sigma(tiny_backbone, tmp_path):
    model = perturbed_model(tiny_backbone, CascadeConfig.from_preset("b32-4stage"))
    src = save_checkpoint(model, tmp_path / "best.safetensors")
    before = (_sha(src), _sha(src.with_suffix(".json")))
    chosen = [0.3, 2.0, 5.0, 1.5]
    out = apply_sigma(src, chosen, tmp_path / "tuned" / "sigma.safetensors")
    assert (_sha(src), _sha(src.with_suffix(".json"))) == before
    assert out.is_file() and out.with_suffix(".json").is_file()

    tuned = load_checkpoint(out, backbone=tiny_backbone)
    reference_model = load_checkpoint(src, backbone=tiny_backbone)
    reference_model.set_sigma(chosen)
    assert torch.equal(tuned.nga.log_sigma, reference_model.nga.log_sigma)
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(tuned(x).logits, reference_model(x).logits)
    import json

    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["sigma"] == pytest.approx(chosen, rel=1e-6)
    assert meta["extra"]["sigma_applied"]["from_sha256"] == before[0]

    with pytest.raises(ValueError, match="overwrite"):
        apply_sigma(src, chosen, src)
    with pytest.raises(ValueError, match="4 values"):
        apply_sigma(src, [1.0, 2.0], tmp_path / "x.safetensors")
    one = apply_sigma(src, 2.0, tmp_path / "all2.safetensors")   # a scalar sets every stage
    assert json.loads(one.with_suffix(".json").read_text())["sigma"] == pytest.approx([2.0] * 4)


def test_benchmark_sweep_small():
    out = benchmark_sweep(n=64, num_sigmas=4, width=32, embed_dim=16, repeats=1)
    assert out["num_evaluations"] == 4 * 4
    assert out["sweep_seconds"] > 0 and out["evaluate_ms"] > 0 and out["setup_seconds"] > 0


def test_sigma_tuned_on_test_is_refused_unless_confirmed_and_recorded(tiny_backbone, tmp_path):
    """A σ chosen on test makes a model selected on test data: refused, or saved marked."""
    import json as _json

    from cascade.dashboard.runs import checkpoint_choices, list_runs, summarize_run

    run = tmp_path / "runs" / "r"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("method: cascade\n")
    model = perturbed_model(tiny_backbone, CascadeConfig.from_preset("b32-4stage"))
    src = save_checkpoint(model, run / "checkpoints" / "best.safetensors")
    with pytest.raises(ValueError, match="test split"):
        apply_sigma(src, 2.0, run / "checkpoints" / "t.safetensors", tuned_on="test")
    assert not (run / "checkpoints" / "t.safetensors").exists()
    val = apply_sigma(src, 2.0, run / "checkpoints" / "v.safetensors", tuned_on="val")
    test = apply_sigma(src, 2.0, run / "checkpoints" / "t.safetensors", tuned_on="test", allow_test=True)
    assert _json.loads(val.with_suffix(".json").read_text())["sigma_tuned_on"] == "val"
    assert _json.loads(test.with_suffix(".json").read_text())["sigma_tuned_on"] == "test"
    summary = summarize_run(run)
    assert summary.tuned_on_test == ["t"] and "σ tuned on TEST: t" in summary.row()["flags"]
    labels = [label for label, _ in checkpoint_choices(list_runs(tmp_path / "runs"))]
    # the hand-made run has no state.json, so its checkpoints are labelled as of a partial run
    assert "r · t (σ tuned on TEST) — state unknown: partial" in labels
    assert "r · v — state unknown: partial" in labels

"""The plain-Python side of the dashboard's paper kit: form fields, progress, run states, Inspect's
ground truth, ablation jobs."""
from __future__ import annotations

import json
import time

import pytest

from cascade.runfolder import format_duration, read_ablation_progress, read_progress
from cascade.dashboard.runs import list_runs
from cascade.dashboard.trainform import FIELD_HELP, visible_fields

from .conftest import png_bytes


# ---- the Train form ------------------------------------------------------------------------------
def test_every_field_has_help_and_only_applicable_fields_show():
    everything = set().union(*(visible_fields(m, p, d) for m in ("cascade", "nga-no-cascade", "shallow")
                               for p in ("b32-4stage", "custom") for d in ("synthetic", "emotion6")))
    assert everything <= set(FIELD_HELP) and all(len(FIELD_HELP[f]) > 20 for f in everything)
    for f in ("sigma_init", "lambda_dist", "alpha", "lr_prompts", "lr_nga", "lr_fusion"):
        assert f in everything, f
    cascade = visible_fields("cascade", "b32-4stage", "synthetic")
    assert {"sigma_init", "lr_nga", "lr_fusion", "prompt_tokens", "synthetic_size"} <= cascade
    assert not {"custom_stages", "data_path"} & cascade
    assert "custom_stages" in visible_fields("cascade", "custom", "synthetic")
    assert "data_path" in visible_fields("cascade", "b32-4stage", "imagefolder")
    # one-block stages only (shallow preset, or a custom string of single blocks): σ means nothing
    assert "sigma_init" not in visible_fields("cascade", "shallow", "synthetic")
    assert "sigma_init" not in visible_fields("cascade", "custom", "synthetic", custom="11,12")
    assert "sigma_init" not in visible_fields("cascade-no-nga", "b32-4stage", "synthetic")
    assert "lr_fusion" not in visible_fields("nga-no-cascade", "b32-4stage", "synthetic")
    zs = visible_fields("zeroshot", "b32-4stage", "synthetic")
    assert not {"lambda_dist", "epochs_warmup", "lr_prompts", "preset", "sigma_init"} & zs
    assert "preset" not in visible_fields("shallow", "b32-4stage", "synthetic")


# ---- progress ----------------------------------------------------------------------------------------
def _log(d, records):
    d.mkdir(parents=True, exist_ok=True)
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return d


def _steps(start, n, t0, per_step=2.0, spe=4, images=10.0):
    return [{"kind": "step", "phase": "warmup", "epoch": 1 + (s - 1) // spe, "step": (s - 1) % spe + 1,
             "global_step": s, "loss": {"total": 1.0}, "lr": {"prompts": 1e-3}, "images_per_s": images + s,
             "time": t0 + per_step * s, "sigma": [1.0, 1.0 + s / 100], "fusion": [0.5, 0.5]}
            for s in range(start, start + n)]


def test_progress_says_validating_with_eta_and_smoothed_speed(tmp_path):
    start = {"kind": "start", "total_steps": 12, "steps_per_epoch": 4, "sizes": {"train": 40, "val": 10}}
    phase = {"kind": "phase", "phase": "warmup", "epoch": 1, "stages": [2], "global_step": 0}
    d = _log(tmp_path / "r", [start, phase, *_steps(1, 4, 1000.0)])
    p = read_progress(d)
    assert p.activity == "validating" and "validating epoch 1" in p.describe()
    # 2 s per step of 10 images; no validation timed yet: 10 val images at the training pace take 2 s,
    # and 3 passes are to come (epoch 1's... 3's validations are 3, then test and val at the end: 5)
    assert p.eta_seconds == pytest.approx((12 - 4) * 2.0 + 5 * 2.0)
    assert "26 s left" in p.describe()
    assert p.smoothed_images_per_s == pytest.approx(5.0)             # 10 images per 2 s, not the logged 11…14
    assert "stopping" in p.describe(stopping=True) and "left" not in p.describe(stopping=True)
    assert [r["value"] for r in p.sigma if r["stage"] == 2] == pytest.approx([1.01, 1.02, 1.03, 1.04])
    assert p.phases == [{"epoch": 1, "step": 0, "phase": "warmup", "stages": [2]}]
    d = _log(tmp_path / "r", [start, phase, *_steps(1, 5, 1000.0)])
    assert read_progress(d).activity == "training"
    evals = [{"kind": "eval", "split": "val", "epoch": 3, "global_step": 12, "metrics": {"fused": {"accuracy": 0.5}}}]
    d = _log(tmp_path / "r", [start, phase, *_steps(1, 12, 1000.0), *evals])
    assert read_progress(d).activity == "testing"
    assert format_duration(3725) == "1 h 02 min" and format_duration(75) == "1 min 15 s"


def test_eta_and_speed_count_the_validations_and_do_not_jump(tmp_path):
    """A run whose validation takes as long as its 4 training steps: the pace over a window with a
    validation in it gives the true time left, where a rate over training steps alone gave half."""
    start = {"kind": "start", "total_steps": 16, "steps_per_epoch": 4, "sizes": {"train": 40, "val": 10}}
    records, t = [start], 1000.0
    for epoch in range(2):                                   # 2 of 4 epochs done, each 4 s train + 4 s val
        for k in range(1, 5):
            t += 1.0
            s = epoch * 4 + k
            records.append({"kind": "step", "epoch": epoch + 1, "step": k, "global_step": s,
                            "images_per_s": 80.0 if k == 1 else 1115.0, "time": t})
        t += 4.0
        records.append({"kind": "eval", "split": "val", "epoch": epoch + 1, "global_step": s, "time": t,
                        "metrics": {"fused": {"accuracy": 0.5}}})
    p = read_progress(_log(tmp_path / "r", records))
    # left: 8 steps at 1 s, 2 validations at 4 s, then the test and val passes (4 s each)
    assert p.eta_seconds == pytest.approx(8 * 1.0 + 4 * 4.0)
    assert p.smoothed_images_per_s == pytest.approx(7 * 10 / (7 + 4))   # 7 steps of 10 images in 11 wall s
    from cascade.runfolder.pace import Pace
    assert Pace().eta(10, 2) is None


def test_older_logs_without_sigma_or_time(tmp_path):
    d = _log(tmp_path / "old", [{"kind": "start", "total_steps": 4, "steps_per_epoch": 2},
                                {"kind": "step", "epoch": 1, "step": 1, "global_step": 1, "loss": {"total": 1.0}}])
    p = read_progress(d)
    assert p.sigma == [] and p.eta_seconds is None and p.activity == "training"


def test_ablation_progress(tmp_path):
    runs = tmp_path / "abl" / "runs"
    for name, done in (("zeroshot-seed0", True), ("cascade-seed0", False)):
        (runs / name).mkdir(parents=True)
        if done:
            (runs / name / "eval.json").write_text("{}")
        time.sleep(0.01)
    prog = read_ablation_progress(tmp_path / "abl", ["zeroshot", "cascade"], 2)
    assert prog.total == 4 and prog.finished == ["zeroshot-seed0"] and prog.current == "cascade-seed0"
    assert prog.fraction == pytest.approx(0.25)
    assert "1/4 runs finished" in prog.describe()


# ---- run states and σ tuned on test ------------------------------------------------------------------
def test_runs_table_leads_with_status_data_backbone_and_flags_test_tuning(tmp_path):
    d = tmp_path / "r"
    (d / "checkpoints").mkdir(parents=True)
    (d / "config.yaml").write_text("method: cascade\n")
    fused = {"accuracy": 0.5, "kl": None}
    (d / "eval.json").write_text(json.dumps({"test": {"fused": fused}, "val": {"fused": fused}}))
    for name, tuned in (("best", None), ("sigma-x", "test"), ("sigma-y", "val")):
        (d / "checkpoints" / f"{name}.safetensors").write_bytes(b"")
        meta = {"extra": {}} if tuned is None else {"sigma_tuned_on": tuned}
        (d / "checkpoints" / f"{name}.json").write_text(json.dumps(meta))
    run = list_runs(tmp_path)[0]
    assert run.tuned_on_test == ["sigma-x"]
    row = run.row()
    keys = list(row)
    assert keys[:5] == ["run", "status", "data", "backbone", "test accuracy"]
    assert row["test checkpoint"].startswith("best, selected on val")
    assert row["status"].startswith("finished") and row["flags"] == "σ tuned on TEST: sigma-x"
    assert row["test kl"] is None                          # label-only data: shown as n/a, never 0


# ---- Inspect -----------------------------------------------------------------------------------------
def test_upload_from_the_data_set_finds_its_ground_truth(tmp_path):
    from cascade.dashboard.inspect import content_index, ground_truth, prediction_rows
    from cascade.data import DataConfig, load_index

    root = tmp_path / "folder"
    for label, colour in (("joy", (250, 200, 40)), ("sadness", (30, 40, 200))):
        (root / label).mkdir(parents=True)
        (root / label / "a.png").write_bytes(png_bytes(colour))
    index = load_index(DataConfig(format="imagefolder", root=str(root)))
    lookup = content_index(index)
    assert len(lookup) == 2
    truth = ground_truth(index, lookup, (root / "sadness" / "a.png").read_bytes())
    assert truth["label"] == "sadness" and truth["key"].endswith("sadness/a.png")
    assert truth["distribution"] == [0.0, 1.0] and truth["has_distribution"] is False
    assert ground_truth(index, lookup, png_bytes((1, 2, 3))) is None

    import numpy as np

    from cascade.dashboard.inspect import ImagePrediction
    pred = ImagePrediction("x.png", ["joy", "sadness"], np.array([0.3, 0.7]), np.array([[0.4, 0.6]]), [[12]],
                           [np.array([1.0])], np.array([1.0]), np.array([1.0]), 0.01)
    rows = prediction_rows([pred], [truth])
    assert rows[0]["predicted"] == "sadness" and rows[0]["true_label"] == "sadness"
    assert rows[0]["p_joy"] == pytest.approx(0.3) and rows[0]["stage1_p_sadness"] == pytest.approx(0.6)


def test_exported_predictions_say_what_produced_them(tmp_path):
    from types import SimpleNamespace

    import numpy as np

    from cascade.dashboard.inspect import ImagePrediction, prediction_provenance, prediction_rows
    pred = ImagePrediction("x.png", ["joy", "sadness"], np.array([0.3, 0.7]), np.array([[0.4, 0.6]]), [[12]],
                           [np.array([1.0])], np.array([1.0]), np.array([1.0]), 0.01)
    random = SimpleNamespace(backbone_info=SimpleNamespace(name="cascade-tiny", pretrained=None, random_weights=True))
    ckpt = tmp_path / "runs" / "run-a" / "checkpoints" / "best.safetensors"
    prov = prediction_provenance(random, ckpt)
    assert prov == {"run": "run-a", "checkpoint": "best", "source": str(ckpt), "backbone": "cascade-tiny",
                    "weights": "random", "random_weights": True}
    row = prediction_rows([pred], None, prov)[0]
    assert list(row)[:6] == ["run", "checkpoint", "source", "backbone", "weights", "random_weights"]
    assert row["random_weights"] is True and row["predicted"] == "sadness"
    clip = SimpleNamespace(backbone_info=SimpleNamespace(name="ViT-B-32", pretrained="openai", random_weights=False))
    prov = prediction_provenance(clip, None, "Zero-shot CLIP")
    assert (prov["run"], prov["checkpoint"], prov["source"], prov["weights"], prov["random_weights"]) == \
        (None, None, "Zero-shot CLIP", "openai", False)


# ---- an ablation started from the dashboard ----------------------------------------------------------------
@pytest.mark.slow
def test_ablation_job_runs_in_the_background(tmp_path, dashboard_env):
    from cascade.dashboard.jobs import JobError, JobRegistry

    from .conftest import tiny_run_config

    reg = JobRegistry()
    base = tiny_run_config(tmp_path, "base", num_samples=36)
    job = reg.start_ablation(base, tmp_path, "ablate-ui", ["zeroshot"], 2)
    assert job.kind == "ablation" and job.plan == {"methods": ["zeroshot"], "seeds": 2}
    with pytest.raises(JobError, match="already"):
        reg.start_ablation(base, tmp_path, "ablate-ui", ["zeroshot"], 1)
    assert reg.wait("ablate-ui", timeout=240) == "finished", job.log_tail(30)
    out = tmp_path / "ablate-ui"
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [(r["method"], r["seed"]) for r in rows] == [("zeroshot", 0), ("zeroshot", 1)]
    assert (out / "ablate.log").is_file() and not (out / "train.log").exists()
    assert read_ablation_progress(out, ["zeroshot"], 2).fraction == 1.0
    assert [r.name for r in list_runs(tmp_path)] == []      # an ablation folder is not listed as a run

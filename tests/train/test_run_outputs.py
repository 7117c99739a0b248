"""What a run folder holds besides the metrics: per-image predictions, TensorBoard events,
per-epoch checkpoints."""
import csv
import json

import pytest

from cascade.train import train
from cascade.train.tensorboard import scalars_of

from .helpers import tiny_config


def read_rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def event_tags(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return acc


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    cfg = tiny_config(runs, "run.name=outputs", "train.keep_epoch_checkpoints=true", "train.log_every_steps=2",
                      "train.drift.every_k_steps=4", "train.drift.probe_size=8", "train.epochs.unfreeze=0")
    return train(cfg, quiet=True)


def test_predictions_csv_per_split_match_eval_json(small_run):
    report = json.loads((small_run / "eval.json").read_text())
    classes = report["classnames"]
    for split in ("val", "test"):
        rows = read_rows(small_run / f"predictions-{split}.csv")
        assert list(rows[0]) == ["path", "label", "predicted", *(f"p_{c}" for c in classes)]
        assert len(rows) == report["sizes"][split]
        assert len({r["path"] for r in rows}) == len(rows)
        for r in rows:
            probs = [float(r[f"p_{c}"]) for c in classes]
            assert sum(probs) == pytest.approx(1.0, abs=1e-4)
            assert r["predicted"] == classes[probs.index(max(probs))]
            assert r["label"] in classes
        accuracy = sum(r["label"] == r["predicted"] for r in rows) / len(rows)
        # the file holds the val-selected checkpoint's predictions: the same accuracy eval.json reports
        assert accuracy == pytest.approx(report[split]["fused"]["accuracy"], abs=1e-9), split


def test_tensorboard_events_mirror_the_metrics_log(small_run):
    acc = event_tags(small_run)
    tags = set(acc.Tags()["scalars"])
    for tag in ("loss/total", "lr/prompts", "throughput/images_per_s", "val/accuracy", "val/kl", "test/accuracy",
                "val/stage4_accuracy", "drift/stage1", "drift_relative/stage1", "drift_block/block12",
                "sigma/stage1", "fusion/stage4"):
        assert tag in tags, sorted(tags)
    records = [json.loads(x) for x in (small_run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["kind"] == "step"]
    logged = acc.Scalars("loss/total")
    assert [e.step for e in logged] == [r["global_step"] for r in steps]
    assert [e.value for e in logged] == pytest.approx([r["loss"]["total"] for r in steps], rel=1e-6)
    logged_sigma = {e.step: e.value for e in acc.Scalars("sigma/stage1")}   # eval records repeat σ at their step
    assert [logged_sigma[r["global_step"]] for r in steps] == pytest.approx([r["sigma"][0] for r in steps], rel=1e-6)
    test = next(r for r in records if r["kind"] == "test")
    assert acc.Scalars("test/accuracy")[-1].value == pytest.approx(test["metrics"]["fused"]["accuracy"])


def test_epoch_checkpoints_are_kept(small_run):
    kept = sorted(p.name for p in (small_run / "checkpoints").glob("epoch-*.safetensors"))
    assert kept == ["epoch-1.safetensors", "epoch-2.safetensors"]
    meta = json.loads((small_run / "checkpoints" / "epoch-1.json").read_text())
    assert meta["extra"]["epoch"] == 1 and meta["extra"]["global_step"] > 0


def test_scalars_of_reads_sigma_lambda_drift_and_skips_nulls():
    step = {"kind": "step", "global_step": 7, "loss": {"total": 1.5, "kl": None}, "lr": {"nga": 1e-3},
            "sigma": [0.9, 1.2], "fusion": [0.25, 0.75], "images_per_s": 10.0, "data_wait": 0.25}
    assert scalars_of(step) == {"loss/total": 1.5, "lr/nga": 1e-3, "sigma/stage1": 0.9, "sigma/stage2": 1.2,
                                "fusion/stage1": 0.25, "fusion/stage2": 0.75, "throughput/images_per_s": 10.0,
                                "throughput/data_wait": 0.25}
    label_only = {"kind": "eval", "split": "val", "metrics": {"fused": {"accuracy": 0.5, "kl": None,
                                                                        "cosine": float("nan")}, "stages": []}}
    assert scalars_of(label_only) == {"val/accuracy": 0.5}
    drift = {"kind": "drift", "stage_drift": [0.1, 0.2], "stage_drift_relative": [0.0, 0.05], "blocks": [4, 12],
             "block_drift": [0.3, None]}
    assert scalars_of(drift) == {"drift/stage1": 0.1, "drift/stage2": 0.2, "drift_relative/stage1": 0.0,
                                 "drift_relative/stage2": 0.05, "drift_block/block4": 0.3}
    assert scalars_of({"kind": "phase"}) == {}


def test_linear_probe_writes_predictions_too(tmp_path):
    run = train(tiny_config(tmp_path, "method=linear-probe", "run.name=probe", "train.tensorboard=false"),
                quiet=True)
    report = json.loads((run / "eval.json").read_text())
    rows = read_rows(run / "predictions-test.csv")
    assert len(rows) == report["sizes"]["test"]
    accuracy = sum(r["label"] == r["predicted"] for r in rows) / len(rows)
    assert accuracy == pytest.approx(report["test"]["fused"]["accuracy"])
    assert not list(run.glob("events.out.tfevents.*"))   # train.tensorboard: false writes none

"""The shipped synthetic-tiny config end to end through the CLI: train → eval → predict."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cascade.cli import main

from support.threads import one_thread

REPO = Path(__file__).resolve().parents[2]
TINY_YAML = REPO / "configs" / "synthetic-tiny.yaml"
CHANCE = 1 / 6


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    t0 = time.perf_counter()
    with one_thread():
        rc = main(["train", "--config", str(TINY_YAML), "--set", f"run.runs_dir={runs}", "--quiet"])
    assert rc == 0
    path = runs / "synthetic-tiny"
    return {"path": path, "seconds": time.perf_counter() - t0,
            "eval": json.loads((path / "eval.json").read_text())}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from cascade.data import DataConfig, load_index

    d = tmp_path_factory.mktemp("images")
    index = load_index(DataConfig(format="synthetic", synthetic={"num_samples": 12}))
    paths = []
    for i in range(3):
        p = d / f"face{i}.png"
        index.load_image(i).save(p)
        paths.append(p)
    bad = d / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff not really a jpeg")
    return {"good": paths, "bad": bad, "labels": [index.records[i].label for i in range(3)],
            "classnames": index.classnames}


@pytest.mark.slow
def test_shipped_tiny_config_learns(run):
    ev = run["eval"]
    assert ev["random_weights"] is True and "RANDOM" in ev["warning"]
    assert ev["val"]["fused"]["accuracy"] > CHANCE + 0.4, ev["val"]["fused"]
    assert ev["test"]["fused"]["accuracy"] > CHANCE + 0.3, ev["test"]["fused"]
    assert run["seconds"] < 120
    print(f"synthetic-tiny: {run['seconds']:.1f}s, val acc {ev['val']['fused']['accuracy']:.3f}, "
          f"test acc {ev['test']['fused']['accuracy']:.3f}")


@pytest.mark.slow
def test_run_folder_is_complete(run):
    p = run["path"]
    for name in ["config.yaml", "splits.json", "data_report.json", "metrics.jsonl", "eval.json", "env.json",
                 "checkpoints/best.safetensors", "checkpoints/best.json", "checkpoints/last.safetensors",
                 "checkpoints/last.json", "checkpoints/last.train.safetensors", "checkpoints/last.train.json"]:
        assert (p / name).is_file(), name
    assert not list(p.rglob("*.tmp"))
    from cascade.run_config import load_run_config
    cfg = load_run_config(p / "config.yaml")
    assert cfg.backbone.model_name == "cascade-tiny" and cfg.backbone.pretrained is None
    records = [json.loads(line) for line in (p / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["kind"] == "step"]
    evals = [r for r in records if r["kind"] == "eval"]
    assert steps and len(evals) == cfg.train.total_epochs
    s = steps[0]
    assert {"phase", "epoch", "step", "global_step", "lr", "loss", "images_per_s"} <= set(s)
    assert {"prompts", "nga", "fusion", "heads", "classifier"} <= set(s["lr"])
    assert {"ce", "dist_kl", "consistency", "total"} <= set(s["loss"])
    assert [r["phase"] for r in records if r["kind"] == "phase"] == ["warmup", "unfreeze", "global", "global"]
    e = evals[-1]["metrics"]
    assert {"accuracy", "macro_f1", "uar", "kl", "chebyshev", "clark", "canberra", "cosine", "intersection"} \
        <= set(e["fused"])
    assert len(e["stages"]) == 4 and "accuracy" in e["stages"][0]
    env = json.loads((p / "env.json").read_text())
    assert env["device"] == "cpu" and "torch" in env["versions"]
    best = json.loads((p / "checkpoints" / "best.json").read_text())
    assert best["extra"]["best_epoch"] == run["eval"]["best_epoch"]


@pytest.mark.slow
def test_eval_in_process_matches_training_report(run, capsys):
    capsys.readouterr()
    assert main(["eval", "--run", str(run["path"]), "--quiet"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["random_weights"] is True and "warning" in out
    assert out["metrics"]["fused"] == pytest.approx(run["eval"]["test"]["fused"], abs=1e-9)
    assert (run["path"] / "eval-test-best.json").is_file()


@pytest.mark.slow
def test_eval_subprocess(run):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "cascade", "eval", "--run", str(run["path"]), "--split", "val",
                           "--checkpoint", "last", "--quiet"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["split"] == "val" and out["checkpoint"] == "last"
    assert out["metrics"]["num_samples"] == run["eval"]["sizes"]["val"]


@pytest.mark.slow
def test_predict_json_reports_bad_images_and_keeps_going(run, images, capsys):
    capsys.readouterr()
    good = [str(p) for p in images["good"]]
    rc = main(["predict", "--run", str(run["path"]), good[0], str(images["bad"]), good[1], "--json"])
    captured = capsys.readouterr()
    assert rc == 1
    assert "broken.jpg" in captured.err
    out = json.loads(captured.out)
    assert out["random_weights"] is True and "warning" in out
    results = out["results"]
    assert [r["ok"] for r in results] == [True, False, True]
    assert "broken.jpg" in results[1]["error"]
    r = results[0]
    assert set(r["fused"]) == set(images["classnames"]) and abs(sum(r["fused"].values()) - 1) < 1e-5
    assert len(r["stages"]) == 4 and r["prediction"] in images["classnames"]


@pytest.mark.slow
def test_predict_table_and_library(run, images, capsys):
    from PIL import Image

    from cascade.predict import load_predictor, predict_images

    capsys.readouterr()
    assert main(["predict", "--run", str(run["path"]), str(images["good"][0])]) == 0
    table = capsys.readouterr().out
    assert "fused" in table and "stage 4" in table and "RANDOM" in table
    pred = load_predictor(run["path"])
    pil = Image.open(images["good"][2])
    res = predict_images(pred.model, pred.preprocess, [images["good"][2], ("upload.png", pil), pil])
    assert [r["image"] for r in res][:2] == [str(images["good"][2]), "upload.png"]
    assert res[0]["fused"] == pytest.approx(res[1]["fused"], abs=1e-6)


def test_predict_zero_shot_random_model(images, capsys):
    capsys.readouterr()
    rc = main(["predict", "--model", "cascade-tiny", "--pretrained", "none", "--classes", "joy,sadness",
               str(images["good"][0]), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["random_weights"] is True and out["classnames"] == ["joy", "sadness"]
    assert len(out["results"][0]["stages"]) == 1


def test_train_cli_config_errors(tmp_path, capsys):
    capsys.readouterr()
    assert main(["train", "--config", str(TINY_YAML), "--set", "train.lr.prompts=fast"]) == 2
    err = capsys.readouterr().err
    assert "train.lr.prompts" in err and "Traceback" not in err
    assert main(["train", "--config", str(TINY_YAML), "--set", "train.nope=1"]) == 2
    assert "train.nope" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path), "--config", str(TINY_YAML)]) == 2
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err
    assert main(["train"]) == 2


@pytest.mark.slow
def test_train_refuses_to_overwrite_a_run(run, capsys):
    capsys.readouterr()
    rc = main(["train", "--config", str(TINY_YAML), "--run-dir", str(run["path"]), "--quiet"])
    assert rc == 2
    assert "already holds a run" in capsys.readouterr().err

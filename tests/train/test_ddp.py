"""Two CPU processes under torchrun (gloo) give the metrics of one process."""
import json
import os
import subprocess
import sys

import pytest

from cascade.evaluate import evaluate_run
from cascade.train import train

from .helpers import REPO, SMALL, TINY_YAML, tiny_config

ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def torchrun(*args, timeout=400):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "cascade", *args]
    return subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    # 84 training items, batch 16: the last batch has 4 items (2 per rank) — uneven batches included
    overrides = ["train.log_every_steps=1", "run.name=ddp"]
    proc = torchrun("train", "--config", str(TINY_YAML), *[a for o in SMALL + overrides for a in ("--set", o)],
                    "--set", f"run.runs_dir={tmp_path}", "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines() == [str(tmp_path / "ddp")]  # only rank 0 reports
    single = train(tiny_config(tmp_path, "train.log_every_steps=1", "run.name=single"), quiet=True)
    ddp = tmp_path / "ddp"
    a, b = json.loads((single / "eval.json").read_text()), json.loads((ddp / "eval.json").read_text())
    assert a["best_epoch"] == b["best_epoch"]
    for split in ("val", "test"):
        assert a[split]["num_samples"] == b[split]["num_samples"]
        for k, v in a[split]["fused"].items():
            assert b[split]["fused"][k] == pytest.approx(v, abs=1e-5), (split, k)
    # every step's loss is the global-batch mean, as in one process
    steps = lambda p: [r["loss"]["total"] for r in map(json.loads, (p / "metrics.jsonl").read_text().splitlines())  # noqa: E731
                       if r["kind"] == "step"]
    assert steps(ddp) == pytest.approx(steps(single), abs=1e-5)
    env = json.loads((ddp / "env.json").read_text())
    assert env["world_size"] == 2
    # per-image predictions: every rank's shard gathered, in dataset order, as one process writes them
    for split in ("val", "test"):
        one_rows = (single / f"predictions-{split}.csv").read_text().splitlines()
        two_rows = (ddp / f"predictions-{split}.csv").read_text().splitlines()
        assert len(two_rows) == a[split]["num_samples"] + 1
        assert [r.split(",")[:3] for r in two_rows] == [r.split(",")[:3] for r in one_rows]
        for x, y in zip(one_rows[1:], two_rows[1:]):
            assert [float(v) for v in y.split(",")[3:]] == pytest.approx([float(v) for v in x.split(",")[3:]],
                                                                          abs=1e-4)

    # evaluation of one checkpoint: sharded over 2 ranks == 1 process
    proc = torchrun("eval", "--run-dir", str(ddp), "--split", "test", "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = json.loads(proc.stdout)
    one = evaluate_run(ddp, "test", write=False)
    assert two["metrics"]["num_samples"] == one["metrics"]["num_samples"]
    assert two["metrics"]["confusion"] == one["metrics"]["confusion"]
    for k, v in one["metrics"]["fused"].items():
        assert two["metrics"]["fused"][k] == pytest.approx(v, abs=1e-6), k


@pytest.mark.slow
def test_device_input_pipeline_under_two_processes_matches_one(tmp_path):
    """Augmented on each rank from one store (rank 0 decodes to the run's cache/, both map it):
    every image gets the same crop, flip and jitter whichever rank trains on it."""
    overrides = ["train.log_every_steps=1", "train.augment=true", "train.cache_prefix=false",
                 "train.input_pipeline=device", "train.epochs.unfreeze=0", "run.name=ddp-device"]
    proc = torchrun("train", "--config", str(TINY_YAML), *[a for o in SMALL + overrides for a in ("--set", o)],
                    "--set", f"run.runs_dir={tmp_path}", "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    single = train(tiny_config(tmp_path, *overrides[:-1], "run.name=single"), quiet=True)
    ddp = tmp_path / "ddp-device"
    records = [json.loads(x) for x in (ddp / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["input_pipeline"]["kind"] == "device"
    steps = lambda p: [r["loss"]["total"] for r in map(json.loads, (p / "metrics.jsonl").read_text().splitlines())  # noqa: E731
                       if r["kind"] == "step"]
    assert steps(ddp) == pytest.approx(steps(single), abs=1e-5)
    assert not list((ddp / "cache").glob("*.u8"))          # the shared store is removed at the end

"""Resume equivalence and the non-finite guard."""
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file

from cascade.train import NonFiniteLossError, train
from cascade.runfolder import MetricsLog

from .helpers import REPO, CrashAt, read_jsonl, tiny_config

STEPS = ["train.save_every_steps=2", "train.log_every_steps=1"]


def _strip(records):
    for r in records:
        r.pop("images_per_s", None)
        r.pop("data_wait", None)
        r.pop("time", None)
    return records


def _same_tensors(a, b):
    ta, tb = load_file(str(a)), load_file(str(b))
    return ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    from support.threads import one_thread

    with one_thread():
        return train(tiny_config(tmp_path_factory.mktemp("ref"), *STEPS, "run.name=ref"), quiet=True)


@pytest.mark.slow
def test_resume_after_injected_failure_matches_uninterrupted_run(tmp_path, reference):
    cfg = tiny_config(tmp_path, *STEPS, "run.name=crash")
    # 120 faces → 84 train → 6 steps/epoch; crash at global step 9 = epoch 2 step 3, last save at step 8
    with pytest.raises(RuntimeError, match="injected failure"):
        train(cfg, callbacks=[CrashAt(9)], quiet=True)
    run = tmp_path / "crash"
    state = json.loads((run / "checkpoints" / "last.train.json").read_text())
    assert (state["epoch"], state["step_in_epoch"], state["global_step"]) == (1, 2, 8)  # mid-epoch, 0-based
    assert not (run / "eval.json").exists()
    path = train(resume=run, quiet=True)
    a, b = json.loads((reference / "eval.json").read_text()), json.loads((path / "eval.json").read_text())
    assert a["val"] == b["val"] and a["test"] == b["test"] and a["best_epoch"] == b["best_epoch"]
    assert _same_tensors(reference / "checkpoints" / "last.safetensors", path / "checkpoints" / "last.safetensors")
    assert _same_tensors(reference / "checkpoints" / "best.safetensors", path / "checkpoints" / "best.safetensors")
    # the log after resume is the log of the uninterrupted run (no duplicated steps)
    assert _strip(read_jsonl(reference / "metrics.jsonl")) == _strip(read_jsonl(path / "metrics.jsonl"))


KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import torch
    torch.set_num_threads(1)
    from cascade.run_config import load_run_config
    from cascade.train import train

    class Kill:
        def on_step_end(self, state):
            if state.global_step == 9:   # the checkpoint of step 8 is on disk
                os.kill(os.getpid(), signal.SIGKILL)

    cfg = load_run_config(sys.argv[1], sys.argv[2:])
    train(cfg, callbacks=[Kill()], quiet=True)
""")


@pytest.mark.slow
def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path, reference):
    from .helpers import SMALL, TINY_YAML

    script = tmp_path / "killme.py"
    script.write_text(KILL_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(script), str(TINY_YAML), *SMALL, *STEPS,
                           f"run.runs_dir={tmp_path}", "run.name=killed"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    run = tmp_path / "killed"
    assert (run / "checkpoints" / "last.train.safetensors").is_file() and not (run / "eval.json").exists()
    # resumed through the real CLI in a fresh process
    proc = subprocess.run([sys.executable, "-m", "cascade", "train", "--resume", str(run), "--quiet"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    a, b = json.loads((reference / "eval.json").read_text()), json.loads((run / "eval.json").read_text())
    for split in ("val", "test"):
        for k, v in a[split]["fused"].items():
            assert b[split]["fused"][k] == pytest.approx(v, abs=1e-6), (split, k)
    assert _same_tensors(reference / "checkpoints" / "best.safetensors", run / "checkpoints" / "best.safetensors")


class PoisonAt:
    def __init__(self, step):
        self.step = step

    def on_step_end(self, state):
        if state.global_step == self.step:
            with torch.no_grad():
                state.model.prompts.params[-1].fill_(float("nan"))


def test_non_finite_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg = tiny_config(tmp_path, *STEPS, "run.name=nan")
    with pytest.raises(NonFiniteLossError) as info:
        train(cfg, callbacks=[PoisonAt(4)], quiet=True)
    msg = str(info.value)
    assert "epoch 1, step 5 (global step 5)" in msg and "ce" in msg and "total" in msg
    assert "last good checkpoint (global step 4)" in msg
    run = tmp_path / "nan"
    state = json.loads((run / "checkpoints" / "last.train.json").read_text())
    assert state["global_step"] == 4
    weights = load_file(str(run / "checkpoints" / "last.safetensors"))
    assert all(bool(torch.isfinite(v).all()) for v in weights.values())
    assert not (run / "eval.json").exists()
    # the log ends at the last finite step
    steps = [r for r in MetricsLog(run / "metrics.jsonl").records() if r["kind"] == "step"]
    assert steps[-1]["global_step"] == 4


def test_huge_learning_rate_is_caught(tmp_path):
    cfg = tiny_config(tmp_path, "run.name=huge", "train.grad_clip=null", "train.schedule=constant",
                      *[f"train.lr.{g}=1e30" for g in ("prompts", "heads", "classifier", "nga", "fusion")])
    with pytest.raises(NonFiniteLossError, match=r"non-finite (loss|gradient norm) at epoch \d+, step \d+|"
                                                 r"parameters became non-finite") as info:
        train(cfg, quiet=True)
    assert "no checkpoint had been written yet" in str(info.value)

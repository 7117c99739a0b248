"""SIGTERM / SIGUSR1: stop after the current step, resumable, the same step on every rank."""
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from cascade.train import train
from cascade.train.signals import EXIT_STOPPED, StopSignals

from .helpers import REPO, SMALL, TINY_YAML, tiny_config

STEPS = ["train.save_every_steps=4", "train.log_every_steps=1"]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}

# Runs the real `cascade train` command; a callback sends the signal to its own process at
# a given global step (on one rank only, under torchrun; rank -1: never), so the stop lands
# on a known step. Plugins installed in the environment take no part.
SIGNAL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import torch
    torch.set_num_threads(1)
    import cascade.plugins
    from cascade.cli import main

    name, step, rank = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

    class SignalAt:
        def on_step_end(self, state):
            if state.global_step == step and state.rank == rank:
                os.kill(os.getpid(), getattr(signal, name))

    cascade.plugins.plugins = lambda group: {}
    cascade.plugins.configured_callbacks = lambda cfg: [SignalAt()]
    sys.exit(main(sys.argv[4:]))
""")


def _sets(*overrides):
    return [a for o in overrides for a in ("--set", o)]


@pytest.fixture(scope="module")
def script(tmp_path_factory):
    path = tmp_path_factory.mktemp("signal") / "signal_at.py"
    path.write_text(SIGNAL_SCRIPT)
    return path


def test_stop_signals_note_the_first_signal_and_restore_handlers():
    before = signal.getsignal(signal.SIGUSR1)
    with StopSignals() as stops:
        assert stops.received is None and stops.reason is None
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGTERM)
        assert stops.received == "SIGUSR1" and stops.reason == "signal SIGUSR1"
    assert signal.getsignal(signal.SIGUSR1) is before


def test_a_handler_installed_by_the_embedding_program_is_kept():
    seen = []
    previous = signal.signal(signal.SIGTERM, lambda *a: seen.append("mine"))
    try:
        with StopSignals() as stops:
            os.kill(os.getpid(), signal.SIGTERM)
        assert seen == ["mine"] and stops.received is None
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.mark.slow
def test_sigterm_stops_resumably_and_resume_reaches_the_uninterrupted_metrics(tmp_path, script):
    from support.threads import one_thread

    with one_thread():
        reference = train(tiny_config(tmp_path, *STEPS, "run.name=ref"), quiet=True)
    # 84 train items, batch 16: 6 steps per epoch; step 9 is epoch 2, step 3 (last save at step 8)
    proc = subprocess.run([sys.executable, str(script), "SIGTERM", "9", "0", "train", "--config", str(TINY_YAML),
                           *_sets(*SMALL, *STEPS, f"run.runs_dir={tmp_path}", "run.name=term"), "--quiet"],
                          cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == EXIT_STOPPED, proc.stderr[-2000:]
    run = tmp_path / "term"
    state = json.loads((run / "state.json").read_text())
    assert state["state"] == "stopped" and state["reason"] == "signal SIGTERM"
    assert (state["epoch"], state["step"], state["global_step"]) == (2, 3, 9)
    resume = json.loads((run / "checkpoints" / "last.train.json").read_text())
    assert resume["global_step"] == 9                       # the step it was taking, not the last periodic save
    assert (run / "checkpoints" / "last.safetensors").is_file()
    assert not (run / "eval.json").exists()                # no test evaluation inside the grace period

    proc = subprocess.run([sys.executable, str(script), "SIGTERM", "0", "-1", "train", "--resume", str(run), "--quiet"],
                          cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((run / "state.json").read_text())["state"] == "finished"
    a, b = json.loads((reference / "eval.json").read_text()), json.loads((run / "eval.json").read_text())
    assert a["best_epoch"] == b["best_epoch"]
    for split in ("val", "test"):
        for k, v in a[split]["fused"].items():
            assert b[split]["fused"][k] == pytest.approx(v, abs=1e-6), (split, k)


@pytest.mark.slow
def test_sigusr1_on_one_rank_stops_both_ranks_at_the_same_step(tmp_path, script):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script),
           "SIGUSR1", "5", "1", "train", "--config", str(TINY_YAML),
           *_sets(*SMALL, *STEPS, f"run.runs_dir={tmp_path}", "run.name=ddp"), "--quiet"]
    proc = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=400)
    assert proc.returncode != 0                            # each rank exits EXIT_STOPPED
    assert f"exitcode  : {EXIT_STOPPED}" in proc.stderr or f"exit code {EXIT_STOPPED}" in proc.stderr, \
        proc.stderr[-3000:]
    run = tmp_path / "ddp"
    state = json.loads((run / "state.json").read_text())  # rank 0 writes it; rank 1 got the signal
    assert state["state"] == "stopped" and state["global_step"] == 5, state
    assert "another process" in state["reason"]
    assert json.loads((run / "checkpoints" / "last.train.json").read_text())["global_step"] == 5
    steps = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert max(r.get("global_step", 0) for r in steps if r["kind"] == "step") == 5

"""``state.json``: how a reader tells a running run from one whose trainer is gone."""
import os
import socket
import subprocess
import sys
import time

from cascade.fileio import write_json
from cascade.runfolder import STATE, RunState, read_run_state
from cascade.runfolder.status import STALE_AFTER_S


def test_killed_runs_are_detected(tmp_path):
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(proc.stdout)
    write_json(tmp_path / STATE, RunState(state="running", pid=dead, host=socket.gethostname(),
                                               heartbeat=time.time(), epoch=2, step=5, steps_per_epoch=8).to_dict())
    st = read_run_state(tmp_path)
    assert st.state == "killed" and "ended without finishing" in st.reason and "epoch 2, step 5/8" in st.label()
    # on another host only the heartbeat tells
    write_json(tmp_path / STATE, RunState(state="running", pid=os.getpid(), host="elsewhere",
                                               heartbeat=time.time() - STALE_AFTER_S - 60).to_dict())
    assert read_run_state(tmp_path).state == "killed"
    write_json(tmp_path / STATE, RunState(state="running", pid=os.getpid(), host="elsewhere",
                                               heartbeat=time.time()).to_dict())
    assert read_run_state(tmp_path).state == "running"


def test_folders_without_a_state_file(tmp_path):
    assert read_run_state(tmp_path).state == "unknown"
    (tmp_path / "eval.json").write_text("{}")
    assert read_run_state(tmp_path).state == "finished"

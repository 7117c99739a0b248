"""The trainer records in the run folder whether a run finished, stopped or failed; partial metrics say so."""
import json
import socket

import pytest

from cascade.dashboard.runs import summarize_run
from cascade.fileio import write_json
from cascade.runfolder import STATE, RunFolder, RunState, read_progress, read_run_state
from cascade.train import train
from cascade.runfolder import PARTIAL_NOTE
from cascade.train.loop import StopTraining

from .helpers import read_jsonl, tiny_config


class StopAt:
    def __init__(self, step: int, reason: str = "asked to stop"):
        self.step, self.reason = step, reason

    def on_step_end(self, state):
        if state.global_step == self.step:
            state.stop_reason = self.reason
            raise StopTraining()


class Boom:
    def on_step_end(self, state):
        if state.global_step == 2:
            raise RuntimeError("disk on fire")


def test_finished_run(tmp_path):
    run = train(tiny_config(tmp_path, "run.name=done"), quiet=True)
    st = read_run_state(run)
    assert st.state == "finished" and not st.partial and st.fraction == 1.0
    ev = json.loads((run / "eval.json").read_text())
    assert ev["state"]["state"] == "finished" and ev["partial"] is False
    assert not any(PARTIAL_NOTE in w for w in ev["warnings"])
    assert read_progress(run).describe().startswith("finished")


def test_stopped_run_is_partial_everywhere(tmp_path, capsys):
    run = train(tiny_config(tmp_path, "run.name=stop"), callbacks=[StopAt(3, "stopped from the dashboard")])
    err = capsys.readouterr().err
    st = read_run_state(run)
    assert (st.state, st.epoch, st.step, st.global_step) == ("stopped", 1, 3, 3)
    assert st.reason == "stopped from the dashboard" and st.partial
    assert "stopped at epoch 1, step 3/" in st.label()
    ev = json.loads((run / "eval.json").read_text())
    assert ev["partial"] is True and ev["state"]["state"] == "stopped"
    assert any(w.startswith(PARTIAL_NOTE) for w in ev["warnings"])
    # no epoch ended, so no checkpoint was selected on val: the test metrics are of the model as it stopped
    assert ev["checkpoint"] == "last" and ev["best_epoch"] is None
    assert "no epoch had ended" in err and "epoch None" not in err
    p = read_progress(run)
    assert p.done and p.partial and p.fraction < 0.5
    assert "stopped at epoch 1" in p.describe() and "partial" in p.describe()
    summary = summarize_run(run)
    assert summary.status == "stopped" and summary.partial and "stopped at epoch 1" in summary.row()["status"]


def test_failed_run_records_why(tmp_path):
    with pytest.raises(RuntimeError, match="disk on fire"):
        train(tiny_config(tmp_path, "run.name=fail"), callbacks=[Boom()], quiet=True)
    st = read_run_state(tmp_path / "fail")
    assert st.state == "failed" and "RuntimeError: disk on fire" in st.reason and st.partial


def test_resume_without_any_checkpoint_restarts_from_the_saved_config(tmp_path):
    run = train(tiny_config(tmp_path, "run.name=early"), callbacks=[StopAt(1)], quiet=True)
    folder = RunFolder(run)
    # a run killed before its first checkpoint: nothing but its config, split and log
    for p in folder.checkpoints.iterdir():
        p.unlink()
    (run / "eval.json").unlink()
    write_json(run / STATE, RunState(state="running", pid=999999999, host=socket.gethostname()).to_dict())
    assert read_run_state(run).state == "killed"
    split_before = (run / "splits.json").read_text()
    out = train(resume=run, quiet=True)
    assert out == run and read_run_state(run).state == "finished"
    assert (run / "splits.json").read_text() == split_before
    kinds = [r["kind"] for r in read_jsonl(run / "metrics.jsonl")]
    assert kinds.count("start") == 1 and kinds[-1] == "test"

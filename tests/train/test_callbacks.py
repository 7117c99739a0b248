"""The callback API the dashboard and the analysis package plug into."""
import json

from cascade.train import StopTraining, train
from cascade.runfolder import RunFolder

from .helpers import read_jsonl, tiny_config


class Recorder:
    def __init__(self, stop_at=None):
        self.stop_at = stop_at
        self.events = []

    def on_train_start(self, state):
        self.events.append(("start", state.global_step))

    def on_step_end(self, state):
        assert state.phase is not None and set(state.loss) >= {"ce", "total"} and state.lr
        assert state.batch is not None and "label" in state.batch
        self.events.append(("step", state.global_step, state.phase.name))
        if self.stop_at is not None and state.global_step == self.stop_at:
            raise StopTraining

    def on_epoch_end(self, state):
        assert state.val_metrics["fused"]["num_samples"] > 0
        self.events.append(("epoch", state.epoch))

    def on_train_end(self, state):
        self.events.append(("end", state.test_metrics["num_samples"]))


def test_stop_training_from_a_callback_ends_cleanly(tmp_path):
    rec = Recorder(stop_at=8)  # 6 steps per epoch: stops in epoch 2
    path = train(tiny_config(tmp_path, "run.name=stopped"), callbacks=[rec], quiet=True)
    kinds = [e[0] for e in rec.events]
    assert kinds[0] == "start" and kinds[-1] == "end"
    assert kinds.count("epoch") == 1 and kinds.count("step") == 8
    assert [e[2] for e in rec.events if e[0] == "step"] == ["warmup"] * 6 + ["unfreeze"] * 2
    state = json.loads((path / "checkpoints" / "last.train.json").read_text())
    assert (state["epoch"], state["step_in_epoch"]) == (1, 2)
    ev = json.loads((path / "eval.json").read_text())
    assert ev["best_epoch"] == 1 and ev["test"]["num_samples"] > 0
    assert read_jsonl(path / "metrics.jsonl")[-1]["kind"] == "test"


def test_default_run_names_do_not_collide(tmp_path):
    cfg = tiny_config(tmp_path, "method=zeroshot", "run.name=null")
    assert cfg.run.name is None
    first = train(cfg, quiet=True)
    second = RunFolder.for_config(cfg).path
    assert first.name.endswith("-zeroshot") and first.parent == tmp_path
    assert second != first and not (second / "config.yaml").exists()

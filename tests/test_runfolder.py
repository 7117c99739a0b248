"""The run folder's readers, checkpoint names and the run's frozen dtype."""
import json
import os

import pytest

from cascade.fileio import write_json
from cascade.run_config import RunConfig
from cascade.runfolder import (ENV, METRICS, MetricsLog, MissingCheckpointError, RunFolderError, checkpoint_names,
                               checkpoint_path, checkpoint_run_dir, is_sigma_checkpoint, iter_checkpoints, read_json,
                               read_jsonl, read_metrics, resolve_checkpoint, run_frozen_dtype, sigma_tuned_on)


def test_eval_resolves_a_hand_written_auto_like_the_trainer(tmp_path):
    def cfg(dtype):
        return RunConfig.model_validate({"train": {"frozen_dtype": dtype}})

    write_json(tmp_path / ENV, {"device": "cuda:0"})
    assert run_frozen_dtype(cfg("auto"), tmp_path) == "bf16"
    write_json(tmp_path / ENV, {"device": "cpu"})
    assert run_frozen_dtype(cfg("auto"), tmp_path) == "fp32"
    assert run_frozen_dtype(cfg("fp16"), tmp_path) == "fp16"
    (tmp_path / ENV).unlink()
    assert run_frozen_dtype(cfg("auto"), tmp_path) == "fp32"      # no env.json: nothing says it ran on a GPU


def test_read_json_is_tolerant_unless_strict(tmp_path):
    good, torn = tmp_path / "good.json", tmp_path / "torn.json"
    good.write_text('{"a": 1}')
    torn.write_text('{"a": ')
    assert read_json(good) == {"a": 1}
    assert read_json(torn) is None and read_json(tmp_path / "missing.json") is None
    with pytest.raises(RunFolderError, match="torn.json"):
        read_json(torn, strict=True)


def test_metrics_readers_skip_a_half_written_last_line(tmp_path):
    log = MetricsLog(tmp_path / METRICS)
    log.write({"kind": "start"})
    log.write({"kind": "step", "global_step": 1})
    with open(tmp_path / METRICS, "a", encoding="utf-8") as fh:
        fh.write('\n[1, 2]\n{"kind": "st')        # a blank line, a non-object, a torn record
    assert [r["kind"] for r in read_metrics(tmp_path)] == ["start", "step"]
    assert log.records() == read_jsonl(tmp_path / METRICS) == read_metrics(tmp_path)
    assert read_metrics(tmp_path / "nothing") == []


def _checkpoint(run, name: str, meta: dict, mtime: float) -> None:
    path = checkpoint_path(run, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"tensors")
    path.with_suffix(".json").write_text(json.dumps(meta))
    os.utime(path, (mtime, mtime))


def test_checkpoint_listing_and_kinds(tmp_path):
    run = tmp_path / "run"
    _checkpoint(run, "last", {"extra": {"global_step": 30, "epoch": 3}}, 100)
    _checkpoint(run, "best", {"extra": {"global_step": 20, "epoch": 2}}, 300)
    _checkpoint(run, "sigma-0.5", {"extra": {"sigma_applied": {"tuned_on": "val"}}, "sigma_tuned_on": "val"}, 200)
    _checkpoint(run, "sigma-t", {"extra": {"sigma_applied": {"tuned_on": "test"}}, "sigma_tuned_on": "test"}, 400)
    (run / "checkpoints" / "last.train.safetensors").write_bytes(b"resume state")
    # by the step their JSON records, then by time; the resume state is not a model
    assert [p.name for p in iter_checkpoints(run)] == ["best.safetensors", "last.safetensors",
                                                      "sigma-0.5.safetensors", "sigma-t.safetensors"]
    assert checkpoint_names(run) == ["best", "last", "sigma-0.5", "sigma-t"]
    assert not is_sigma_checkpoint(checkpoint_path(run, "best"))
    assert is_sigma_checkpoint(checkpoint_path(run, "sigma-0.5"))
    assert sigma_tuned_on(checkpoint_path(run, "sigma-0.5")) == "val"      # a dotted name keeps its JSON
    assert sigma_tuned_on(checkpoint_path(run, "sigma-t")) == "test"
    assert sigma_tuned_on(checkpoint_path(run, "best")) is None
    assert checkpoint_run_dir(checkpoint_path(run, "best")) == run
    assert iter_checkpoints(tmp_path / "empty") == []


def test_one_name_or_path_resolution(tmp_path):
    run = tmp_path / "run"
    _checkpoint(run, "best", {}, 1)
    best = checkpoint_path(run, "best")
    assert resolve_checkpoint(run, "best") == best
    assert resolve_checkpoint(run / "checkpoints", "best") == best
    assert resolve_checkpoint(best) == best
    assert resolve_checkpoint(run, str(best)) == best
    elsewhere = tmp_path / "copy.safetensors"
    assert resolve_checkpoint(run, str(elsewhere)) == elsewhere    # a path is taken as given
    with pytest.raises(MissingCheckpointError, match=r"no checkpoint 'last' \(the run has: \['best'\]\)") as info:
        resolve_checkpoint(run, "last")
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, RunFolderError)

"""The Train form's stage-2 fields (supervision, pseudo-label threshold), the runs table's
supervision column, and the run report's note on label-free runs."""
from __future__ import annotations

import json

import yaml

from cascade.dashboard.datasets import make_data_config
from cascade.dashboard.runs import list_runs
from cascade.dashboard.trainform import FIELD_HELP, TrainRequest, build_run_config, visible_fields
from cascade.train.pseudo import SELECTED_LAST, report_summary


def _build(tmp_path, **kw):
    return build_run_config(TrainRequest(**kw), model_name="cascade-tiny", pretrained=None, backbone_seed=0,
                            data_config=make_data_config("synthetic", synthetic_size=60), runs_dir=str(tmp_path))


def test_supervision_fields_reach_the_train_section(tmp_path):
    assert _build(tmp_path).train.supervision == "labels"
    cfg = _build(tmp_path, method="shallow", supervision="pseudo", pseudo_threshold=0.3)
    assert cfg.train.supervision == "pseudo" and cfg.train.pseudo.threshold == 0.3


def test_threshold_shows_only_for_label_free_training():
    assert "supervision" in visible_fields("cascade", "b32-4stage", "synthetic")
    assert "pseudo_threshold" not in visible_fields("cascade", "b32-4stage", "synthetic")
    assert "pseudo_threshold" in visible_fields("shallow", "b32-4stage", "synthetic", supervision="pseudo")
    for method in ("zeroshot", "linear-probe"):          # nothing trains on images
        assert not {"supervision", "pseudo_threshold"} & visible_fields(method, "b32-4stage", "synthetic",
                                                                        supervision="pseudo")
    assert FIELD_HELP["supervision"] and FIELD_HELP["pseudo_threshold"]


def test_runs_table_and_report_say_which_supervision(tmp_path):
    for name, supervision in [("free", "pseudo"), ("old", None)]:
        d = tmp_path / name
        d.mkdir()
        train = {"supervision": supervision} if supervision else {}
        (d / "config.yaml").write_text(yaml.safe_dump({"method": "shallow", "train": train}))
        (d / "eval.json").write_text(json.dumps({"method": "shallow", "val": {}, "test": {}}))
    rows = {r.name: r.row() for r in list_runs(tmp_path)}
    assert rows["free"]["supervision"] == "pseudo" and rows["old"]["supervision"] == "labels"
    note = report_summary({"supervision": "pseudo", "selection": SELECTED_LAST,
                           "pseudo_labels": {"items": 40, "kept": 0.75, "threshold": 0.5, "accuracy": 0.6}})
    assert "75.0% of 40 training images kept at confidence threshold 0.5" in note
    assert "0.600 accurate against the training labels (diagnosis only)" in note and SELECTED_LAST in note


def test_train_page_offers_supervision(dashboard_env, tmp_path, monkeypatch):
    from .test_apptest import assert_clean, open_page

    monkeypatch.setenv("CASCADE_RUNS_DIR", str(tmp_path / "runs"))
    at = open_page("pages/train.py")
    box = at.selectbox(key="train_supervision")
    assert box.value == "labels" and box.options == ["labels", "pseudo"]
    assert "Pseudo-label confidence threshold" not in [w.label for w in at.number_input]
    box.set_value("pseudo").run()
    assert_clean(at)
    assert "Pseudo-label confidence threshold" in [w.label for w in at.number_input]
    at.selectbox(key="train_method").set_value("zeroshot").run()
    assert at.selectbox(key="train_supervision").disabled

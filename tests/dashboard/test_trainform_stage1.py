"""The Train form's stage-1 fields: what they become in the run config, the descriptions
upload, which fields show, and the runs table's stage-1 columns."""
from __future__ import annotations

import json

import pytest
import yaml

from cascade.dashboard.datasets import make_data_config
from cascade.dashboard.runs import list_runs
from cascade.dashboard.trainform import TrainRequest, build_run_config, save_descriptions_upload, visible_fields
from cascade.descriptions import DescriptionsError, read_descriptions
from cascade.runfolder import CONFIG, EVAL


def _build(tmp_path, **kw):
    return build_run_config(TrainRequest(**kw), model_name="cascade-tiny", pretrained=None, backbone_seed=0,
                            data_config=make_data_config("synthetic", synthetic_size=60), runs_dir=str(tmp_path))


def test_stage1_fields_reach_the_classifier_section(tmp_path):
    assert _build(tmp_path).classifier.init == "templates"
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"joy": ["a smile"], "anger": ["a shout"]}))
    cfg = _build(tmp_path, classifier_init="descriptions", descriptions=f" {path} ")
    assert cfg.classifier.init == "descriptions" and cfg.classifier.descriptions == str(path)
    assert _build(tmp_path, classifier_init="descriptions").classifier.descriptions is None   # shipped set
    assert _build(tmp_path, classifier_init="shots", shots=7).classifier.shots == 7


def test_a_bad_descriptions_path_is_reported_by_the_form(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('{"joy": ["a smile"],\n "anger": [}\n')
    with pytest.raises(DescriptionsError, match="line 2"):
        _build(tmp_path, classifier_init="descriptions", descriptions=str(path))
    with pytest.raises(DescriptionsError, match="no such descriptions file"):
        _build(tmp_path, classifier_init="descriptions", descriptions=str(tmp_path / "missing.json"))


def test_uploads_are_checked_and_kept_by_content(tmp_path):
    data = b"class,sentence\njoy,a smile\nanger,a shout\n"
    a = save_descriptions_upload("my texts.csv", data, tmp_path / ".descriptions")
    assert a.parent == tmp_path / ".descriptions" and a.suffix == ".csv" and "my-texts" in a.name
    assert read_descriptions(a) == {"joy": ["a smile"], "anger": ["a shout"]}
    assert save_descriptions_upload("my texts.csv", data, tmp_path / ".descriptions") == a
    assert save_descriptions_upload("my texts.csv", data + b"joy,a grin\n", tmp_path / ".descriptions") != a
    with pytest.raises(DescriptionsError, match=r"bad\.csv: line 3: expected 2 columns"):
        save_descriptions_upload("bad.csv", b"class,sentence\njoy,a smile\nanger\n", tmp_path)
    with pytest.raises(ValueError, match="not a .json, .csv or .tsv file"):
        save_descriptions_upload("notes.txt", b"joy: a smile", tmp_path)
    with pytest.raises(ValueError, match="holds no classes"):
        save_descriptions_upload("empty.json", b"{}", tmp_path)


def test_stage1_fields_show_where_they_apply():
    assert "classifier_init" in visible_fields("cascade", "b32-4stage", "synthetic")
    assert "classifier_init" in visible_fields("zeroshot", "b32-4stage", "synthetic")
    assert "classifier_init" not in visible_fields("linear-probe", "b32-4stage", "synthetic", classifier_init="shots")
    shown = visible_fields("cascade", "b32-4stage", "synthetic", classifier_init="descriptions")
    assert {"descriptions", "descriptions_upload"} <= shown and "shots" not in shown
    shown = visible_fields("shallow", "b32-4stage", "synthetic", classifier_init="shots")
    assert "shots" in shown and "descriptions" not in shown


def test_runs_table_shows_the_stage1_init_and_transfer(tmp_path):
    for name, init, stage1 in [("new", "shots", {"init": "shots", "val": {"accuracy": 0.4},
                                                 "test": {"accuracy": 0.375}}),
                               ("old", None, None), ("probe", None, "null")]:
        d = tmp_path / name
        d.mkdir()
        cfg = {"method": "linear-probe" if name == "probe" else "cascade"}
        if init:
            cfg["classifier"] = {"init": init}
        (d / CONFIG).write_text(yaml.safe_dump(cfg))
        report = {"method": cfg["method"], "val": {}, "test": {}}
        if stage1 is not None:
            report["stage1"] = None if stage1 == "null" else stage1
        (d / EVAL).write_text(json.dumps(report))
    rows = {r.name: r.row() for r in list_runs(tmp_path)}
    assert (rows["new"]["stage 1"], rows["new"]["stage 1 test accuracy"]) == ("shots", 0.375)
    assert (rows["old"]["stage 1"], rows["old"]["stage 1 test accuracy"]) == ("templates", None)
    assert rows["probe"]["stage 1"] == "n/a (own head)"


def test_train_page_offers_stage1(dashboard_env, tmp_path, monkeypatch):
    from .test_apptest import assert_clean, open_page

    monkeypatch.setenv("CASCADE_RUNS_DIR", str(tmp_path / "runs"))
    at = open_page("pages/train.py")
    init = at.selectbox(key="train_classifier_init")
    assert init.value == "templates" and init.options == ["templates", "descriptions", "shots"]
    assert "Labelled images per class" not in [w.label for w in at.number_input]
    init.set_value("shots").run()
    assert_clean(at)
    assert "Labelled images per class" in [w.label for w in at.number_input]
    at.selectbox(key="train_classifier_init").set_value("descriptions").run()
    assert_clean(at)
    assert "Descriptions file (empty: shipped sentences)" in [w.label for w in at.text_input]
    at.selectbox(key="train_method").set_value("linear-probe").run()
    assert at.selectbox(key="train_classifier_init").disabled

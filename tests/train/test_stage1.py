"""Stage 1 inside a run: the classifier's init, its transfer measured on frozen CLIP
embeddings (eval.json ``stage1``), and the ``stage1`` record of the metrics log."""
import argparse
import json

import numpy as np
import pytest
import torch

from cascade.classifier import TextClassifier
from cascade.commands import train as train_command
from cascade.descriptions import DescriptionsError
from cascade.run_config import load_run_config
from cascade.runfolder import EVAL, METRICS, read_json
from cascade.train import train
from cascade.train.stage1 import KIND, classifier_accuracy, draw_shots

from .helpers import REPO, CrashAt, tiny_config

TINY = REPO / "configs" / "synthetic-tiny.yaml"
ONE_EPOCH = ["train.epochs.unfreeze=0", "train.epochs.global=0"]
LAFTER = {"anger": ["a face red with rage", "a man shouting with his fists clenched"],
          "disgust": ["a wrinkled nose over rotten food"], "fear": ["wide eyes staring into the dark"],
          "joy": ["a wide smile at a party", "friends laughing together"], "sadness": ["tears on a cheek"],
          "surprise": ["a gasp with raised eyebrows"], "calm": ["a still lake at dawn"]}


@pytest.fixture(autouse=True)
def _text_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CASCADE_TEXT_CACHE", str(tmp_path / "text-cache"))


def _records(run, kind):
    return [json.loads(line) for line in (run / METRICS).read_text().splitlines() if json.loads(line)["kind"] == kind]


def _cascade_train(argv):
    """``cascade train ARGV`` through the command's own parser and handler."""
    parser = argparse.ArgumentParser(prog="cascade")
    train_command.register(parser.add_subparsers())
    args = parser.parse_args(["train", *argv])
    return args.func(args)


def test_cascade_train_with_a_lafter_descriptions_file(tmp_path, capsys):
    path = tmp_path / "descriptions.json"
    path.write_text(json.dumps(LAFTER))
    argv = ["--config", str(TINY), "--set", "classifier.init=descriptions", "--set", f"classifier.descriptions={path}",
            "--set", f"run.runs_dir={tmp_path / 'runs'}"] + [a for o in ONE_EPOCH for a in ("--set", o)]
    assert _cascade_train(argv) == 0
    run = tmp_path / "runs" / "synthetic-tiny"
    block = read_json(run / EVAL)["stage1"]
    assert block["init"] == "descriptions" and block["source"] == str(path)
    for split in ("val", "test"):
        assert 0.0 <= block[split]["accuracy"] <= 1.0
    [record] = _records(run, KIND)
    assert record["val"] == block["val"] and record["test"] == block["test"]
    # 8 sentences + 6 templates × 4 synonyms per class; the extra class 'calm' is left out
    assert record["fitted"] == 8 + 6 * 6 * 4 and record["steps"] == 500
    assert record["loss"] < record["loss_start"] and 0.0 <= record["text_accuracy"] <= 1.0
    err = capsys.readouterr().err
    assert err.count("ignoring 1 class(es)") == 1 and "'calm'" in err
    assert "stage 1: classifier from descriptions" in err


def test_a_class_missing_from_the_file_stops_the_run_naming_it(tmp_path):
    path = tmp_path / "descriptions.json"
    path.write_text(json.dumps({k: v for k, v in LAFTER.items() if k != "fear"}))
    cfg = load_run_config(TINY, ["classifier.init=descriptions", f"classifier.descriptions={path}",
                                 f"run.runs_dir={tmp_path}", *ONE_EPOCH])
    with pytest.raises(DescriptionsError, match="no sentences for class\\(es\\) 'fear'"):
        train(cfg, quiet=True)


def test_shots_init_is_what_the_zeroshot_model_scores(tmp_path):
    cfg = load_run_config(TINY, ["method=zeroshot", "classifier.init=shots", "classifier.shots=3",
                                 f"run.runs_dir={tmp_path}"])
    run = train(cfg, quiet=True)
    report = read_json(run / EVAL)
    block = report["stage1"]
    assert block["init"] == "shots"
    # The zero-shot model is frozen CLIP with the stage-1 classifier: its test accuracy is stage 1's.
    assert block["test"]["accuracy"] == pytest.approx(report["test"]["fused"]["accuracy"], abs=1e-9)
    [record] = _records(run, KIND)
    assert record["shot_counts"] == [3] * 6 and record["fitted"] == 18
    assert record["fit_accuracy"] >= 0.5


def test_templates_init_is_measured_and_not_fitted(tmp_path):
    run = train(load_run_config(TINY, ["method=zeroshot", f"run.runs_dir={tmp_path}"]), quiet=True)
    block = read_json(run / EVAL)["stage1"]
    assert block["init"] == "templates" and block["val"]["accuracy"] is not None
    [record] = _records(run, KIND)
    assert "loss" not in record and "text_accuracy" not in record


def test_shots_are_drawn_per_class_seeded_and_skip_unlabelled():
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1, -1, 0, -1, 2])
    a = draw_shots(labels, 2, seed=0, num_classes=3)
    assert np.bincount(labels[a], minlength=3).tolist() == [2, 2, 2]
    assert np.array_equal(a, draw_shots(labels, 2, seed=0, num_classes=3))
    assert any(not np.array_equal(a, draw_shots(labels, 2, seed=s, num_classes=3)) for s in range(1, 6))
    assert np.bincount(labels[draw_shots(labels, 10, seed=0, num_classes=3)]).tolist() == [4, 3, 3]
    with pytest.raises(ValueError, match="none of class 'awe'"):
        draw_shots(labels, 2, seed=0, num_classes=4, classnames=["a", "b", "c", "awe"])


def test_accuracy_counts_labelled_items_only():
    clf = TextClassifier(torch.eye(2), logit_scale=1.0)
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    assert classifier_accuracy(clf, feats, torch.tensor([0, 0, -1])) == 0.5
    assert classifier_accuracy(clf, feats, torch.tensor([-1, -1, -1])) is None


def test_a_resumed_descriptions_run_matches_the_uninterrupted_one(tmp_path):
    def config(name):
        return tiny_config(tmp_path, "classifier.init=descriptions", "train.save_every_steps=2",
                           f"run.name={name}")

    reference = train(config("ref"), quiet=True)
    with pytest.raises(RuntimeError, match="injected failure"):
        train(config("crash"), callbacks=[CrashAt(9)], quiet=True)
    resumed = train(resume=tmp_path / "crash", quiet=True)
    a, b = read_json(reference / EVAL), read_json(resumed / EVAL)
    assert a["stage1"] == b["stage1"] and a["stage1"]["source"] == "shipped:emotion6+neutral"
    assert a["test"] == b["test"]
    assert len(_records(resumed, KIND)) == 1


def test_a_label_free_linear_probe_learns_from_the_stage1_teacher(tmp_path):
    def probe(init):
        cfg = load_run_config(TINY, ["method=linear-probe", "train.supervision=pseudo", f"classifier.init={init}",
                                     f"run.runs_dir={tmp_path}", f"run.name={init}"])
        return read_json(train(cfg, quiet=True) / EVAL)

    shots, templates = probe("shots"), probe("templates")
    assert shots["stage1"]["init"] == "shots" and templates["stage1"]["init"] == "templates"
    # the teacher's pseudo-labels are the stage-1 classifier's, so its init changes what the probe learns
    assert shots["pseudo_labels"]["accuracy"] > templates["pseudo_labels"]["accuracy"]

"""Label-free training (train.supervision: pseudo): pseudo-labels from a frozen teacher,
never the training labels; model selection on labelled val or the last epoch."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file

from cascade.losses import LossWeights
from cascade.train import train
from cascade.train.pseudo import SELECTED_LAST, SELECTED_ON_VAL, PseudoLabels, pseudo_loss
from cascade.run_config import validate_run_config
from cascade.runfolder import EVAL, METRICS, RunFolder, read_json

from .helpers import read_jsonl

COLOURS = {"anger": (220, 40, 40), "joy": (240, 220, 60), "sadness": (40, 60, 200)}
PER_CLASS = {"train": 6, "val": 3, "test": 3}


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Coloured noise images per class and split, and manifests: a labelled train file, the
    same file with its labels shuffled, a path-only train file, labelled val and test files."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    rows = {split: [] for split in PER_CLASS}
    for split, n in PER_CLASS.items():
        for name, colour in COLOURS.items():
            for i in range(n):
                arr = np.clip(np.array(colour) + rng.normal(0, 40, size=(36, 44, 3)), 0, 255).astype(np.uint8)
                rel = f"{split}/{name}/{i}.png"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(arr).save(root / rel)
                rows[split].append((rel, name))
    shuffled = [r[1] for r in rows["train"]]
    rng.shuffle(shuffled)
    files = {"train": rows["train"], "shuffled": [(p, lab) for (p, _), lab in zip(rows["train"], shuffled)],
             "val": rows["val"], "test": rows["test"]}
    for name, items in files.items():
        (root / f"{name}.csv").write_text("path,label\n" + "".join(f"{p},{lab}\n" for p, lab in items))
    (root / "pool.csv").write_text("path\n" + "".join(f"{p}\n" for p, _ in rows["train"]))
    return root


def _config(photos, runs, name, train_file="train.csv", val=True, **train_extra):
    root = {"train": str(photos / train_file), "test": str(photos / "test.csv")}
    if val:
        root["val"] = str(photos / "val.csv")
    return validate_run_config({
        "backbone": {"model_name": "cascade-tiny", "pretrained": "none"},
        "model": {"preset": "b32-4stage", "prompt_tokens": 2},
        "data": {"format": "manifest", "root": root},
        "train": {"epochs": {"warmup": 1, "unfreeze": 0, "global": 1}, "batch_size": 8, "device": "cpu",
                  "lr": {"prompts": 3e-3, "classifier": 3e-3}, "supervision": "pseudo", **train_extra},
        "run": {"runs_dir": str(runs), "name": name}})


def _eval(run):
    return read_json(run / EVAL)


def _tensors(run, which):
    return load_file(str(RunFolder(run).checkpoint(which)))


def test_pseudo_loss_drops_items_below_the_threshold_and_smooths_labels():
    torch.manual_seed(0)
    logits = torch.randn(4, 3)
    out = SimpleNamespace(logits=logits, stage_logits=logits[None])
    targets = torch.tensor([0, 1, 2, 0])
    everything = pseudo_loss(out, targets, torch.ones(4, dtype=torch.bool), LossWeights(), smoothing=0.1)
    assert everything["pseudo_ce"] == pytest.approx(float(F.cross_entropy(logits, targets, label_smoothing=0.1)))
    keep = torch.tensor([True, False, True, False])
    some = pseudo_loss(out, targets, keep, LossWeights(), smoothing=0.0)
    per = F.cross_entropy(logits, targets, reduction="none")
    assert some["pseudo_ce"] == pytest.approx(float(per[keep].sum() / 4))    # dropped items count as 0
    labels = PseudoLabels(torch.tensor([0, 1, 1, 2]), torch.tensor([0.9, 0.3, 0.5, 0.6]), threshold=0.5)
    s = labels.summary(np.array([0, 1, 0, 2]), 3)
    assert s["kept"] == 0.75 and s["counts"] == [1, 1, 1] and s["accuracy"] == 0.75 \
        and s["accuracy_kept"] == pytest.approx(2 / 3)


def test_training_labels_are_never_read(photos, tmp_path):
    # The same images with shuffled training labels: bit-identical training (augmented, through the
    # device pipeline); only the diagnosis, the pseudo-labels' accuracy against the labels, differs.
    runs = [train(_config(photos, tmp_path, name, train_file=f, augment=True, input_pipeline="device"), quiet=True)
            for name, f in (("labels", "train.csv"), ("shuffled", "shuffled.csv"))]
    a, b = (_tensors(r, "last") for r in runs)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ea, eb = _eval(runs[0]), _eval(runs[1])
    assert ea["test"]["fused"] == eb["test"]["fused"]
    assert ea["pseudo_labels"]["counts"] == eb["pseudo_labels"]["counts"]
    assert ea["pseudo_labels"]["accuracy"] != eb["pseudo_labels"]["accuracy"]
    assert ea["supervision"] == "pseudo" and ea["selection"] == SELECTED_ON_VAL
    start = read_jsonl(runs[0] / METRICS)[0]
    assert start["input_pipeline"]["kind"] == "device" and start["supervision"] == "pseudo"
    epochs = [r for r in read_jsonl(runs[0] / METRICS) if r["kind"] == "eval"]
    assert len(epochs) == 2 and all(r["pseudo"]["kept"] == 1.0 for r in epochs)
    assert all(r["pseudo"]["pseudo_accuracy"] == ea["pseudo_labels"]["accuracy"] for r in epochs)
    steps = [r for r in read_jsonl(runs[0] / METRICS) if r["kind"] == "step"]
    assert steps and "pseudo_ce" in steps[0]["loss"] and "ce" not in steps[0]["loss"]


def test_a_path_only_training_file_without_val_selects_the_last_epoch(photos, tmp_path):
    run = train(_config(photos, tmp_path, "pool", train_file="pool.csv", val=False, augment=True,
                        input_pipeline="cpu", pseudo={"threshold": 0.385}), quiet=True)
    ev = _eval(run)
    assert ev["selection"] == SELECTED_LAST and ev["best_epoch"] == 2
    assert "accuracy" not in ev["pseudo_labels"]          # nothing to compare with
    assert ev["test"]["num_samples"] == 9 and isinstance(ev["test"]["fused"]["accuracy"], float)
    kept = ev["pseudo_labels"]["kept"]
    assert 0 < kept < 1             # the teacher's confidences here spread around 0.385: some are dropped
    epochs = [r for r in read_jsonl(run / METRICS) if r["kind"] == "eval"]
    assert [r["best"] for r in epochs] == [True, True]
    assert all(r["pseudo"]["kept"] == pytest.approx(kept) for r in epochs)


def test_label_training_refuses_unlabelled_items(photos, tmp_path):
    cfg = _config(photos, tmp_path, "refused", train_file="pool.csv").with_overrides(["train.supervision=labels"])
    with pytest.raises(ValueError, match=r"18 of 18 training items have none; set train.supervision: pseudo"):
        train(cfg, quiet=True)


def test_visual_layernorms_train_and_reload(photos, tmp_path):
    from cascade.evaluate import evaluate_run

    run = train(_config(photos, tmp_path, "ln", augment=False, pseudo={"train_layernorms": True},
                        lr={"prompts": 3e-3, "other": 1e-2}), quiet=True)
    state = _tensors(run, "best")
    ln = [k for k in state if k.startswith("visual.")]
    assert ln and all(".ln_" in k or "ln_post" in k for k in ln)
    assert not torch.allclose(state["visual.ln_post.weight"], torch.ones_like(state["visual.ln_post.weight"]))
    ev = _eval(run)
    assert ev["parameters"]["backbone_trainable"] == sum(v.numel() for k, v in state.items() if k in ln)
    res = evaluate_run(run, "test", write=False)
    assert res["metrics"]["fused"]["accuracy"] == pytest.approx(ev["test"]["fused"]["accuracy"])


def test_every_method_runs_label_free_in_an_ablation(photos, tmp_path):
    # What `cascade ablate --set train.supervision=pseudo` runs: each method on a training file
    # without labels; the probe fits on the teacher's pseudo-labels.
    from cascade.train.ablate import run_ablation

    base = _config(photos, tmp_path, "base", train_file="pool.csv", augment=True, input_pipeline="cpu")
    result = run_ablation(base, "zeroshot,linear-probe,shallow", seeds=[0], out_dir=tmp_path / "abl", quiet=True)
    assert {r["method"] for r in result.rows} == {"zeroshot", "linear-probe", "shallow"}
    for method in ("linear-probe", "shallow"):
        ev = _eval(tmp_path / "abl" / "runs" / f"{method}-seed0")
        assert ev["supervision"] == "pseudo" and ev["selection"] == SELECTED_ON_VAL
        assert ev["pseudo_labels"]["items"] == 18 and ev["test"]["num_samples"] == 9

"""Weights in every format through the CLI: cascade weights, predict --model auto, one-line errors."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from cascade import load_backbone
from cascade.weights import WeightsError
from cascade.weights.openai import file_sha256

from support.cli import cli
from support.weights import openai_archive, tiny_transformers_clip

TINY_YAML = Path(__file__).resolve().parents[2] / "configs" / "synthetic-tiny.yaml"


@pytest.fixture(scope="module")
def files(tiny_backbone, tmp_path_factory):
    """The tiny model's weights as an OpenAI archive and as safetensors, and a test image."""
    d = tmp_path_factory.mktemp("weights")
    state = {k: v.detach().clone().contiguous() for k, v in tiny_backbone.model.state_dict().items()}
    save_file(state, str(d / "tiny.safetensors"))
    openai_archive(state, d / "tiny.pt")
    img = d / "face.png"
    Image.new("RGB", (80, 64), (40, 160, 90)).save(img)
    return {"dir": d, "state": state, "pt": d / "tiny.pt", "st": d / "tiny.safetensors", "img": img}


def _predict(capsys, *argv):
    capsys.readouterr()
    assert cli("predict", *argv, "--classes", "joy,sadness,anger", "--json") == 0
    return json.loads(capsys.readouterr().out)


def test_predict_auto_archive_equals_safetensors(files, capsys):
    a = _predict(capsys, "--model", "auto", "--pretrained", files["pt"], files["img"])
    b = _predict(capsys, "--model", "cascade-tiny", "--pretrained", files["st"], "--quick-gelu", files["img"])
    assert a["backbone"]["name"] == "cascade-tiny" and a["backbone"]["quick_gelu_source"] == "torchscript"
    assert a["results"][0]["fused"] == pytest.approx(b["results"][0]["fused"], abs=1e-6)
    # Without QuickGELU the same weights predict differently: the comparison can tell them apart.
    c = _predict(capsys, "--model", "cascade-tiny", "--pretrained", files["st"], "--no-quick-gelu", files["img"])
    assert c["results"][0]["fused"] != pytest.approx(a["results"][0]["fused"], abs=1e-6)


def _bad_inputs(files, tmp_path):
    data = files["pt"].read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 3])
    st = files["st"].read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(st[: len(st) // 2])
    (tmp_path / "noise.safetensors").write_bytes(os.urandom(4096))
    (tmp_path / "noise.bin").write_bytes(os.urandom(4096))
    shutil.copy(files["st"], tmp_path / "tiny.npz.txt")
    eleven = {k: v for k, v in files["state"].items() if ".resblocks.11." not in k}
    save_file(eleven, str(tmp_path / "eleven.safetensors"))
    return {
        "truncated archive": (["--model", "auto", "--pretrained", tmp_path / "cut.pt"], "cut.pt"),
        "truncated safetensors": (["--model", "auto", "--pretrained", tmp_path / "cut.safetensors"], "cut.safetensors"),
        "corrupt safetensors": (["--model", "cascade-tiny", "--pretrained", tmp_path / "noise.safetensors"],
                                "noise.safetensors"),
        "corrupt bin": (["--model", "auto", "--pretrained", tmp_path / "noise.bin"], "noise.bin"),
        "wrong suffix": (["--model", "cascade-tiny", "--pretrained", tmp_path / "tiny.npz.txt"], "'.txt'"),
        "unknown model": (["--model", "ViT-Q-99", "--pretrained", files["st"]], "ViT-Q-99"),
        "no architecture": (["--model", "auto", "--pretrained", tmp_path / "eleven.safetensors"],
                            "fit no architecture"),
        "name disagrees": (["--model", "ViT-B-16", "--pretrained", files["st"]], "cascade-tiny"),
    }


CASES = ["truncated archive", "truncated safetensors", "corrupt safetensors", "corrupt bin", "wrong suffix",
         "unknown model", "no architecture", "name disagrees"]


@pytest.mark.parametrize("case", CASES)
def test_predict_weights_errors_are_one_line(case, files, tmp_path, capsys):
    argv, needle = _bad_inputs(files, tmp_path)[case]
    capsys.readouterr()
    assert cli("predict", *argv, files["img"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cascade predict: error: ") and needle in err, err
    assert "\n" not in err and "Traceback" not in err


@pytest.mark.parametrize("case", ["truncated archive", "name disagrees"])
def test_train_weights_errors_are_one_line(case, files, tmp_path, capsys):
    argv, needle = _bad_inputs(files, tmp_path)[case]
    model, pretrained = argv[1], argv[3]
    capsys.readouterr()
    rc = cli("train", "--config", TINY_YAML, "--set", f"run.runs_dir={tmp_path / 'runs'}", "--set",
             f"backbone.model_name={model}", "--pretrained", pretrained, "--quiet")
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("cascade train: error: ") and needle in err, err
    assert "\n" not in err and "Traceback" not in err


def test_weights_lists_what_home_and_the_hub_cache_hold(files, tmp_path, monkeypatch, capsys):
    home, hub, extra = tmp_path / "home", tmp_path / "hub", tmp_path / "mine"
    (home / ".cache" / "clip").mkdir(parents=True)
    shutil.copy(files["pt"], home / ".cache" / "clip" / "ViT-tiny.pt")
    snap = hub / "models--someone--tiny-clip" / "snapshots" / "0123abc"
    tiny_transformers_clip(snap)
    oc = hub / "models--timm--tiny.openai" / "snapshots" / "4567def"
    oc.mkdir(parents=True)
    shutil.copy(files["st"], oc / "open_clip_model.safetensors")
    (oc / "open_clip_config.json").write_text(json.dumps({"model_cfg": {"quick_gelu": True}}))
    extra.mkdir()
    shutil.copy(files["st"], extra / "finetuned.safetensors")
    (extra / "broken.pt").write_bytes(b"not a zip")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("CASCADE_WEIGHTS_PATH", str(extra))
    # A fresh process, as a user runs it: nothing is registered with open_clip beforehand.
    proc = subprocess.run([sys.executable, "-m", "cascade", "weights", "--json"], capture_output=True, text=True,
                          env=os.environ.copy(), timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    by_path = {w["path"]: w for w in out["weights"]}
    archive = by_path[str(home / ".cache" / "clip" / "ViT-tiny.pt")]
    assert (archive["format"], archive["architecture"], archive["quick_gelu"], archive["location"]) == (
        "torchscript", "cascade-tiny", True, "clip-cache")
    assert archive["bytes"] == files["pt"].stat().st_size and archive["model"] == "cascade-tiny"
    hf = by_path[str(snap)]
    assert (hf["format"], hf["architecture"], hf["quick_gelu"], hf["model"]) == ("transformers", "custom", True, "auto")
    ocw = by_path[str(oc / "open_clip_model.safetensors")]
    assert (ocw["format"], ocw["architecture"], ocw["quick_gelu"], ocw["location"]) == (
        "open_clip", "cascade-tiny", True, "hf-hub")
    mine = by_path[str(extra / "finetuned.safetensors")]
    assert (mine["format"], mine["quick_gelu"], mine["location"]) == ("open_clip", None, "CASCADE_WEIGHTS_PATH")
    broken = by_path[str(extra / "broken.pt")]
    assert broken["format"] is None and "broken.pt" in broken["error"]
    assert len(out["weights"]) == 5
    # Each listed --model/--pretrained pair loads.
    for w in (archive, hf, ocw):
        bb = load_backbone(w["model"], w["pretrained"])
        assert bb.info.quick_gelu is True
    capsys.readouterr()
    assert cli("weights") == 0
    text = capsys.readouterr().out
    assert f"--model auto --pretrained {snap}" in text and "1 other file(s)" in text


def test_openai_tag_uses_a_verified_clip_cache_copy(files, tmp_path, monkeypatch):
    from huggingface_hub import constants
    from open_clip import pretrained as oc_pretrained

    home = tmp_path / "home"
    (home / ".cache" / "clip").mkdir(parents=True)
    copy = home / ".cache" / "clip" / "tiny.pt"
    shutil.copy(files["pt"], copy)
    sha = file_sha256(copy)
    url = {"value": f"https://openaipublic.azureedge.net/clip/models/{sha}/tiny.pt"}
    real = oc_pretrained.get_pretrained_cfg

    def cfg(model, tag):
        if model == "cascade-tiny" and tag == "openai":
            return {"url": url["value"], "quick_gelu": True}
        return real(model, tag)

    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setattr(oc_pretrained, "get_pretrained_cfg", cfg)
    bb = load_backbone("cascade-tiny", "openai")
    assert bb.info.pretrained == "openai" and bb.info.quick_gelu is True
    for key, value in files["state"].items():
        assert torch.equal(bb.model.state_dict()[key], value)
    url["value"] = f"https://openaipublic.azureedge.net/clip/models/{'0' * 64}/tiny.pt"
    with pytest.raises(WeightsError, match=r"tiny\.pt is not the file OpenAI publishes"):
        load_backbone("cascade-tiny", "openai")


def test_train_on_an_archive_with_auto_then_eval_names_a_damaged_file(files, tmp_path, capsys):
    """A run trained on an OpenAI archive with model_name auto records the architecture it found
    and reloads; once the archive is damaged, eval stops with one line naming it."""
    archive = tmp_path / "clip.pt"
    shutil.copy(files["pt"], archive)
    runs = tmp_path / "runs"
    rc = cli("train", "--config", TINY_YAML, "--set", f"run.runs_dir={runs}", "--set", "backbone.model_name=auto",
             "--set", "data.synthetic.num_samples=60", "--set", "train.epochs={warmup: 1, unfreeze: 0, global: 0}",
             "--pretrained", archive, "--quiet")
    assert rc == 0
    run = runs / "synthetic-tiny"
    capsys.readouterr()
    assert cli("eval", "--run", run, "--split", "val", "--quiet") == 0
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    capsys.readouterr()
    assert cli("eval", "--run", run, "--split", "val", "--quiet") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cascade eval: error: ") and "clip.pt is truncated or corrupt" in err, err
    assert "\n" not in err and "Traceback" not in err

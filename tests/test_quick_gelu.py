"""QuickGELU is recorded with every backbone and honoured on every load path."""
import json

import pytest
import torch

from cascade import load_backbone, save_backbone_weights
from cascade.backbone import QUICK_GELU_SIDECAR, resolve_quick_gelu
from cascade.checkpoint import CheckpointError, load_checkpoint, load_into, save_checkpoint
from cascade.config import CascadeConfig
from cascade.model import build_model

CLASSES = ["anger", "joy", "sadness"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A tiny backbone saved as a weights file, once without and once with open_clip_config.json beside it."""
    root = tmp_path_factory.mktemp("weights")
    bb = load_backbone("cascade-tiny", None, seed=3)
    bare = save_backbone_weights(bb, root / "bare" / "open_clip_model.safetensors")
    hub = save_backbone_weights(bb, root / "hub" / "open_clip_model.safetensors")
    (hub.parent / QUICK_GELU_SIDECAR).write_text(json.dumps({"model_cfg": {"embed_dim": 32, "quick_gelu": True}}))
    return {"bare": bare, "hub": hub}


def test_resolution_order(weights, capsys):
    assert resolve_quick_gelu("ViT-B-32-quickgelu", "openai") == (True, "model_name")
    with pytest.raises(ValueError, match="backbone.quick_gelu: false contradicts"):
        resolve_quick_gelu("cascade-tiny-quickgelu", None, False)
    assert resolve_quick_gelu("ViT-B-32", "openai") == (True, "tag")
    assert resolve_quick_gelu("ViT-B-32", "openai", False) == (False, "setting")
    assert resolve_quick_gelu("cascade-tiny", None) == (False, "default")
    assert resolve_quick_gelu("cascade-tiny", str(weights["hub"])) == (True, QUICK_GELU_SIDECAR)
    capsys.readouterr()
    assert resolve_quick_gelu("cascade-tiny", str(weights["bare"])) == (False, "assumed")
    assert resolve_quick_gelu("cascade-tiny", str(weights["bare"])) == (False, "assumed")
    err = capsys.readouterr().err
    assert err.count("backbone.quick_gelu is not set") == 1       # warned once per file


def test_backbone_records_what_its_blocks_use(weights):
    named = load_backbone("cascade-tiny-quickgelu", None)
    assert named.info.quick_gelu and named.info.quick_gelu_source == "model_name"
    hub = load_backbone("cascade-tiny", str(weights["hub"]))
    assert hub.info.quick_gelu and hub.info.quick_gelu_source == QUICK_GELU_SIDECAR
    plain = load_backbone("cascade-tiny", str(weights["bare"]), quick_gelu=False)
    assert not plain.info.quick_gelu and plain.info.quick_gelu_source == "setting"


def _trained_like(backbone):
    torch.manual_seed(0)
    model = build_model(backbone, CLASSES, CascadeConfig.from_preset("b32-4stage", prompt_tokens=2)).eval()
    with torch.no_grad():
        model.prompts.params[0].normal_()
    return model


def test_checkpoint_reload_keeps_quick_gelu(weights, tmp_path):
    bb = load_backbone("cascade-tiny", str(weights["bare"]), quick_gelu=True)
    model = _trained_like(bb)
    path = save_checkpoint(model, tmp_path / "ck.safetensors")
    assert json.loads(path.with_suffix(".json").read_text())["backbone"]["quick_gelu"] is True
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want = model(x).logits
        again = load_checkpoint(path).eval()           # no backbone given: rebuilt from the checkpoint
        assert again.backbone_info.quick_gelu
        assert torch.allclose(again(x).logits, want, atol=1e-6)
    gelu = _trained_like(load_backbone("cascade-tiny", str(weights["bare"]), quick_gelu=False))
    with pytest.raises(CheckpointError, match="backbone.quick_gelu"):
        load_into(gelu, path)


def test_dashboard_backbone_spec_carries_quick_gelu(weights, tmp_path):
    from cascade.checkpoint import read_meta
    from cascade.dashboard.models import BackboneSpec, load_run_checkpoint, load_spec_backbone
    from cascade.run_config import RunConfig
    from cascade.runfolder import RunFolder, checkpoint_path

    bb = load_backbone("cascade-tiny", str(weights["bare"]), quick_gelu=True)
    folder = RunFolder(tmp_path / "run")      # the dashboard loads the checkpoints of run folders
    folder.create()
    folder.config.write_text(RunConfig.model_validate(
        {"backbone": {"model_name": "cascade-tiny", "pretrained": str(weights["bare"]), "quick_gelu": True}}).to_yaml())
    path = save_checkpoint(_trained_like(bb), checkpoint_path(folder.path, "best"))
    spec = BackboneSpec.from_meta(read_meta(path))
    assert spec.quick_gelu is True
    rebuilt = load_spec_backbone(spec)
    assert rebuilt.info.quick_gelu
    assert load_run_checkpoint(path, rebuilt).model.backbone_info.quick_gelu


def test_zero_shot_predict_honours_the_weights_file(weights, tmp_path, capsys):
    from cascade.cli import main

    img = tmp_path / "a.png"
    from PIL import Image
    Image.new("RGB", (80, 64), (200, 30, 30)).save(img)
    outs = {}
    for name, extra in (("hub", []), ("forced", ["--quick-gelu"]), ("bare", [])):
        file = weights["bare" if name != "hub" else "hub"]
        assert main(["predict", "--model", "cascade-tiny", "--pretrained", str(file), *extra, "--json", str(img)]) == 0
        outs[name] = json.loads(capsys.readouterr().out)
    assert outs["hub"]["backbone"]["quick_gelu"] is True
    assert outs["forced"]["backbone"]["quick_gelu"] is True
    assert outs["bare"]["backbone"]["quick_gelu"] is False and outs["bare"]["backbone"]["quick_gelu_source"] == "assumed"
    assert outs["hub"]["results"][0]["fused"] == outs["forced"]["results"][0]["fused"]
    assert outs["hub"]["results"][0]["fused"] != outs["bare"]["results"][0]["fused"]


@pytest.mark.slow
def test_run_records_quick_gelu_and_every_reload_uses_it(weights, tmp_path):
    """A run on a weights file with quick_gelu: true; eval, analysis and the dashboard rebuild QuickGELU."""
    import yaml

    from analysis.features import load_run
    from cascade import runfolder
    from cascade.train import train
    from train.helpers import tiny_config

    cfg = tiny_config(tmp_path, "run.name=qg", f"backbone.pretrained={weights['hub']}", "train.epochs.unfreeze=0",
                      "train.epochs.global=0")
    run = train(cfg, quiet=True)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["backbone"]["quick_gelu"] is True
    ev = json.loads((run / "eval.json").read_text())
    assert ev["backbone"]["quick_gelu"] is True and ev["backbone"]["quick_gelu_source"] == QUICK_GELU_SIDECAR
    # the sidecar is gone (the weights file was moved without it): the run still knows
    (weights["hub"].parent / QUICK_GELU_SIDECAR).rename(tmp_path / "moved.json")
    try:
        assert runfolder.load_run(run).model.backbone_info.quick_gelu
        assert load_run(run).model.backbone_info.quick_gelu
    finally:
        (tmp_path / "moved.json").rename(weights["hub"].parent / QUICK_GELU_SIDECAR)

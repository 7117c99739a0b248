import pytest
import torch

from cascade import CascadeConfig, CheckpointError, build_model, load_checkpoint, save_checkpoint
from cascade.checkpoint import load_into


def _trained_model(backbone, classes, preset="b32-4stage"):
    model = build_model(backbone, classes, CascadeConfig.from_preset(preset))
    with torch.no_grad():
        for _, p in model.cascade_named_parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def test_round_trip_identical_logits(tmp_path, tiny_backbone):
    classes = ["anger", "joy", "fear"]
    model = _trained_model(tiny_backbone, classes)
    path = save_checkpoint(model, tmp_path / "best.safetensors", extra={"epoch": 3})
    assert path.with_suffix(".json").is_file()
    x = torch.randn(2, 3, 64, 64)
    reloaded = load_checkpoint(path)
    with torch.no_grad():
        assert torch.equal(model(x).logits, reloaded(x).logits)


def test_checkpoint_holds_no_backbone(tmp_path, tiny_backbone):
    from safetensors.torch import load_file

    model = _trained_model(tiny_backbone, ["a", "b"])
    path = save_checkpoint(model, tmp_path / "c.safetensors")
    keys = load_file(str(path)).keys()
    assert keys and not any(k.startswith("visual.") for k in keys)


def test_mismatched_classnames_named(tmp_path, tiny_backbone):
    model = _trained_model(tiny_backbone, ["anger", "joy"])
    path = save_checkpoint(model, tmp_path / "c.safetensors")
    other = build_model(tiny_backbone, ["anger", "fear"], CascadeConfig.from_preset("b32-4stage"))
    with pytest.raises(CheckpointError, match="classnames"):
        load_into(other, path)


def test_mismatched_preset_named(tmp_path, tiny_backbone):
    model = _trained_model(tiny_backbone, ["anger", "joy"])
    path = save_checkpoint(model, tmp_path / "c.safetensors")
    other = build_model(tiny_backbone, ["anger", "joy"], CascadeConfig.from_preset("b16-3stage"))
    with pytest.raises(CheckpointError) as info:
        load_into(other, path)
    assert "config.stages" in str(info.value) and "config.preset" in str(info.value)


def test_pickle_checkpoints_refused(tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not really a pickle")
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(bad)


def test_missing_json_reported(tmp_path, tiny_backbone):
    model = _trained_model(tiny_backbone, ["a", "b"])
    path = save_checkpoint(model, tmp_path / "c.safetensors")
    path.with_suffix(".json").unlink()
    with pytest.raises(CheckpointError, match="c.json"):
        load_checkpoint(path)


def test_random_backbone_seed_mismatch_detected(tmp_path):
    from cascade import load_backbone

    a = load_backbone("cascade-tiny", None, seed=1)
    model = _trained_model(a, ["a", "b"])
    path = save_checkpoint(model, tmp_path / "c.safetensors")
    other = build_model(load_backbone("cascade-tiny", None, seed=2), ["a", "b"], CascadeConfig.from_preset("b32-4stage"))
    with pytest.raises(CheckpointError, match="seed"):
        load_into(other, path)

"""transformers CLIPModel checkpoints: converted embeddings equal transformers' own."""
import json

import pytest
import torch

from cascade import load_backbone
from cascade.weights import WeightsError, read_weights

from support.weights import tiny_transformers_clip


@pytest.fixture(scope="module")
def hf_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf") / "tiny-clip"
    return folder, tiny_transformers_clip(folder)


def _inputs(hf, bb):
    torch.manual_seed(1)
    pixels = torch.randn(3, 3, 48, 48)   # already normalised: both models take the same tensor
    ids = bb.tokenizer(["a happy face", "a sad face", "a photo of anger"])
    return pixels, ids


@pytest.mark.parametrize("as_file", [False, True], ids=["folder", "file"])
def test_embeddings_equal_transformers(hf_model, as_file):
    folder, hf = hf_model
    bb = load_backbone("auto", str(folder / "model.safetensors") if as_file else str(folder))
    assert bb.info.quick_gelu is True and bb.info.quick_gelu_source == "config.json"
    assert (bb.info.width, bb.info.depth, bb.info.embed_dim, bb.info.image_size) == (48, 3, 24, 48)
    pixels, ids = _inputs(hf, bb)
    with torch.no_grad():
        ours_img = bb.model.encode_image(pixels)
        ours_txt = bb.model.encode_text(ids)
        ref_img = hf.get_image_features(pixel_values=pixels)
        ref_txt = hf.get_text_features(input_ids=ids)
    ref_img = getattr(ref_img, "pooler_output", ref_img)
    ref_txt = getattr(ref_txt, "pooler_output", ref_txt)
    assert torch.allclose(ours_img, ref_img, atol=1e-4), (ours_img - ref_img).abs().max()
    assert torch.allclose(ours_txt, ref_txt, atol=1e-4), (ours_txt - ref_txt).abs().max()
    assert bb.logit_scale == pytest.approx(float(hf.logit_scale.detach().exp()), rel=1e-6)


def test_hidden_act_decides_quick_gelu(tmp_path):
    folder = tmp_path / "gelu"
    hf = tiny_transformers_clip(folder, hidden_act="gelu", seed=3)
    bb = load_backbone("auto", str(folder))
    assert bb.info.quick_gelu is False and bb.info.quick_gelu_source == "config.json"
    pixels = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        ref = hf.get_image_features(pixel_values=pixels)
        ours = bb.model.encode_image(pixels)
    assert torch.allclose(ours, getattr(ref, "pooler_output", ref), atol=1e-4)


def test_transformers_names_without_config_are_one_clear_error(hf_model, tmp_path):
    folder, _ = hf_model
    lone = tmp_path / "model.safetensors"
    lone.write_bytes((folder / "model.safetensors").read_bytes())
    with pytest.raises(WeightsError, match=r"model\.safetensors has transformers' parameter names but no"):
        read_weights(lone)


def test_unknown_activation_is_refused(hf_model, tmp_path):
    folder, _ = hf_model
    copy = tmp_path / "silu"
    copy.mkdir()
    cfg = json.loads((folder / "config.json").read_text())
    cfg["vision_config"]["hidden_act"] = cfg["text_config"]["hidden_act"] = "silu"
    (copy / "config.json").write_text(json.dumps(cfg))
    (copy / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    with pytest.raises(WeightsError, match="hidden_act 'silu'"):
        load_backbone("auto", str(copy))

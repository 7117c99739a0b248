import time

import pytest
import torch

from cascade import WeightsUnavailableError, load_backbone, save_backbone_weights


def test_tiny_metadata(tiny_backbone):
    info = tiny_backbone.info
    assert (info.depth, info.width, info.image_size) == (12, 64, 64)
    assert info.random_weights and info.pretrained is None
    assert not any(p.requires_grad for p in tiny_backbone.model.parameters())
    assert "RANDOM" in info.describe()


def test_random_weights_are_reproducible_from_seed():
    a = load_backbone("cascade-tiny", None, seed=3)
    b = load_backbone("cascade-tiny", None, seed=3)
    c = load_backbone("cascade-tiny", None, seed=4)
    pa, pb, pc = (next(m.model.visual.parameters()) for m in (a, b, c))
    assert torch.equal(pa, pb)
    assert not torch.equal(pa, pc)


@pytest.mark.parametrize("model_name", ["cascade-tiny", pytest.param("ViT-B-32", marks=pytest.mark.slow)])
def test_local_weights_file_round_trip(tmp_path, model_name):
    source = load_backbone(model_name, None, seed=7)
    path = save_backbone_weights(source, tmp_path / "weights.safetensors")
    loaded = load_backbone(model_name, str(path), seed=123)
    assert not loaded.info.random_weights
    assert loaded.info.pretrained == str(path)
    x = torch.randn(2, 3, source.info.image_size, source.info.image_size)
    with torch.no_grad():
        assert torch.equal(source.model.encode_image(x), loaded.model.encode_image(x))


def test_openai_offline_fails_fast_with_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    start = time.monotonic()
    with pytest.raises(WeightsUnavailableError) as info:
        load_backbone("ViT-B-32", "openai", cache_dir=str(tmp_path / "cache"), network_timeout=2.0)
    assert time.monotonic() - start < 15
    msg = str(info.value)
    assert "openai" in msg and str(tmp_path / "cache") in msg and "pretrained=" in msg


def test_offline_flag_is_honoured(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsUnavailableError, match="HF_HUB_OFFLINE"):
        load_backbone("ViT-B-32", "openai", cache_dir=str(tmp_path))


def test_missing_file_and_unknown_tag(tmp_path):
    with pytest.raises(WeightsUnavailableError, match="no such file"):
        load_backbone("cascade-tiny", str(tmp_path / "nope.safetensors"))
    with pytest.raises(ValueError, match="pretrained"):
        load_backbone("cascade-tiny", "not-a-tag")
    with pytest.raises(ValueError, match="model_name"):
        load_backbone("ViT-Z-99", None)


def test_openai_tag_selects_quick_gelu(tmp_path, monkeypatch):
    # The tag needs QuickGELU; check the decision without downloading by faking a cached file.
    import cascade.backbone as bb

    src = load_backbone("ViT-B-32", None, quick_gelu=True)
    path = save_backbone_weights(src, tmp_path / "vitb32.safetensors")
    monkeypatch.setattr(bb, "cached_weights_path", lambda cfg, cache_dir: str(path))
    loaded = load_backbone("ViT-B-32", "openai")
    assert loaded.info.quick_gelu and loaded.info.pretrained == "openai" and not loaded.info.random_weights

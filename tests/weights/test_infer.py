"""model_name auto: the architecture from the weights; a name that disagrees is an error naming both."""
import open_clip
import pytest
import torch
from safetensors.torch import save_file

from cascade import load_backbone
from cascade.backbone import register_model_configs
from cascade.weights import WeightsError, architecture_of, check_architecture
from cascade.weights.infer import config_signature, state_signature


@pytest.fixture(scope="module")
def tiny_file(tiny_backbone, tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_backbone.model.state_dict().items()}, str(path))
    return path


@pytest.mark.parametrize("name", ["ViT-B-32", "ViT-B-16", "ViT-L-14", "ViT-L-14-336", "cascade-tiny"])
def test_known_shapes_name_their_architecture(name):
    register_model_configs()
    model = open_clip.create_model(name, pretrained=None, device="meta")
    state = {k: torch.empty(v.shape, device="meta") for k, v in model.state_dict().items()}
    assert state_signature(state) == config_signature(open_clip.get_model_config(name))
    assert architecture_of(state, "x.safetensors") == name


def test_auto_loads_the_tiny_file(tiny_file, tiny_backbone):
    bb = load_backbone("auto", str(tiny_file))
    assert bb.info.name == "cascade-tiny" and bb.info.pretrained == str(tiny_file)
    for key, value in tiny_backbone.model.state_dict().items():
        assert torch.equal(bb.model.state_dict()[key], value)


def test_explicit_name_that_disagrees_names_both(tiny_file):
    with pytest.raises(WeightsError) as err:
        load_backbone("ViT-B-32", str(tiny_file))
    msg = str(err.value)
    assert "tiny.safetensors" in msg and "cascade-tiny" in msg and "'ViT-B-32'" in msg and "\n" not in msg


def test_shapes_that_fit_nothing(tiny_backbone, tmp_path):
    state = {k: v for k, v in tiny_backbone.model.state_dict().items() if ".resblocks.11." not in k}
    with pytest.raises(WeightsError, match="fit no architecture"):
        architecture_of(state, "eleven.safetensors")
    path = tmp_path / "eleven.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    with pytest.raises(WeightsError, match=r"eleven\.safetensors has shapes that fit no architecture"):
        load_backbone("auto", str(path))
    with pytest.raises(WeightsError, match=r"eleven\.safetensors holds no known architecture"):
        check_architecture("cascade-tiny", state, str(path))


def test_auto_needs_weights():
    with pytest.raises(WeightsError, match="auto reads the architecture"):
        load_backbone("auto", None)
    with pytest.raises(WeightsError, match="'openai' is not a weights file"):
        load_backbone("auto", "openai")

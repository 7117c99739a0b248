"""OpenAI TorchScript archives: tensors read by name, no code run, self-rewriting archives refused."""
import warnings
import zipfile

import pytest
import torch

from cascade import load_backbone
from cascade.weights import WeightsError, read_weights
from cascade.weights.torchscript import OPENAI_EXTRA_KEYS, is_torchscript, read_torchscript

from support.weights import openai_archive, self_rewriting_archive


@pytest.fixture(scope="module")
def tiny_state(tiny_backbone):
    return {k: v.detach().clone() for k, v in tiny_backbone.model.state_dict().items()}


@pytest.fixture(scope="module")
def archive(tiny_state, tmp_path_factory):
    return openai_archive(tiny_state, tmp_path_factory.mktemp("clip") / "tiny.pt")


def test_archive_reads_as_the_plain_state_dict(archive, tiny_state):
    assert is_torchscript(archive)
    state = read_torchscript(archive)
    assert sorted(state) == sorted(tiny_state)
    for key, value in tiny_state.items():
        assert state[key].dtype == value.dtype and torch.equal(state[key], value), key
    assert not set(OPENAI_EXTRA_KEYS) & set(state)


def test_float16_archive_keeps_its_dtype_and_values(tiny_state, tmp_path):
    state = read_torchscript(openai_archive(tiny_state, tmp_path / "half.pt", half=True))
    w = "visual.transformer.resblocks.0.attn.in_proj_weight"
    assert state[w].dtype == torch.float16 and torch.equal(state[w], tiny_state[w].half())
    assert state["visual.class_embedding"].dtype == torch.float32


def test_meta_read_gives_shapes_without_data(archive, tiny_state):
    state = read_torchscript(archive, meta=True)
    assert all(t.is_meta for t in state.values())
    assert {k: tuple(v.shape) for k, v in state.items()} == {k: tuple(v.shape) for k, v in tiny_state.items()}


def test_loaded_backbone_equals_the_source_and_uses_quick_gelu(archive, tiny_state):
    bb = load_backbone("auto", str(archive))
    assert bb.info.name == "cascade-tiny"
    assert bb.info.quick_gelu is True and bb.info.quick_gelu_source == "torchscript"
    got = bb.model.state_dict()
    for key, value in tiny_state.items():
        assert torch.equal(got[key], value), key


def test_archive_that_rewrites_its_weights_is_refused(tiny_state, tmp_path):
    path = self_rewriting_archive(tiny_state, tmp_path / "evil.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        ran = torch.jit.load(str(path))    # what running the archive would give: the weight times 7
    assert torch.equal(ran.visual.proj.weight, tiny_state["visual.proj"] * 7)
    with pytest.raises(WeightsError, match=r"evil\.pt.*__setstate__"):
        read_torchscript(path)
    with pytest.raises(WeightsError, match="__setstate__"):
        load_backbone("auto", str(path))


def test_archive_naming_other_code_is_refused(tmp_path):
    import io
    import pickle

    path = tmp_path / "os.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("m/code/__torch__.py", "class M(Module):\n  __parameters__ = []\n  __buffers__ = []\n")
        zf.writestr("m/data.pkl", pickle.dumps(io.StringIO, protocol=2))   # any class outside torch's rebuilders
    with pytest.raises(WeightsError, match=r"io\.StringIO"):
        read_torchscript(path)


def test_truncated_and_damaged_archives_are_one_clear_error(archive, tmp_path):
    data = archive.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match=r"cut\.pt is truncated or corrupt"):
        read_weights(cut)
    # A storage shorter than its tensors need: rewrite the zip with one storage cut down.
    short = tmp_path / "short.pt"
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(short, "w") as dst:
        for item in src.infolist():
            body = src.read(item.filename)
            if item.filename.endswith("/data/0"):
                body = body[:-4]
            dst.writestr(item, body)
    with pytest.raises(WeightsError, match=r"short\.pt is truncated or corrupt \(storage .*/data/0"):
        read_torchscript(short)

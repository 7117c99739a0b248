from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from cascade.data.transforms import CLIP_MEAN, CLIP_STD, backbone_normalisation, eval_transform, eval_transform_for


def _model(size, mean=None, std=None):
    return SimpleNamespace(visual=SimpleNamespace(image_mean=mean, image_std=std),
                           backbone_info=SimpleNamespace(image_size=size))


def test_normalisation_from_the_backbone_or_clips():
    assert backbone_normalisation(_model(32)) == (32, CLIP_MEAN, CLIP_STD)
    assert backbone_normalisation(_model(48, [0.5] * 3, [0.25] * 3)) == (48, (0.5,) * 3, (0.25,) * 3)


def test_eval_transform_for_a_model_is_its_size_and_normalisation():
    image = Image.new("RGB", (40, 30), (255, 0, 128))
    model = _model(16, [0.5, 0.5, 0.5], [0.5, 0.5, 0.5])
    x = eval_transform_for(model)(image)
    assert x.shape == (3, 16, 16)
    assert torch.equal(x, eval_transform(16, [0.5] * 3, [0.5] * 3)(image))
    # (v - 0.5) / 0.5 maps 255 to 1 and 0 to -1
    assert x[0].mean().item() == pytest.approx(1.0) and x[1].mean().item() == pytest.approx(-1.0)

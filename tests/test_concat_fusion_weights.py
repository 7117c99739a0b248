"""Under ``fusion: concat`` the model has no fusion weights λ: everything that reports them says n/a."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from analysis.run_figures import sigma_lambda_figure
from cascade.config import CascadeConfig
from cascade.dashboard.charts import weights_figure
from cascade.dashboard.inspect import ImagePrediction
from cascade.model import build_model
from cascade.train.learned import nga_now


@pytest.fixture(scope="module")
def models(tiny_backbone):
    classes = ["anger", "joy", "sadness"]
    return {f: build_model(tiny_backbone, classes, CascadeConfig.from_preset("b32-4stage", fusion=f))
            for f in ("concat", "learnable")}


def test_concat_reports_no_fusion_weights(models):
    concat, weighted = models["concat"], models["learnable"]
    assert concat.current_fusion_weights() is None
    lam = weighted.current_fusion_weights()
    assert lam is not None and torch.isclose(lam.sum(), torch.tensor(1.0))
    assert nga_now(concat)["fusion"] is None and len(nga_now(weighted)["fusion"]) == weighted.num_stages
    size = concat.backbone_info.image_size
    with torch.no_grad():
        out = concat(torch.zeros(2, 3, size, size))
    assert out.fusion_weights is None and out.logits.shape == (2, 3)


def test_displays_say_na_under_concat(models):
    model = models["concat"]
    pred = ImagePrediction(name="x", classnames=["a", "b", "c"], fused=np.ones(3) / 3, stages=np.ones((4, 3)) / 3,
                           stage_blocks=model.stage_blocks, nga_weights=[np.ones(len(b)) / len(b) for b in model.stage_blocks],
                           fusion_weights=None, sigma=np.ones(4), seconds=0.0)
    fig = weights_figure(pred)
    assert not [t for t in fig.data if t.type == "bar"]
    assert any("n/a" in a.text for a in fig.layout.annotations)
    fig = sigma_lambda_figure([{"step": 1, "stage": 1, "value": 1.0}], [])
    assert any("λ: n/a" in a.text for a in fig.layout.annotations)

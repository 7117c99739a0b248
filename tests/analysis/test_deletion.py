"""analysis.deletion: the faithfulness test of the explanation maps on the trained synthetic-faces model."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from analysis.deletion import blank_patches, deletion_curves
from support.threads import _one_thread  # noqa: F401 (autouse fixture)


def test_blank_patches_sets_exactly_the_chosen_patches():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    blanked = torch.tensor([[True, False, False, True], [False, False, False, False]])
    fill = torch.tensor([-1.0, -2.0, -3.0])
    out = blank_patches(x, blanked, 4, fill)
    assert (out[0, :, :4, :4] == fill.view(3, 1, 1)).all() and (out[0, :, 4:, 4:] == fill.view(3, 1, 1)).all()
    torch.testing.assert_close(out[0, :, :4, 4:], x[0, :, :4, 4:])
    torch.testing.assert_close(out[1], x[1])


class _Rel:
    def __init__(self, raw, target, names):
        self.raw, self.target, self.names = raw, target, names


def test_curves_start_unblanked_end_all_blanked_and_are_seeded(tiny_backbone):
    from cascade import CascadeConfig, build_model

    torch.manual_seed(0)
    model = build_model(tiny_backbone, ["a", "b", "c"], CascadeConfig.from_preset("b32-4stage")).eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    raw = np.random.default_rng(0).random((5, 2, 4, 4))
    rel = _Rel(raw, np.array([0, 2]), [f"m{k}" for k in range(5)])
    fill = torch.zeros(3)
    res = deletion_curves(model, x, rel, fill, random_orders=3, seed=7)
    assert res.relevance_curves.shape == (5, 2, 17) and res.random_curves.shape == (5, 2, 17)
    with torch.no_grad():
        clean = model(x)
        gone = model(fill.view(1, 3, 1, 1).expand(2, 3, 64, 64))
    p0 = torch.cat([clean.stage_logits, clean.logits[None]]).softmax(-1)[..., [0, 2]].diagonal(dim1=1, dim2=2)
    pn = torch.cat([gone.stage_logits, gone.logits[None]]).softmax(-1)[..., [0, 2]].diagonal(dim1=1, dim2=2)
    for curves in (res.relevance_curves, res.random_curves):
        np.testing.assert_allclose(curves[..., 0], p0.numpy(), atol=1e-5)
        np.testing.assert_allclose(curves[..., -1], pn.numpy(), atol=1e-5)
    again = deletion_curves(model, x, rel, fill, random_orders=3, seed=7, batch_size=5)
    np.testing.assert_allclose(again.random_curves, res.random_curves, atol=1e-6)
    np.testing.assert_allclose(again.relevance_curves, res.relevance_curves, atol=1e-6)
    # step 1 of map k blanks its most relevant patch
    k, b = 3, 1
    top = int(np.argmax(raw[k, b].reshape(-1)))
    mask = torch.zeros(1, 16, dtype=torch.bool)
    mask[0, top] = True
    with torch.no_grad():
        out = model(blank_patches(x[b:b + 1], mask, 16, fill))
    assert res.relevance_curves[k, b, 1] == pytest.approx(float(out.stage_logits[k, 0].softmax(-1)[2]), abs=1e-5)
    rows = res.rows()
    assert [r["map"] for r in rows] == rel.names
    assert all(0 <= r["images_lower"] <= 2 for r in rows)


@pytest.mark.slow
def test_maps_are_faithful_on_the_synthetic_faces(synthetic_run):
    """Blanking patches in relevance order lowers each output's target probability faster
    than random orders (10 of them): a smaller area under the deletion curve, every map."""
    from analysis.deletion import run_deletion
    from analysis.features import load_run

    run = load_run(synthetic_run)
    res, rel = run_deletion(run, random_orders=10, seed=0)
    assert res.num_images >= 32
    assert rel.target.tolist() == rel.probs[-1].argmax(-1).tolist()
    for row in res.rows():
        print(row)
        assert row["auc_relevance"] < row["auc_random"], row
        assert row["images_lower"] > row["images"] / 2, row

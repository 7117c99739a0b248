"""Figure functions: plain data in, plotly figures with the expected traces and layout out."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from analysis.drift import CKAResult
from analysis.figures import (
    cka_heatmap,
    confusion_matrix_figure,
    drift_curves,
    nga_weight_figure,
    sigma_sweep_figure,
    stage_prediction_bars,
)
from analysis.run_figures import stage_bars
from analysis.sigma import nga_limits, nga_weight_curves

from support.browser import needs_browser

CLASSES = ["anger", "disgust", "fear", "joy", "sadness", "surprise"]
STAGES = [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11], [12]]


def test_cka_heatmap():
    m = np.random.default_rng(0).uniform(-0.02, 1.0, (12, 12))
    fig = cka_heatmap(m, [str(i) for i in range(1, 13)], row_boundaries=[3.5, 7.5, 10.5],
                      col_boundaries=[3.5, 7.5, 10.5], title="t")
    assert isinstance(fig, go.Figure)
    assert len(fig.data) == 1 and fig.data[0].type == "heatmap"
    hm = fig.data[0]
    # robust colour range by default: the 2nd-98th percentile, stated in the colour bar
    assert (hm.zmin, hm.zmax) == tuple(np.percentile(m, [2, 98]))
    assert "2–98th pct" in hm.colorbar.title.text and f"{hm.zmax:.2f}" in hm.colorbar.title.text
    self_cka = m.copy()
    np.fill_diagonal(self_cka, 1.0)   # a model with itself: the diagonal's 1s do not set the colour range
    off = self_cka[~np.eye(12, dtype=bool)]
    assert cka_heatmap(self_cka).data[0].zmax == pytest.approx(np.percentile(off, 98))
    auto = cka_heatmap(m, zrange="auto").data[0]
    assert (auto.zmin, auto.zmax) == (m.min(), m.max())
    assert (cka_heatmap(m, zrange="fixed").data[0].zmin, cka_heatmap(m, zrange="fixed").data[0].zmax) == (0, 1)
    assert np.array_equal(np.asarray(hm.z), m)            # values are not clipped, only coloured
    assert fig.layout.yaxis.scaleanchor == "x"
    assert tuple(fig.layout.yaxis.range) == (11.5, -0.5)   # block 1 at the top
    assert list(fig.layout.xaxis.ticktext) == [str(i) for i in range(1, 13)]
    lines = fig.layout.shapes
    assert len(lines) == 6
    assert sorted(s.x0 for s in lines if s.x0 == s.x1) == [3.5, 7.5, 10.5]


def test_cka_heatmap_from_result_and_paper_style():
    res = CKAResult(np.eye(3), ["a", "b", "c"], ["x", "y", "z"], [0.5], [1.5])
    fig = cka_heatmap(res, paper="single", show_values=True)
    assert list(fig.layout.yaxis.ticktext) == ["a", "b", "c"]
    assert len(fig.layout.shapes) == 2
    assert fig.layout.width == 336                          # 3.5 in single column
    assert fig.data[0].texttemplate == "%{text}"
    with pytest.raises(ValueError):
        cka_heatmap(np.zeros((2, 3)), ["a"], ["x", "y", "z"])


def test_drift_curves():
    rows = [{"global_step": s, "kind": "stage", "series": f"stage {k}", "drift": 0.1 * k + 0.01 * s}
            for s in (0, 10, 20) for k in (1, 2)]
    rows += [{"global_step": 0, "kind": "block", "series": "block 1", "drift": 0.0}]
    fig = drift_curves(pd.DataFrame(rows), threshold=0.3)
    assert [t.name for t in fig.data] == ["stage 1", "stage 2"]
    assert list(fig.data[0].x) == [0, 10, 20]
    assert any(s.y0 == 0.3 and s.y1 == 0.3 for s in fig.layout.shapes)
    fig2 = drift_curves({"a": ([0, 1], [0.1, 0.2])})
    assert len(fig2.data) == 1
    # each checkpoint's point is labelled: written above the first series, on hover for all
    labelled = pd.DataFrame(rows).assign(checkpoint=lambda d: d["global_step"].map({0: "epoch-1", 10: "epoch-2",
                                                                                     20: "last = best"}))
    fig3 = drift_curves(labelled, labels="checkpoint")
    assert list(fig3.data[0].text) == ["epoch-1", "epoch-2", "last = best"] and "text" in fig3.data[0].mode
    assert fig3.data[1].text is None and list(fig3.data[1].hovertext) == ["epoch-1", "epoch-2", "last = best"]


def test_nga_weight_figure():
    curves = nga_weight_curves(STAGES, [[0.9, 1.1, 1.0, 1.0], 0.5, 3.0], labels=["learned", "σ=0.5", "σ=3"])
    fig = nga_weight_figure(curves, nga_limits(STAGES), highlight="learned")
    # 3 curves + 2 limits per stage, 4 stages
    assert len(fig.data) == 4 * 5
    assert sum(bool(t.showlegend) for t in fig.data) == 5
    learned = [t for t in fig.data if t.name == "learned"]
    assert len(learned) == 4 and learned[0].line.width > max(t.line.width for t in fig.data if t.name != "learned")
    # the learned σ is drawn first in each panel: underneath, so a compared σ equal to it stays visible
    assert fig.data[0].name == "learned"
    last = [t for t in fig.data if t.name == "σ→0: last block"][0]
    assert list(last.y) == [0, 0, 0, 1]
    assert [a.text for a in fig.layout.annotations] == ["stage 1", "stage 2", "stage 3", "stage 4"]


def test_nga_colours_light_to_dark_as_sigma_grows():
    from plotly.colors import unlabel_rgb

    # values given out of order: the colours still follow σ
    curves = nga_weight_curves(STAGES, [4.0, 0.3162, 1.0], labels=["σ=4", "σ=0.316", "σ=1"])
    fig = nga_weight_figure(curves)
    colour = {t.name: t.line.color for t in fig.data if t.showlegend}
    lightness = {n: sum(unlabel_rgb(c)) if c.startswith("rgb") else sum(int(c[i:i + 2], 16) for i in (1, 3, 5))
                 for n, c in colour.items()}
    assert lightness["σ=0.316"] > lightness["σ=1"] > lightness["σ=4"]


def _sweep_frame():
    grid = np.geomspace(0.1, 10, 5)
    parts = []
    for stage in [1, 2, "joint"]:
        parts.append(pd.DataFrame({"sigma": grid, "stage": [stage] * 5, "accuracy": np.linspace(0.2, 0.6, 5)}))
    return pd.concat(parts, ignore_index=True)


def test_sigma_sweep_figure():
    fig = sigma_sweep_figure(_sweep_frame(), "accuracy", learned_sigma=[1.0, 2.0])
    names = [t.name for t in fig.data]
    assert names[:3] == ["stage 1 varied", "stage 2 varied", "all stages (joint)"]
    assert fig.layout.xaxis.type == "log"
    marks = fig.data[3:]
    assert [list(t.x) for t in marks] == [[1.0, 1.0], [2.0, 2.0]]
    assert sum(bool(t.showlegend) for t in marks) == 1
    with pytest.raises(KeyError):
        sigma_sweep_figure(_sweep_frame(), "kl")


def test_stage_prediction_bars():
    p = np.random.default_rng(0).dirichlet(np.ones(6), size=4)
    fig = stage_prediction_bars(p, CLASSES, fused=p.mean(0))
    assert [t.type for t in fig.data] == ["bar"] * 5
    assert [t.name for t in fig.data] == ["stage 1", "stage 2", "stage 3", "stage 4", "fused"]
    assert list(fig.data[0].x) == CLASSES
    assert fig.layout.barmode == "group"
    with pytest.raises(ValueError):
        stage_prediction_bars(p[:, :5], CLASSES)


def test_confusion_matrix_figure():
    cm = np.array([[5, 1, 0, 0, 0, 0], [0, 3, 3, 0, 0, 0], [0, 0, 0, 0, 0, 0],
                   [1, 0, 0, 4, 0, 0], [0, 0, 0, 0, 2, 2], [0, 0, 0, 1, 0, 6]])
    fig = confusion_matrix_figure(cm, CLASSES)
    z = np.asarray(fig.data[0].z)
    assert np.allclose(z.sum(axis=1)[cm.sum(axis=1) > 0], 1.0)
    assert np.allclose(z[2], 0.0)                        # a class with no samples stays empty
    assert "(5)" in fig.data[0].text[0][0]
    assert fig.layout.yaxis.scaleanchor == "x"
    assert list(fig.layout.xaxis.ticktext) == CLASSES
    raw = confusion_matrix_figure(cm, CLASSES, normalize=False)
    assert np.array_equal(np.asarray(raw.data[0].z), cm)




@needs_browser
def test_figures_export_as_svg(tmp_path):
    from analysis.export import export_figure

    path = export_figure(cka_heatmap(np.eye(4), paper=True), tmp_path / "h.svg")
    assert b"<svg" in path.read_bytes()[:2000]


def test_stage_bars_mark_chance_level_of_accuracy():
    rows = [{"stage": "stage 1", "accuracy": 0.3}, {"stage": "fused", "accuracy": 0.5}]
    fig = stage_bars(rows, metric="accuracy", num_classes=6)
    lines = [s for s in fig.layout.shapes if s.y0 == s.y1]
    assert [round(s.y0, 6) for s in lines] == [round(1 / 6, 6)]
    assert any("chance 1/6" in (a.text or "") for a in fig.layout.annotations)
    assert not stage_bars(rows, metric="accuracy").layout.shapes

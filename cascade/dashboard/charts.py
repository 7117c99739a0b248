"""Small plotly figures for dashboard-only views of one image's prediction.

Everything with a paper counterpart (per-stage bars, NGA curves, σ sweeps, CKA
heatmaps, drift curves) comes from :mod:`analysis.figures`; these two have none: the
predicted distribution as a bar list, and the NGA + fusion weights a prediction used.
"""
from __future__ import annotations

import plotly.graph_objects as go

from .inspect import ImagePrediction

_PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]  # as analysis.figures


def distribution_bar(pred: ImagePrediction, height: int = 220, truth=None) -> go.Figure:
    """The fused predicted emotion distribution, the top class highlighted; with ``truth`` (the
    image's ground-truth distribution, same class order) drawn beside it."""
    top = int(pred.fused.argmax())
    colors = ["#222222" if i == top else "#9AA5B1" for i in range(len(pred.classnames))]
    # Values beside the bars, upright: inside a short bar plotly would turn them 90° or shrink them.
    label = dict(textposition="outside", textangle=0, cliponaxis=False)
    fig = go.Figure(go.Bar(x=pred.fused, y=pred.classnames, orientation="h", marker_color=colors,
                           text=[f"{p:.2f}" for p in pred.fused], name="predicted", **label))
    if truth is not None:
        fig.add_bar(x=list(truth), y=pred.classnames, orientation="h", marker_color=_PALETTE[1], name="ground truth",
                    text=[f"{p:.2f}" for p in truth], **label)
        # the legend above the bars: below them it would sit on the axis title
        fig.update_layout(barmode="group", legend=dict(orientation="h", x=0, y=1.02, yanchor="bottom"))
    fig.update_layout(height=height, margin=dict(l=10, r=36, t=40 if truth is not None else 10, b=10),
                      xaxis=dict(range=[0, 1]), yaxis=dict(autorange="reversed"), showlegend=truth is not None)
    fig.update_xaxes(title_text="probability")
    return fig


def weights_figure(pred: ImagePrediction, height: int = 220) -> go.Figure:
    """NGA weights against block (one trace per stage) and the fusion weights λ (n/a under concat
    fusion, which has none)."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, column_widths=[0.7, 0.3],
                        subplot_titles=("NGA weights per block", "fusion weights λ"))
    for s, (blocks, w) in enumerate(zip(pred.stage_blocks, pred.nga_weights)):
        fig.add_scatter(x=blocks, y=w, mode="lines+markers", name=f"stage {s + 1} (σ={pred.sigma[s]:.3g})",
                        line=dict(color=_PALETTE[s % len(_PALETTE)]), row=1, col=1)
    if pred.fusion_weights is None:
        fig.add_annotation(text="n/a: concat fusion<br>has no λ", x=0.5, y=0.5, xref="x2 domain", yref="y2 domain",
                           showarrow=False)
    else:
        fig.add_bar(x=[f"s{s + 1}" for s in range(len(pred.fusion_weights))], y=pred.fusion_weights,
                    marker_color=[_PALETTE[s % len(_PALETTE)] for s in range(len(pred.fusion_weights))],
                    showlegend=False, row=1, col=2)
    fig.update_xaxes(title_text="block", dtick=1, row=1, col=1)
    fig.update_yaxes(range=[0, 1.05], row=1, col=1)
    fig.update_yaxes(range=[0, 1.05], row=1, col=2)
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=30, b=10), legend=dict(font=dict(size=10)))
    return fig

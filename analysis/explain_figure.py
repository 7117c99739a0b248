"""The explanation grid: each image as the model saw it, then its relevance map for every
stage and the fused prediction, overlaid on the image (one row per image).

Overlays are blended here (numpy) and embedded as PNG images, so the dashboard, the
CLI's PDF/SVG/PNG and the report show the same pixels; export with
:func:`analysis.export.export_figure`.
"""
from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import plotly.graph_objects as go
from PIL import Image
from plotly.colors import sample_colorscale, unlabel_rgb

from analysis.explain import TargetSpec, explain_images, upsample, val_images
from analysis.features import LoadedRun, load_run
from analysis.style import (FONT_FAMILY, FONT_SIZE_PT, TICK_FONT_SIZE_PT, apply_paper_style, column_width_px,
                            pt_to_px)

__all__ = ["colour_lut", "colour_scale_image", "explain_grid", "explanation_grid", "map_caption", "overlay", "overlay_row"]

DEFAULT_COLORSCALE = "Turbo"
CELL_PX = 150          # on screen; a paper figure divides the column width among the cells


@lru_cache(maxsize=8)
def colour_lut(colorscale: str = DEFAULT_COLORSCALE) -> np.ndarray:
    """A plotly colour scale as a [256, 3] uint8 lookup table."""
    colours = sample_colorscale(colorscale, list(np.linspace(0.0, 1.0, 256)), colortype="rgb")
    return np.array([unlabel_rgb(c) for c in colours], dtype=np.float64).round().clip(0, 255).astype(np.uint8)


def colour_scale_image(width: int = 256, height: int = 12, colorscale: str = DEFAULT_COLORSCALE) -> np.ndarray:
    """The maps' colour scale as a [height, width, 3] uint8 strip, relevance 0 at the left to 1 at the right
    (a legend for overlays shown as plain images)."""
    if width < 2 or height < 1:
        raise ValueError(f"a colour scale strip needs width >= 2 and height >= 1, got {width}×{height}")
    idx = np.linspace(0, 255, width).round().astype(np.int64)
    return np.repeat(colour_lut(colorscale)[idx][None], height, axis=0)


def overlay(image: np.ndarray, heat: np.ndarray, opacity: float = 0.5,
            colorscale: str = DEFAULT_COLORSCALE) -> np.ndarray:
    """``image`` [H, W, 3] uint8 blended with ``heat`` [H, W] in [0, 1] coloured by ``colorscale``."""
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity: expected a value in [0, 1], got {opacity}")
    if heat.shape != image.shape[:2]:
        raise ValueError(f"heat map {heat.shape} and image {image.shape[:2]} differ in size")
    idx = (np.clip(heat, 0.0, 1.0) * 255).round().astype(np.int64)
    colour = colour_lut(colorscale)[idx].astype(np.float64)
    out = (1.0 - opacity) * image.astype(np.float64) + opacity * colour
    return out.round().clip(0, 255).astype(np.uint8)


def _png_uri(rgb: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", optimize=False)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _header(name: str) -> str:
    # "stage 1 (blocks 1-4)" on two lines: the cells of a paper figure are about an inch wide.
    return name.replace(" (", "<br>").rstrip(")") if "(" in name else name


def _short(name: str, limit: int = 22) -> str:
    return name if len(name) <= limit else "…" + name[-(limit - 1):]


def map_caption(relevance, k: int, b: int, sep: str = " · ") -> str:
    """What map ``k`` of image ``b`` says: the probability of the explained class, the prompt share."""
    share = relevance.prompt_share[k, b]
    prompts = "prompts n/a" if not np.isfinite(share) else f"prompts {share:.0%}"
    return f"p({relevance.target_names[b]}) {relevance.target_prob[k, b]:.2f}{sep}{prompts}"


def overlay_row(explained, b: int, opacity: float = 0.5,
                colorscale: str = DEFAULT_COLORSCALE) -> list[tuple[np.ndarray, str]]:
    """Image ``b`` as the model saw it, then each map over it: ``(rgb, caption)`` per cell."""
    rel = explained.relevance
    h, w = explained.images.shape[1:3]
    heat = upsample(rel.maps[:, b], (h, w))
    cells = [(explained.images[b], f"model input · explains {rel.target_names[b]}")]
    for k, name in enumerate(rel.names):
        cells.append((overlay(explained.images[b], heat[k], opacity, colorscale), f"{name}: {map_caption(rel, k, b)}"))
    return cells


def explanation_grid(explained, *, opacity: float = 0.5, colorscale: str = DEFAULT_COLORSCALE,
                     paper: bool | str = False, title: str | None = None, note: bool = True) -> go.Figure:
    """One row per image: the image, then its map for each stage and the fused prediction.

    ``explained``: :class:`analysis.explain.Explained`. Under each map: the probability that
    output gives the explained class and the share of relevance on prompt tokens. ``paper``:
    ``"single"``/``"double"`` (or True: single) lays the grid out at a column's width in
    the print style of :mod:`analysis.style`. ``note``: a footnote saying what the numbers
    are (and that the backbone has random weights, when it has).
    """
    rel = explained.relevance
    n_maps, n_img = rel.maps.shape[0], rel.num_images
    cols = n_maps + 1
    h, w = explained.images.shape[1:3]
    heat = rel.upsampled((h, w))
    column = ("single" if paper is True else str(paper)) if paper else None
    font = pt_to_px(TICK_FONT_SIZE_PT) if column else 12
    bar = 48 if column else 70                 # room for the colour bar on the right
    width = column_width_px(column) if column else cols * CELL_PX + bar
    cell = (width - bar) / cols
    # two caption lines at plotly's line height (1.3 em) and a gap before the next row's images
    head, caption, foot = 3.2 * font, 3.2 * font, (3.6 * font if note else 0.5 * font)
    row_h = cell + caption
    height = head + n_img * row_h + foot + (2 * font if title else 0)

    fig = go.Figure()
    annotations = []
    top = 1.0 - (2 * font if title else 0) / height
    for b in range(n_img):
        y1 = top - (head + b * row_h) / height
        y0 = y1 - cell / height
        cells = [(explained.images[b], None)] + [
            (overlay(explained.images[b], heat[k, b], opacity, colorscale), k) for k in range(n_maps)]
        for c, (rgb, k) in enumerate(cells):
            n = b * cols + c + 1
            x0, x1 = (c * cell + 2) / width, ((c + 1) * cell - 2) / width
            suffix = "" if n == 1 else str(n)
            fig.add_trace(go.Image(source=_png_uri(rgb), xaxis=f"x{suffix}", yaxis=f"y{suffix}", hoverinfo="skip"))
            fig.update_layout({f"xaxis{suffix}": dict(domain=[x0, x1], visible=False, range=[-0.5, w - 0.5]),
                               f"yaxis{suffix}": dict(domain=[y0, y1], visible=False, range=[h - 0.5, -0.5],
                                                      scaleanchor=f"x{suffix}")})
            if k is None:
                text = f"{_short(explained.names[b])}<br>explains: {rel.target_names[b]}"
            else:
                text = map_caption(rel, k, b, "<br>")
            annotations.append(dict(x=(x0 + x1) / 2, y=y0 - 0.2 * font / height, xref="paper", yref="paper",
                                    text=text, showarrow=False, xanchor="center", yanchor="top",
                                    font={"size": font}))
            if b == 0:
                label = "image" if k is None else _header(rel.names[k])
                annotations.append(dict(x=(x0 + x1) / 2, y=y1 + 0.2 * font / height, xref="paper", yref="paper",
                                        text=label, showarrow=False, xanchor="center", yanchor="bottom",
                                        font={"size": font}))
    if note:
        text = (f"Gradient-weighted attention rollout ({rel.score} score), each map normalised to [0, 1]."
                "<br>p: probability of the explained class; prompts: share of relevance on prompt tokens.")
        if explained.random_weights:
            text += " Backbone with RANDOM weights."
        annotations.append(dict(x=0, y=0, xref="paper", yref="paper", text=text, showarrow=False, xanchor="left",
                                yanchor="bottom", font={"size": font * 0.9}, align="left"))
    # A colour bar for the maps: an invisible scatter carries it.
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", hoverinfo="skip", showlegend=False,
                             marker=dict(colorscale=colorscale, cmin=0, cmax=1, color=[0], showscale=True,
                                         colorbar=dict(title=dict(text="relevance", side="right"),
                                                       x=(width - bar + 4) / width, xanchor="left",
                                                       len=min(1.0, 3 * cell / height), y=top - head / height,
                                                       yanchor="top", thickness=8, tickvals=[0, 0.5, 1],
                                                       tickfont={"size": font}))))
    layout = dict(width=width, height=height, annotations=annotations, showlegend=False, autosize=False,
                  title={"text": title, "y": 1.0, "yanchor": "top"} if title else None,
                  margin=dict(l=0, r=0, t=0, b=0), plot_bgcolor="white", paper_bgcolor="white")
    if column:
        apply_paper_style(fig, column=column, height=height)
        layout["font"] = {"family": FONT_FAMILY, "size": pt_to_px(FONT_SIZE_PT), "color": "black"}
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
    fig.update_layout(**layout)
    return fig


def explain_grid(run, images: Sequence[Any] | int = 4, target: TargetSpec = None, *, checkpoint: str = "best",
                 device: str = "cpu", split: str = "val", score: str = "centered", opacity: float = 0.5,
                 paper: bool | str = "double"):
    """The explanation grid of a run: ``(figure, explained)``.

    ``run``: a run folder or an :class:`analysis.features.LoadedRun`; ``images``: inputs as
    for :func:`analysis.explain.explain_images`, or a number of ``split`` images
    (:func:`analysis.explain.val_images`).
    """
    loaded = run if isinstance(run, LoadedRun) else load_run(run, checkpoint, device)
    items = val_images(loaded, images, split) if isinstance(images, int) else images
    explained = explain_images(loaded.model, items, target, score=score)
    return explanation_grid(explained, opacity=opacity, paper=paper), explained

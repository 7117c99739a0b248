"""A print style for plotly figures: serif type, column widths, small fonts, thin lines.

Plotly measures everything in CSS pixels (96 per inch) and kaleido's PDF pages
are exactly the figure's pixel size at that resolution, so a figure laid out
at 336 px is a 3.5 in (252 pt) single-column PDF.  Sizes below are therefore
given in inches or points and converted with :func:`pt_to_px` /
:func:`in_to_px`, so that an "8 pt" label really is 8 pt on paper.
"""
from __future__ import annotations

from typing import Literal

import plotly.graph_objects as go

__all__ = [
    "COLUMN_WIDTH_IN",
    "FONT_FAMILY",
    "FONT_SIZE_PT",
    "LINE_WIDTH_PT",
    "PX_PER_INCH",
    "PT_PER_INCH",
    "TICK_FONT_SIZE_PT",
    "TITLE_FONT_SIZE_PT",
    "apply_paper_style",
    "column_width_px",
    "in_to_px",
    "pt_to_px",
]

PX_PER_INCH = 96.0
PT_PER_INCH = 72.0

# Times New Roman where installed; on Debian, fontconfig maps it to the
# metric-compatible Liberation Serif (fonts-liberation, a Chromium dependency),
# with DejaVu Serif as the last named resort.
FONT_FAMILY = "Times New Roman, Times, Liberation Serif, DejaVu Serif, serif"

# Common two-column conference/journal layouts (IEEE, CVPR, ACM).
COLUMN_WIDTH_IN = {"single": 3.5, "double": 7.16}
# Height used when none is given: a 4:3-ish panel for one column, a shallower
# strip for the full page width.
DEFAULT_HEIGHT_IN = {"single": 2.6, "double": 2.8}

FONT_SIZE_PT = 8.0
TICK_FONT_SIZE_PT = 7.0
TITLE_FONT_SIZE_PT = 9.0
LINE_WIDTH_PT = 0.5
TRACE_LINE_WIDTH_PT = 1.0


def pt_to_px(points: float) -> float:
    """Typographic points to CSS pixels (plotly's unit)."""
    return points * PX_PER_INCH / PT_PER_INCH


def in_to_px(inches: float) -> float:
    """Inches to CSS pixels."""
    return inches * PX_PER_INCH


def column_width_px(column: Literal["single", "double"] = "single") -> int:
    """Figure width in px for a single- (3.5 in) or double-column (7.16 in) figure."""
    try:
        return round(in_to_px(COLUMN_WIDTH_IN[column]))
    except KeyError:
        raise ValueError(f"column must be 'single' or 'double', got {column!r}") from None


def apply_paper_style(
    fig: go.Figure,
    column: Literal["single", "double"] = "single",
    height: float | None = None,
) -> go.Figure:
    """Restyle ``fig`` in place for print and return it (for chaining).

    Args:
        fig: any plotly figure, with or without subplots.
        column: ``"single"`` (3.5 in = 252 pt = 336 px wide) or ``"double"``
            (7.16 in ≈ 516 pt ≈ 687 px wide).
        height: height in CSS px (96 px = 1 in); default 2.6 in for a single
            column and 2.8 in for a double one.

    The figure gets a white background, serif 8 pt text (7 pt ticks, 9 pt
    titles), 0.5 pt boxed axes without grid lines, thin colour bars, and 1 pt
    trace lines where a trace has not set its own width.  Margins are small and
    left to plotly's automargin so labels are never clipped.
    """
    width = column_width_px(column)
    if height is None:
        height = round(in_to_px(DEFAULT_HEIGHT_IN[column]))
    line = pt_to_px(LINE_WIDTH_PT)
    tick_font = {"family": FONT_FAMILY, "size": pt_to_px(TICK_FONT_SIZE_PT), "color": "black"}

    fig.update_layout(
        template="simple_white",
        width=width,
        height=height,
        autosize=False,
        font={"family": FONT_FAMILY, "size": pt_to_px(FONT_SIZE_PT), "color": "black"},
        title_font={"family": FONT_FAMILY, "size": pt_to_px(TITLE_FONT_SIZE_PT)},
        paper_bgcolor="white",
        plot_bgcolor="white",
        margin={"l": 4, "r": 4, "t": 24 if fig.layout.title.text else 4, "b": 4, "pad": 0},
        legend={"font": {"size": pt_to_px(TICK_FONT_SIZE_PT)}, "bgcolor": "rgba(0,0,0,0)", "borderwidth": 0},
    )
    axis_style = {
        "showline": True,
        "mirror": True,
        "linewidth": line,
        "linecolor": "black",
        "ticks": "outside",
        "ticklen": 3,
        "tickwidth": line,
        "tickcolor": "black",
        "tickfont": tick_font,
        "title_font": {"family": FONT_FAMILY, "size": pt_to_px(FONT_SIZE_PT)},
        "title_standoff": 4,
        "showgrid": False,
        "zeroline": False,
        "automargin": True,
    }
    fig.update_xaxes(**axis_style)
    fig.update_yaxes(**axis_style)

    # Subplot titles and labels are annotations: the same serif type, one size.
    fig.update_annotations(font_family=FONT_FAMILY, font_size=pt_to_px(FONT_SIZE_PT))
    if fig.layout.annotations and any(a.yref == "paper" for a in fig.layout.annotations):
        fig.update_layout(margin={"t": (40 if fig.layout.title.text else 20)})

    for trace in fig.data:
        if "colorbar" in trace:
            trace.colorbar.update(
                thickness=8,
                outlinewidth=line,
                tickwidth=line,
                ticklen=2,
                tickfont=tick_font,
            )
        if "line" in trace and trace.line.width is None and trace.type in ("scatter", "scattergl"):
            trace.line.width = pt_to_px(TRACE_LINE_WIDTH_PT)
    return fig

"""A print style for plotly figures: serif type, column widths, small fonts, thin lines.

Plotly measures everything in CSS pixels (96 per inch) and kaleido's PDF pages
are exactly the figure's pixel size at that resolution, so a figure laid out
at 336 px is a 3.5 in (252 pt) single-column PDF.  Sizes below are therefore
given in inches or points and converted with :func:`pt_to_px` /
:func:`in_to_px`, so that an "8 pt" label really is 8 pt on paper.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Literal

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
    "add_chance_line",
    "apply_paper_style",
    "column_width_px",
    "format_sig",
    "in_to_px",
    "log_ticks",
    "pt_to_px",
    "screen_margins",
    "unit_range",
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
    # An x-axis title needs its tick labels' and its own height below the plot. automargin should
    # add it but does not always in a fixed-height figure with a title and a legend on top, so
    # the bottom margin starts large enough.
    if any(ax.title.text and ax.visible is not False for ax in fig.select_xaxes()):
        needed = 3 + pt_to_px(TICK_FONT_SIZE_PT) * 1.3 + 4 + pt_to_px(FONT_SIZE_PT) * 1.3 + 2
        fig.update_layout(margin={"b": max(fig.layout.margin.b or 0, round(needed))})

    legend = fig.layout.legend
    if legend.orientation == "h" and legend.y is not None and legend.y >= 1:
        # a legend row above the plot: room for it between the title and the plot area
        fig.update_layout(margin={"t": fig.layout.margin.t + round(pt_to_px(2.2 * TICK_FONT_SIZE_PT))})
    if fig.layout.title.text:   # the title at the very top, clear of a legend or panel titles below it
        fig.update_layout(title={"y": 1.0, "yref": "container", "yanchor": "top", "pad": {"t": 4}})

    # Subplot titles and labels are annotations: the same serif type, one size.
    fig.update_annotations(font_family=FONT_FAMILY, font_size=pt_to_px(FONT_SIZE_PT))
    if fig.layout.annotations and any(a.yref == "paper" for a in fig.layout.annotations):
        fig.update_layout(margin={"t": (40 if fig.layout.title.text else 20)})

    # Values written outside bars, unclipped, sit past the plot area: keep room for them there.
    outside = [t for t in fig.data if t.type == "bar" and t.textposition == "outside" and t.cliponaxis is False]
    if any(t.orientation == "h" for t in outside):
        fig.update_layout(margin={"r": max(fig.layout.margin.r or 0, round(pt_to_px(3 * TICK_FONT_SIZE_PT)))})
    if any(t.orientation != "h" for t in outside):
        fig.update_layout(margin={"t": (fig.layout.margin.t or 0) + round(pt_to_px(1.5 * TICK_FONT_SIZE_PT))})
    for trace in fig.data:
        if "colorbar" in trace:
            trace.colorbar.update(
                thickness=8,
                outlinewidth=line,
                tickwidth=line,
                ticklen=2,
                tickfont=tick_font,
            )
        if trace.type == "bar" and trace.text is not None:   # value labels at the tick labels' size
            trace.textfont.update(family=FONT_FAMILY, size=pt_to_px(TICK_FONT_SIZE_PT))
        if "line" in trace and trace.line.width is None and trace.type in ("scatter", "scattergl"):
            trace.line.width = pt_to_px(TRACE_LINE_WIDTH_PT)
    return fig


def format_sig(value: float, digits: int = 4) -> str:
    """``value`` to ``digits`` significant digits in one notation for every magnitude (``%g``):
    ``0.316228`` → ``"0.3162"``, ``1.604e-28`` → ``"1.604e-28"``, ``1.0`` → ``"1"``."""
    return f"{float(value):.{digits}g}"


def log_ticks(lo: float, hi: float) -> list[float]:
    """Tick values 1, 2, 5 per decade between ``lo`` and ``hi`` (both > 0), e.g. 0.1 0.2 0.5 1 2 5 10.

    Plotly's own log ticks label the minor ticks "2" and "5" without their decade, so a σ axis
    from 0.05 to 20 reads "5, 0.1, 2, 5, 1, …"; explicit 1-2-5 ticks read as numbers.
    """
    if not (lo > 0 and hi > 0):
        raise ValueError(f"log ticks need positive limits, got {lo}, {hi}")
    lo, hi = min(lo, hi), max(lo, hi)
    ticks = []
    for decade in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        for m in (1, 2, 5):
            t = float(f"{m * 10.0 ** decade:.12g}")
            if lo * (1 - 1e-9) <= t <= hi * (1 + 1e-9):
                ticks.append(t)
    return ticks


def unit_range(values: Iterable[Any], pad: float = 0.05, min_span: float = 0.1) -> list[float]:
    """An axis range for values that are probabilities or rates: the data with ``pad`` of the span
    around it, at least ``min_span`` wide (one point or a flat line), and never outside [0, 1]."""
    finite = [float(v) for v in values if v is not None and isinstance(v, (int, float)) and math.isfinite(v)]
    if not finite:
        return [0.0, 1.0]
    lo, hi = min(finite), max(finite)
    span = max(hi - lo, min_span)
    mid = (lo + hi) / 2
    lo, hi = min(lo, mid - span / 2) - pad * span, max(hi, mid + span / 2) + pad * span
    if lo < 0:
        hi, lo = min(1.0, hi - lo), 0.0
    if hi > 1:
        lo, hi = max(0.0, lo - (hi - 1)), 1.0
    return [lo, hi]


def add_chance_line(fig: go.Figure, num_classes: int, **where: Any) -> None:
    """A dotted horizontal line at the chance level 1/C of a C-class accuracy, labelled on the plot
    (opaque: the print template draws shapes at 30 % opacity)."""
    if num_classes is None or num_classes < 2:
        return
    level = 1.0 / num_classes
    fig.add_hline(y=level, line={"dash": "dot", "color": "#555555", "width": 1.5}, opacity=1,
                  annotation_text=f"chance 1/{num_classes}", annotation_position="top right",
                  annotation_font={"color": "#555555", "size": 10}, name="chance", **where)


def screen_margins(fig: go.Figure) -> go.Figure:
    """Margins for a figure on screen: plotly's default 100 px top margin is kept only for a title.

    Room is left for subplot titles and for a legend placed above the plot.
    """
    m = fig.layout.margin
    top = 40 if fig.layout.title.text else 10
    if fig.layout.annotations and any(a.yref == "paper" and (a.y or 0) >= 1 for a in fig.layout.annotations):
        top += 20
    legend = fig.layout.legend
    if legend.y is not None and legend.y > 1:
        top += 30
    fig.update_layout(margin={"t": top if m.t is None else m.t, "l": 10 if m.l is None else m.l,
                              "r": 10 if m.r is None else m.r, "b": 10 if m.b is None else m.b})
    return fig

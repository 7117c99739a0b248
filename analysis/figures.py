"""Plotly figures for the analysis: CKA heatmaps, drift curves, NGA weights, σ sweeps,
per-stage predictions and confusion matrices.

Every function takes plain data (arrays, lists, DataFrames) and returns a
``go.Figure``; none reads files or models. ``paper=True`` (or ``"single"`` /
``"double"``) applies :func:`analysis.style.apply_paper_style` for a one- or
two-column print figure; export with :func:`analysis.export.export_figure`.
Stages and blocks are 1-based in every label.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from analysis.style import add_chance_line, log_ticks, unit_range
from cascade.metrics import display_name, is_unit_interval

__all__ = [
    "cka_heatmap",
    "confusion_matrix_figure",
    "drift_curves",
    "nga_weight_figure",
    "sigma_sweep_figure",
    "stage_prediction_bars",
]

# Colour-blind-safe qualitative palette (Okabe & Ito), stage 1 first.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
LIMIT_COLOUR = "#7f7f7f"
# The reference curve of a figure (the learned σ): wide and pale, drawn under the compared curves.
HIGHLIGHT_COLOUR = "#b8b8b8"


def palette_colour(i: int) -> str:
    """The ``i``-th series colour of the colour-blind-safe palette (cycling)."""
    return PALETTE[i % len(PALETTE)]


def sequential_colours(n: int, scale: str = "Plasma") -> list[str]:
    """``n`` distinct colours along a sequential scale (its pale end left out: it vanishes on white)."""
    if n <= 0:
        return []
    from plotly.colors import sample_colorscale

    return sample_colorscale(scale, [0.85 * i / max(1, n - 1) for i in range(n)])


def paper_style(fig: go.Figure, paper: bool | str, height: float | None = None) -> go.Figure:
    """``fig`` in the paper style for a column (``True``: single, or ``"single"``/``"double"``); unchanged if ``paper`` is false."""
    if not paper:
        return fig
    from analysis.style import apply_paper_style

    column = "single" if paper is True else str(paper)
    return apply_paper_style(fig, column=column, height=height)


def finite_values(values: Any) -> list[float]:
    """The finite numbers of a column (None and NaN left out)."""
    out = []
    for v in list(values):
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if np.isfinite(f):
            out.append(f)
    return out


def _as_array(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


# ---------------------------------------------------------------------------
# CKA heatmap
# ---------------------------------------------------------------------------


def cka_heatmap(
    matrix: Any,
    rows: Sequence[str] | None = None,
    cols: Sequence[str] | None = None,
    *,
    row_boundaries: Sequence[float] | None = None,
    col_boundaries: Sequence[float] | None = None,
    title: str | None = None,
    x_title: str = "block",
    y_title: str = "block",
    colorscale: str = "Viridis",
    show_values: bool = False,
    zrange: str = "robust",
    paper: bool | str = False,
) -> go.Figure:
    """A CKA matrix as a heatmap with square cells.

    Args:
        matrix: [R, C] values (CKA; values outside the colour range are clipped by
            the colour scale, not altered). A :class:`analysis.drift.CKAResult`
            works too (its labels and boundaries are used unless given).
        zrange: ``"robust"`` (default) spans the colours over the 2nd-98th percentile of
            the values, so matrices whose values all lie between 0.9 and 1 still show
            their structure and the diagonal's 1s do not set the top; ``"auto"`` over
            min-max; ``"fixed"`` uses 0-1, comparable across figures. The colour bar's
            title states the span.
        rows, cols: labels (default 1..R / 1..C); row 0 is drawn at the top.
        row_boundaries, col_boundaries: positions between cells (0-based, e.g. 3.5
            between the 4th and 5th) where stages change; drawn as white lines.
        show_values: write each value in its cell.
    """
    if hasattr(matrix, "matrix") and hasattr(matrix, "rows"):
        res = matrix
        matrix = res.matrix
        rows = rows if rows is not None else res.rows
        cols = cols if cols is not None else res.cols
        row_boundaries = row_boundaries if row_boundaries is not None else res.row_boundaries
        col_boundaries = col_boundaries if col_boundaries is not None else res.col_boundaries
    m = _as_array(matrix)
    if m.ndim != 2:
        raise ValueError(f"matrix must be 2-D, got shape {m.shape}")
    r, c = m.shape
    rows = [str(v) for v in (rows if rows is not None else range(1, r + 1))]
    cols = [str(v) for v in (cols if cols is not None else range(1, c + 1))]
    if len(rows) != r or len(cols) != c:
        raise ValueError(f"{len(rows)} row / {len(cols)} column labels for a {r}×{c} matrix")
    # Numeric cell coordinates (0..C-1) with the labels as ticks: boundary lines then sit exactly between cells.
    zmin, zmax = cka_color_range(m, zrange)
    digits = 2 if zmax - zmin >= 0.2 else 3
    text = np.vectorize(lambda v: f"{v:.{digits}f}")(m) if show_values else None
    colorbar: dict[str, Any] = {"title": {"text": cka_colorbar_title(zmin, zmax, zrange), "side": "right"}}
    if zrange == "fixed":
        colorbar["tickvals"] = [0, 0.25, 0.5, 0.75, 1.0]
    fig = go.Figure(go.Heatmap(
        z=m, x=list(range(c)), y=list(range(r)), zmin=zmin, zmax=zmax, colorscale=colorscale,
        colorbar=colorbar,
        customdata=np.array([[f"{rows[i]} / {cols[j]}" for j in range(c)] for i in range(r)]),
        hovertemplate="%{customdata}<br>CKA %{z:.4f}<extra></extra>",
        text=text, texttemplate="%{text}" if show_values else None,
        name="CKA",
    ))
    shapes = []
    line = {"color": "white", "width": 1.5}
    for b in (col_boundaries or []):
        shapes.append({"type": "line", "x0": b, "x1": b, "y0": -0.5, "y1": r - 0.5, "xref": "x", "yref": "y",
                       "line": line})
    for b in (row_boundaries or []):
        shapes.append({"type": "line", "y0": b, "y1": b, "x0": -0.5, "x1": c - 0.5, "xref": "x", "yref": "y",
                       "line": line})
    fig.update_layout(shapes=shapes, title={"text": title} if title else None)
    fig.update_xaxes(title_text=x_title, tickmode="array", tickvals=list(range(c)), ticktext=cols,
                     range=[-0.5, c - 0.5], constrain="domain", showgrid=False, zeroline=False)
    fig.update_yaxes(title_text=y_title, tickmode="array", tickvals=list(range(r)), ticktext=rows,
                     range=[r - 0.5, -0.5], scaleanchor="x", scaleratio=1, constrain="domain",
                     showgrid=False, zeroline=False)
    return paper_style(fig, paper)


CKA_ZRANGES = ("robust", "auto", "fixed")
# Percentiles of the robust colour range: a few extreme cells (the diagonal's 1s) do not set it.
ROBUST_PERCENTILES = (2.0, 98.0)


def cka_color_range(m: np.ndarray, zrange: str = "robust") -> tuple[float, float]:
    """Colour limits of a CKA heatmap.

    ``robust``: the 2nd to 98th percentile of the finite values (off the diagonal of a matrix
    of a model with itself, whose diagonal is all 1), so that a few cells far from the rest do
    not squeeze the others into one colour;
    ``auto``: the finite values' min/max; ``fixed``: 0-1, comparable across figures.
    """
    if zrange == "fixed":
        return 0.0, 1.0
    if zrange not in CKA_ZRANGES:
        raise ValueError(f"zrange must be one of {', '.join(CKA_ZRANGES)}, got {zrange!r}")
    values = m
    if zrange == "robust" and m.ndim == 2 and m.shape[0] == m.shape[1] > 1 and np.allclose(np.diag(m), 1.0):
        values = m[~np.eye(m.shape[0], dtype=bool)]   # a self-similarity matrix: its 1s on the diagonal say nothing
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    if zrange == "robust":
        lo, hi = (float(v) for v in np.percentile(finite, ROBUST_PERCENTILES))
    else:
        lo, hi = float(finite.min()), float(finite.max())
    if hi - lo < 1e-6:   # a constant matrix: a small band around its value
        lo, hi = lo - 0.005, hi + 0.005
    return lo, hi


def cka_colorbar_title(zmin: float, zmax: float, zrange: str) -> str:
    """The colour bar's title: what the colours span, so a reader knows the range is not 0-1."""
    digits = 2 if zmax - zmin >= 0.2 else 3
    span = f"{zmin:.{digits}f}–{zmax:.{digits}f}"
    if zrange == "fixed":
        return "CKA"
    lo, hi = ROBUST_PERCENTILES
    how = f"{lo:g}–{hi:g}th pct" if zrange == "robust" else "min–max"
    return f"CKA ({span}, {how})"


def integer_axis(fig: go.Figure, values: Sequence[Any], axis: str = "x", **where: Any) -> None:
    """Ticks only at whole numbers on an axis whose values are counts (stages, blocks, epochs, steps)."""
    vals = [v for v in values if isinstance(v, (int, float, np.integer, np.floating)) and np.isfinite(v)]
    if not vals or any(float(v) != int(v) for v in vals):
        return
    update = fig.update_xaxes if axis == "x" else fig.update_yaxes
    distinct = sorted({int(v) for v in vals})
    if len(distinct) <= 16:
        update(tickmode="array", tickvals=distinct, ticktext=[str(v) for v in distinct], **where)
    else:
        update(tickformat="d", **where)


# ---------------------------------------------------------------------------
# drift curves
# ---------------------------------------------------------------------------


def drift_curves(
    df: Any,
    *,
    x: str = "global_step",
    y: str = "drift",
    series: str = "series",
    threshold: float | None = None,
    kind: str | None = "stage",
    title: str | None = None,
    labels: str | None = None,
    paper: bool | str = False,
) -> go.Figure:
    """Drift (or CKA) over training, one line per series.

    ``df``: long format as from :func:`analysis.drift.drift_from_logs` or
    :func:`analysis.drift.drift_over_checkpoints` (columns ``x``, ``y``, ``series`` and,
    if present, ``kind``), or a dict ``{series: (xs, ys)}``. ``kind`` keeps only those
    rows (``"stage"``, ``"block"``, or None for all). A dashed line marks ``threshold``.
    ``labels`` names a column that labels each point (e.g. the checkpoint): written above the
    first series' points and shown on hover for every series.
    """
    fig = go.Figure()
    texts: list[list[str] | None] = []
    if isinstance(df, dict):
        items = [(name, np.asarray(v[0]), np.asarray(v[1])) for name, v in df.items()]
    else:
        data = df
        if kind is not None and "kind" in data.columns:
            data = data[data["kind"] == kind]
        items = []
        for name in dict.fromkeys(data[series].tolist()):
            part = data[data[series] == name].sort_values(x, kind="stable")
            items.append((name, part[x].to_numpy(), part[y].to_numpy(dtype=np.float64)))
            texts.append([str(t) for t in part[labels]] if labels else None)
    for i, (name, xs, ys) in enumerate(items):
        text = texts[i] if i < len(texts) else None
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers+text" if text and i == 0 else "lines+markers",
                                 name=str(name), line={"color": palette_colour(i)}, marker={"size": 5},
                                 text=text if text and i == 0 else None, textposition="top center",
                                 hovertext=text, textfont={"size": 10}))
    if threshold is not None:
        fig.add_hline(y=threshold, line={"dash": "dash", "color": "#d62728", "width": 1},
                      annotation_text=f"threshold {threshold:g}", annotation_position="top left")
    fig.update_layout(title={"text": title} if title else None, legend={"title": {"text": ""}})
    fig.update_xaxes(title_text="step" if x == "global_step" else x)
    fig.update_yaxes(title_text="1 − CKA (drift)" if y == "drift" else y)
    integer_axis(fig, [v for _, xs, _ in items for v in np.asarray(xs).tolist()])
    return paper_style(fig, paper)


# ---------------------------------------------------------------------------
# NGA weights
# ---------------------------------------------------------------------------


def nga_weight_figure(
    curves: Any,
    limits: Any = None,
    *,
    highlight: str | None = None,
    title: str | None = None,
    paper: bool | str = False,
) -> go.Figure:
    """NGA weights against block, one panel per stage.

    Args:
        curves: DataFrame from :func:`analysis.sigma.nga_weight_curves` (columns
            ``stage``, ``curve``, ``block``, ``weight``) — e.g. the learned σ and a few
            chosen σ values.
        limits: DataFrame from :func:`analysis.sigma.nga_limits` (σ→0: last block only;
            σ→∞: plain mean), drawn thin grey, σ→0 dashed and σ→∞ dotted; None to omit.
        highlight: name of the curve to draw wide, in pale grey under the others (e.g. the
            learned σ), so a compared σ equal to it stays visible on top of it; every other
            curve gets its own colour, light to dark as its σ grows.
    """
    from plotly.subplots import make_subplots

    stages = sorted(int(s) for s in set(curves["stage"]))
    fig = make_subplots(rows=1, cols=len(stages), shared_yaxes=True,
                        subplot_titles=[f"stage {s}" for s in stages], horizontal_spacing=0.04)
    names = list(dict.fromkeys(curves["curve"].tolist()))
    others = [n for n in names if n != highlight]
    if "sigma" in curves.columns:   # colour by σ whatever order the values were given in
        mean_sigma = curves.groupby("curve", sort=False)["sigma"].mean()
        others = sorted(others, key=lambda n: float(mean_sigma[n]))
    colours = dict(zip(others, reversed(sequential_colours(len(others)))))
    drawn = ([highlight] if highlight in names else []) + others   # the highlight first: underneath
    for col, s in enumerate(stages, start=1):
        part = curves[curves["stage"] == s]
        for name in drawn:
            p = part[part["curve"] == name].sort_values("block")
            if p.empty:
                continue
            wide = highlight is not None and name == highlight
            fig.add_trace(go.Scatter(
                x=p["block"], y=p["weight"], mode="lines+markers", name=str(name), legendgroup=str(name),
                showlegend=col == 1,
                line={"color": HIGHLIGHT_COLOUR if wide else colours[name], "width": 6 if wide else 1.5},
                marker={"size": 9 if wide else 4},
            ), row=1, col=col)
        if limits is not None:
            lp = limits[limits["stage"] == s]
            for j, name in enumerate(dict.fromkeys(lp["curve"].tolist())):
                p = lp[lp["curve"] == name].sort_values("block")
                fig.add_trace(go.Scatter(
                    x=p["block"], y=p["weight"], mode="lines", name=str(name), legendgroup=str(name),
                    showlegend=col == 1, line={"color": LIMIT_COLOUR, "dash": "dash" if j == 0 else "dot", "width": 1},
                ), row=1, col=col)
        blocks = sorted(set(part["block"].tolist()))
        fig.update_xaxes(tickmode="array", tickvals=blocks, title_text="block", row=1, col=col)
    fig.update_yaxes(title_text="weight w_l", range=[-0.03, 1.03], row=1, col=1)
    fig.update_layout(title={"text": title} if title else None)
    fig = paper_style(fig, paper)
    if paper:
        # the panel titles sit above the plot area: keep room for them
        fig.update_layout(margin={"t": max(fig.layout.margin.t or 0, 44 if title else 24)})
    return fig


# ---------------------------------------------------------------------------
# σ sweeps
# ---------------------------------------------------------------------------


def sigma_sweep_figure(
    df: Any,
    metric: str = "accuracy",
    *,
    learned_sigma: Sequence[float] | float | None = None,
    num_classes: int | None = None,
    title: str | None = None,
    paper: bool | str = False,
) -> go.Figure:
    """A metric against σ (log axis, ticks 0.1 0.2 0.5 1 2 5 …), one line per sweep in ``df``.

    ``df``: from :meth:`analysis.sigma.SigmaSweeper.sweep` / ``sweep_all`` (columns
    ``sigma``, ``stage`` — a 1-based stage that was varied, or ``"joint"`` — and the
    metric). ``learned_sigma``: the model's σ per stage (or one value), marked with a
    dotted vertical line in the matching stage's colour. A metric that is a rate gets an axis
    inside [0, 1]; accuracy with ``num_classes`` a dotted chance line at 1/C.
    """
    if metric not in df.columns:
        raise KeyError(f"metric {metric!r} not in the sweep (columns: {sorted(map(str, df.columns))})")
    fig = go.Figure()
    groups = list(dict.fromkeys(df["stage"].tolist())) if "stage" in df.columns else ["joint"]
    for g in groups:
        part = df[df["stage"] == g] if "stage" in df.columns else df
        part = part.sort_values("sigma")
        if g == "joint":
            name, colour, dash = "all stages (joint)", "black", "dash"
        else:
            name, colour, dash = f"stage {int(g)} varied", palette_colour(int(g) - 1), "solid"
        fig.add_trace(go.Scatter(x=part["sigma"], y=part[metric], mode="lines", name=name,
                                 line={"color": colour, "dash": dash}))
    if learned_sigma is not None:
        values = [float(learned_sigma)] if np.isscalar(learned_sigma) else [float(v) for v in learned_sigma]
        for s, v in enumerate(values):
            colour = palette_colour(s) if len(values) > 1 else "black"
            label = f"learned σ{s + 1}" if len(values) > 1 else "learned σ"
            # One legend entry for all marks; hovering a mark names its stage.
            fig.add_trace(go.Scatter(x=[v, v], y=[0, 1], xaxis="x", yaxis="y2", mode="lines",
                                     name="learned σ" if s == 0 else label, hovertext=label,
                                     line={"color": colour, "dash": "dot", "width": 1}, hoverinfo="text+x",
                                     showlegend=s == 0, legendgroup="learned"))
        fig.update_layout(yaxis2={"overlaying": "y", "range": [0, 1], "visible": False, "fixedrange": True})
    sigmas = [float(v) for v in df["sigma"] if float(v) > 0]
    ticks = log_ticks(min(sigmas), max(sigmas)) if sigmas else []
    fig.update_xaxes(type="log", title_text="σ", tickmode="array" if ticks else "auto", tickvals=ticks or None,
                     ticktext=[f"{t:g}" for t in ticks] or None)
    fig.update_yaxes(title_text=display_name(metric))
    chance = metric == "accuracy" and bool(num_classes)
    if is_unit_interval(metric):
        fig.update_yaxes(range=unit_range(finite_values(df[metric]) + ([1 / num_classes] if chance else [])))
    if chance:
        add_chance_line(fig, num_classes)
    fig.update_layout(title={"text": title} if title else None)
    return paper_style(fig, paper)


# ---------------------------------------------------------------------------
# per-stage predictions for one image
# ---------------------------------------------------------------------------


def stage_prediction_bars(
    probs: Any,
    classnames: Sequence[str],
    *,
    fused: Any = None,
    names: Sequence[str] | None = None,
    title: str | None = None,
    paper: bool | str = False,
) -> go.Figure:
    """Class probabilities of each stage (and the fused prediction) for one image, grouped bars.

    ``probs``: [S, C] stage probabilities (rows sum to 1); ``fused``: [C] the fused
    prediction, drawn last in black. ``names`` labels the rows (default stage 1..S).
    """
    p = _as_array(probs)
    if p.ndim == 1:
        p = p[None]
    c = len(classnames)
    if p.shape[1] != c:
        raise ValueError(f"probs has {p.shape[1]} classes, classnames {c}")
    labels = list(names) if names is not None else [f"stage {s + 1}" for s in range(p.shape[0])]
    fig = go.Figure()
    for s in range(p.shape[0]):
        fig.add_trace(go.Bar(x=list(classnames), y=p[s], name=labels[s], marker={"color": palette_colour(s)},
                             hovertemplate="%{x}: %{y:.3f}<extra>" + labels[s] + "</extra>"))
    if fused is not None:
        f = _as_array(fused).reshape(-1)
        fig.add_trace(go.Bar(x=list(classnames), y=f, name="fused", marker={"color": "black"},
                             hovertemplate="%{x}: %{y:.3f}<extra>fused</extra>"))
    fig.update_layout(barmode="group", title={"text": title} if title else None, bargap=0.2)
    fig.update_yaxes(title_text="probability", range=[0, 1])
    fig.update_xaxes(title_text="class")
    return paper_style(fig, paper)


# ---------------------------------------------------------------------------
# confusion matrix
# ---------------------------------------------------------------------------


def confusion_matrix_figure(
    cm: Any,
    classnames: Sequence[str],
    *,
    normalize: bool = True,
    title: str | None = None,
    colorscale: str = "Blues",
    paper: bool | str = False,
) -> go.Figure:
    """Confusion matrix (rows = true class, columns = predicted), square cells, counts in cells.

    With ``normalize`` the colour is the row-normalised rate (recall per true class) and
    the cell text shows the rate and the count.
    """
    m = _as_array(cm)
    c = len(classnames)
    if m.shape != (c, c):
        raise ValueError(f"confusion matrix has shape {m.shape}, expected ({c}, {c})")
    counts = m.astype(np.int64)
    if normalize:
        rs = m.sum(axis=1, keepdims=True)
        z = np.divide(m, rs, out=np.zeros_like(m), where=rs > 0)
        text = [[f"{z[i, j]:.2f}<br>({counts[i, j]})" for j in range(c)] for i in range(c)]
        zmax = 1.0
    else:
        z = m
        text = [[f"{counts[i, j]}" for j in range(c)] for i in range(c)]
        zmax = float(max(m.max(), 1))
    fig = go.Figure(go.Heatmap(
        z=z, x=list(range(c)), y=list(range(c)), zmin=0.0, zmax=zmax, colorscale=colorscale,
        text=text, texttemplate="%{text}", showscale=True,
        colorbar={"title": {"text": "rate" if normalize else "count"}},
        customdata=np.array([[f"true {classnames[i]} → predicted {classnames[j]}" for j in range(c)] for i in range(c)]),
        hovertemplate="%{customdata}<br>%{z:.3f}<extra></extra>", name="confusion",
    ))
    fig.update_xaxes(title_text="predicted", tickmode="array", tickvals=list(range(c)), ticktext=list(classnames),
                     range=[-0.5, c - 0.5], constrain="domain", showgrid=False, zeroline=False)
    fig.update_yaxes(title_text="true", tickmode="array", tickvals=list(range(c)), ticktext=list(classnames),
                     range=[c - 0.5, -0.5], scaleanchor="x", scaleratio=1, constrain="domain",
                     showgrid=False, zeroline=False)
    fig.update_layout(title={"text": title} if title else None)
    return paper_style(fig, paper)

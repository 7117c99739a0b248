"""Figures of training and of results tables: curves with the phases marked, σ and λ
trajectories, per-stage bars, ablation bars and the significance plot.

Inputs are the long-format rows of :func:`cascade.runfolder.read_progress`
(loss rows ``step, term, value``; val rows ``step, epoch, metric, value, stage``; σ/λ
rows ``step, stage, value``; phase rows ``epoch, step, phase, stages``) or tables
(lists of dicts / DataFrames). Every function returns a ``go.Figure``; ``paper=True``
(or ``"single"``/``"double"``) applies the print style, as in :mod:`analysis.figures`.
Metrics whose value is missing (``None``: a distribution metric on label-only data)
are drawn as gaps and labelled "n/a", never as 0.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analysis.figures import PALETTE, finite_values, palette_colour, paper_style
from analysis.style import add_chance_line, unit_range
from cascade.metrics import METRIC_DISPLAY_NAMES, display_name, is_unit_interval

__all__ = [
    "METRIC_LABELS",
    "ablation_bars",
    "value_bars",
    "sigma_lambda_figure",
    "significance_figure",
    "stage_bars",
    "training_curves",
]

METRIC_LABELS = METRIC_DISPLAY_NAMES   # one name per metric everywhere: the registry's
PHASE_COLOUR = "#9AA5B1"


def _frame(rows: Any) -> pd.DataFrame:
    return rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows or []))


def mark_phases(fig: go.Figure, phases: Any, *, rows: Sequence[int] | None = None) -> None:
    """Dashed vertical lines where a phase starts (after step 0), named at the top of the first panel."""
    ph = _frame(phases)
    if ph.empty:
        return
    starts = ph.drop_duplicates("step", keep="last")
    for _, r in starts.iterrows():
        step = int(r["step"])
        for row in (rows or [None]):
            kwargs = {"row": row, "col": 1} if row is not None else {}
            if step > 0:
                fig.add_vline(x=step, line={"dash": "dash", "color": PHASE_COLOUR, "width": 1}, **kwargs)
        fig.add_annotation(x=step, y=1, xref="x", yref="y domain", text=str(r["phase"]), xshift=2, yshift=-1,
                           showarrow=False, xanchor="left", yanchor="top", font={"size": 10, "color": "#555"})


def headroom(fig: go.Figure, values: Any, share: float = 0.35, **where: Any) -> None:
    """Extend a y-axis above its data by ``share`` of the span: a clear band for the phase names."""
    finite = finite_values(values)
    if not finite:
        return
    lo, hi = min(finite), max(finite)
    span = (hi - lo) or abs(hi) or 1.0
    fig.update_yaxes(range=[lo - 0.05 * span, hi + share * span / (1 - share)], **where)


def training_curves(loss: Any, val: Any, phases: Any = None, *, metrics: Sequence[str] = ("accuracy", "macro_f1",
                    "uar", "kl"), num_classes: int | None = None, title: str | None = None,
                    paper: bool | str = False) -> go.Figure:
    """Training loss terms (top panel) and each fused val metric on its own panel, against the
    global step, with the phase boundaries marked on every panel and named above the loss.

    Rates (accuracy, macro-F1, UAR) get axes inside [0, 1]; with ``num_classes`` the accuracy
    panel has a dotted chance line at 1/C.

    Metrics are separate panels (never one shared axis): accuracy, macro-F1 and UAR often
    coincide on small data and KL lives on another scale.
    """
    from plotly.subplots import make_subplots

    lo, va = _frame(loss), _frame(val)
    if not va.empty and "stage" in va.columns:
        va = va[va["stage"] == "fused"]
    shown = [m for m in metrics if not va.empty and m in set(va["metric"])]
    panels = ["loss"] + shown
    fig = make_subplots(rows=len(panels), cols=1, shared_xaxes=True, vertical_spacing=0.06 if len(panels) > 2 else 0.1,
                        subplot_titles=["training loss"] + [f"val {display_name(m)}" for m in shown])
    if not lo.empty:
        for i, term in enumerate(dict.fromkeys(lo["term"].tolist())):
            part = lo[lo["term"] == term].sort_values("step")
            fig.add_trace(go.Scatter(x=part["step"], y=part["value"], mode="lines", name=str(term),
                                     line={"color": "black" if term == "total" else palette_colour(i),
                                                               "width": 2 if term == "total" else 1}),
                          row=1, col=1)
    for j, m in enumerate(shown, start=2):
        part = va[va["metric"] == m].sort_values("step")
        fig.add_trace(go.Scatter(x=part["step"], y=part["value"], mode="lines+markers", name=f"val {m}",
                                 showlegend=False, line={"color": palette_colour(j - 2)}, marker={"size": 5},
                                 customdata=part["epoch"] if "epoch" in part else None,
                                 hovertemplate="step %{x} (epoch %{customdata})<br>%{y:.4f}<extra></extra>"),
                      row=j, col=1)
        fig.update_yaxes(title_text=display_name(m), row=j, col=1)
        if is_unit_interval(m):
            fig.update_yaxes(range=unit_range(part["value"].tolist() + ([1 / num_classes] if num_classes and
                                                                          m == "accuracy" else [])), row=j, col=1)
        else:   # distances and divergences are never negative
            fig.update_yaxes(rangemode="nonnegative", row=j, col=1)
        if m == "accuracy" and num_classes:
            add_chance_line(fig, num_classes, row=j, col=1)
    fig.update_yaxes(title_text="loss", row=1, col=1)
    if not lo.empty and not _frame(phases).empty:
        headroom(fig, lo["value"].tolist(), row=1, col=1)
    fig.update_xaxes(title_text="step", row=len(panels), col=1)
    mark_phases(fig, phases, rows=list(range(1, len(panels) + 1)))
    fig.update_layout(title={"text": title} if title else None, height=180 + 150 * len(panels))
    fig = paper_style(fig, paper, height=None if not paper else 100 + 80 * len(panels))
    fig.update_layout(legend={"orientation": "h", "x": 0, "xanchor": "left", "y": -0.35 / len(panels),
                              "yanchor": "top"})
    return fig


def sigma_lambda_figure(sigma: Any, fusion: Any, phases: Any = None, *, stage_labels: Sequence[str] | None = None,
                        title: str | None = None, paper: bool | str = False) -> go.Figure:
    """NGA σ (log axis) and fusion weight λ of every stage against the global step, phases marked;
    the λ panel says n/a when no λ was logged (concat fusion has none)."""
    from plotly.subplots import make_subplots

    sg, fu = _frame(sigma), _frame(fusion)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.1,
                        subplot_titles=["NGA σ per stage", "fusion weight λ per stage"])
    stages = sorted({k for df in (sg, fu) if not df.empty for k in df["stage"]})
    for row, df in ((1, sg), (2, fu)):
        if df.empty:
            if row == 2:
                fig.add_annotation(text="λ: n/a (none logged; concat fusion has no λ)", x=0.5, y=0.5,
                                   xref="x2 domain", yref="y2 domain", showarrow=False)
            continue
        for k in stages:
            part = df[df["stage"] == k].sort_values("step")
            if part.empty:
                continue
            name = stage_labels[int(k) - 1] if stage_labels and int(k) <= len(stage_labels) else f"stage {int(k)}"
            fig.add_trace(go.Scatter(x=part["step"], y=part["value"], mode="lines" if len(part) > 30 else "lines+markers",
                                     name=name, legendgroup=name, showlegend=row == 1,
                                     line={"color": palette_colour(int(k) - 1)}, marker={"size": 4}), row=row, col=1)
    fig.update_yaxes(title_text="σ", type="log", row=1, col=1)
    fig.update_yaxes(title_text="λ", rangemode="tozero", row=2, col=1)
    fig.update_xaxes(title_text="step", row=2, col=1)
    mark_phases(fig, phases, rows=[1, 2])
    fig.update_layout(title={"text": title} if title else None, height=520)
    return paper_style(fig, paper, height=None if not paper else 300)


def _fmt(v: Any) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.3f}"


def stage_bars(rows: Any, *, metric: str = "accuracy", group: str = "run", error: str | None = None,
               title: str | None = None, num_classes: int | None = None, paper: bool | str = False) -> go.Figure:
    """Per-stage bars (stage 1..S, then fused) of one metric, one colour per ``group`` value
    (a run or a method); ``error`` names a column of error-bar half-widths (e.g. a std). With
    ``num_classes``, an accuracy plot marks the chance level 1/C."""
    df = _frame(rows)
    if df.empty:
        raise ValueError("stage_bars: no rows")
    if group not in df.columns:
        df = df.assign(**{group: ""})
    order = list(dict.fromkeys(df["stage"].tolist()))
    fig = go.Figure()
    for i, (name, part) in enumerate(df.groupby(group, sort=False)):
        part = part.set_index("stage").reindex(order)
        values = pd.to_numeric(part[metric], errors="coerce")
        err = None
        if error and error in part.columns:
            err = {"type": "data", "array": pd.to_numeric(part[error], errors="coerce").fillna(0).tolist(),
                   "thickness": 1, "width": 3}
        fig.add_trace(go.Bar(x=order, y=values.tolist(), name=str(name), marker={"color": palette_colour(i)}, error_y=err,
                             text=[_fmt(v) for v in values], textposition="none",
                             hovertemplate="%{x}: %{text}<extra>" + str(name) + "</extra>"))
    fig.update_layout(barmode="group", bargap=0.2, title={"text": title} if title else None,
                      showlegend=df[group].nunique() > 1 or bool(df[group].iloc[0]))
    fig.update_yaxes(title_text=display_name(metric), rangemode="tozero")
    if is_unit_interval(metric):
        fig.update_yaxes(range=[0, 1])
    if metric == "accuracy" and num_classes:
        add_chance_line(fig, num_classes)
    return paper_style(fig, paper)


def ablation_bars(table: Any, metric: str = "accuracy", *, title: str | None = None,
                  paper: bool | str = False) -> go.Figure:
    """Mean ± sample std over seeds of one metric, one bar per method (``table`` rows have
    ``method``, ``<metric>`` and ``<metric> std``). Methods without a value show "n/a"."""
    df = _frame(table)
    means = pd.to_numeric(df[metric], errors="coerce")
    stds = pd.to_numeric(df.get(f"{metric} std", pd.Series([0] * len(df))), errors="coerce").fillna(0)
    fig = go.Figure(go.Bar(
        x=df["method"].tolist(), y=means.tolist(), marker={"color": PALETTE[0]},
        error_y={"type": "data", "array": stds.tolist(), "thickness": 1, "width": 4},
        text=["n/a" if not np.isfinite(v) else "" for v in means], textposition="outside",
        customdata=np.stack([stds.to_numpy(), df.get("seeds", pd.Series([1] * len(df))).to_numpy()], axis=1),
        hovertemplate="%{x}: %{y:.4f} ± %{customdata[0]:.4f} (%{customdata[1]} seeds)<extra></extra>",
        name=metric))
    fig.update_layout(title={"text": title} if title else None, showlegend=False)
    fig.update_yaxes(title_text=display_name(metric) + " (mean ± std)", rangemode="tozero")
    fig.update_xaxes(tickangle=-30)
    return paper_style(fig, paper)


def significance_figure(sig: Any, *, baseline: str | None = None, alpha: float = 0.05, title: str | None = None,
                        paper: bool | str = False) -> go.Figure:
    """Accuracy difference (method − baseline) with its paired-bootstrap 95 % interval, one row per
    method × seed; filled markers where the Holm-adjusted McNemar p (``p_holm`` of
    ``significance.csv``) is below ``alpha``. ``baseline`` keeps only comparisons against it
    (default: every pair)."""
    df = _frame(sig)
    if baseline is not None:
        df = df[df["baseline"] == baseline]
    if df.empty:
        raise ValueError("significance_figure: no comparisons" + (f" against {baseline!r}" if baseline else ""))
    labels = [f"{m} vs {b} (seed {s})" for m, b, s in zip(df["method"], df["baseline"], df["seed"])]
    significant = df["p_holm"].to_numpy(dtype=float) < alpha
    fig = go.Figure(go.Scatter(
        x=df["acc_diff"], y=labels, mode="markers",
        error_x={"type": "data", "symmetric": False, "array": (df["ci_high"] - df["acc_diff"]).tolist(),
                 "arrayminus": (df["acc_diff"] - df["ci_low"]).tolist(), "thickness": 1, "width": 3},
        marker={"symbol": ["circle" if s else "circle-open" for s in significant], "size": 7, "color": "black"},
        customdata=df[["p_holm", "mcnemar_p"]].to_numpy(),
        hovertemplate="%{y}: %{x:+.4f}, McNemar p Holm-adjusted = %{customdata[0]:.3g} "
                      "(per pair, uncorrected: %{customdata[1]:.3g})<extra></extra>"))
    fig.add_vline(x=0, line={"color": PHASE_COLOUR, "width": 1})
    fig.update_xaxes(title_text="accuracy difference (95 % paired bootstrap CI)")
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title={"text": title} if title else None, height=max(240, 26 * len(labels) + 120),
                      showlegend=False)
    return paper_style(fig, paper, height=None if not paper else max(160, 16 * len(labels) + 80))



def value_bars(values: dict[str, Any], *, value_title: str, category_title: str = "", horizontal: bool = False,
               highlight: str | None = None, probability: bool = False, title: str | None = None,
               paper: bool | str = False) -> go.Figure:
    """One bar per named value (class counts, a distribution); ``highlight`` draws one bar dark.

    Values are written beside their bars; ``probability`` gives the value axis 0-1."""
    names = [str(k) for k in values]
    vals = [None if v is None else float(v) for v in values.values()]
    colours = ["#222222" if n == highlight else PALETTE[0] for n in names]
    # Labels outside the bars, upright and in the text colour: inside a bar plotly shrinks or turns them.
    bar = go.Bar(x=vals if horizontal else names, y=names if horizontal else vals,
                 orientation="h" if horizontal else "v", marker={"color": colours},
                 text=[_fmt(v) if isinstance(v, float) and not float(v).is_integer() else ("n/a" if v is None else
                       f"{v:g}") for v in vals], textposition="outside", textangle=0, cliponaxis=False)
    fig = go.Figure(bar)
    value_axis, category_axis = (fig.update_xaxes, fig.update_yaxes) if horizontal else (fig.update_yaxes,
                                                                                          fig.update_xaxes)
    finite = finite_values(vals)
    top = max(finite) if finite else 1.0
    if probability and top <= 1:
        value_axis(title_text=value_title, range=[0, 1])
    else:   # room beyond the longest bar for its label
        value_axis(title_text=value_title, range=[0, (top or 1.0) * 1.18])
    category_axis(title_text=category_title, **({"autorange": "reversed"} if horizontal else {}))
    fig.update_layout(title={"text": title} if title else None, showlegend=False)
    return paper_style(fig, paper)

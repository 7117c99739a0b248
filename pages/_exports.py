"""Downloads for every chart and table of the dashboard, in one place.

:func:`chart` shows a plotly figure and offers it as PDF, SVG and PNG (the print style:
serif, one column, 300 dpi PNG with its dpi recorded, PDF with a real title) plus its
data as CSV. :func:`table` shows a DataFrame and offers it as LaTeX (booktabs, best in
bold, partial runs marked and never bold, n/a for missing values), Markdown and CSV. Files are rendered only when a button is
clicked (the analysis export drives a local Chromium through kaleido).
"""
from __future__ import annotations

from typing import Any, Callable

import streamlit as st

from analysis.export import figure_bytes
from analysis.style import apply_paper_style
from analysis.tables import frame_table
from cascade.dashboard.runs import SUMMARY_METRICS

MIME = {"pdf": "application/pdf", "svg": "image/svg+xml", "png": "image/png", "csv": "text/csv",
        "tex": "application/x-tex", "md": "text/markdown", "json": "application/json", "npz": "application/octet-stream"}
ICON = ":material/download:"
METRIC_LIKE = (*SUMMARY_METRICS, "std", "weight", "value", "probability")


def _print_figure(build: Callable[[Any], Any] | Any, title: str | None):
    """The print version of a figure: ``build("single")`` or, for a ready figure, a restyled copy."""
    import plotly.graph_objects as go

    if callable(build):
        fig = build("single")
    else:
        fig = apply_paper_style(go.Figure(build), column="single")
    if title and not fig.layout.title.text:
        fig.update_layout(title={"text": title})
        apply_paper_style(fig, column="single", height=fig.layout.height)
    return fig


def download(label: str, data: Any, file_name: str, key: str, col=None) -> None:
    """One download button (``data``: bytes, text, or a function returning them, called on click)."""
    ext = file_name.rsplit(".", 1)[-1]
    (col or st).download_button(label, data=data, file_name=file_name, mime=MIME.get(ext, "application/octet-stream"),
                                key=f"dl_{key}_{ext}", on_click="ignore", icon=ICON)


def chart(fig_or_build: Callable[[Any], Any] | Any, key: str, stem: str, *, data: Any = None,
          title: str | None = None, height: int | None = None, extra: dict[str, Any] | None = None) -> None:
    """A plotly chart with PDF / SVG / PNG / CSV downloads underneath.

    ``fig_or_build`` is a figure or a function ``build(paper)`` returning one (``paper`` False
    on screen, ``"single"`` for the files). ``data`` (a DataFrame or CSV text) is the CSV
    download; ``extra`` maps more file extensions to their bytes (e.g. a matrix as NPZ).
    ``title`` names the PDF and the print figure when the figure has none.
    """
    fig = fig_or_build(False) if callable(fig_or_build) else fig_or_build
    if height:
        fig.update_layout(height=height)
    st.plotly_chart(fig, key=key, width="stretch")
    files: list[tuple[str, Any]] = [
        (fmt, (lambda fmt=fmt: figure_bytes(_print_figure(fig_or_build, title), fmt, title=title or None)))
        for fmt in ("pdf", "svg", "png")]
    if data is not None:
        files.append(("csv", data if isinstance(data, (str, bytes)) else data.to_csv(index=False, na_rep="n/a")))
    files += list((extra or {}).items())
    cols = st.columns(len(files))   # as many as buttons: in a narrow column each keeps its label
    for col, (ext, payload) in zip(cols, files):
        download(ext.upper(), payload, f"{stem}.{ext}", key, col)


def display_frame(df, digits: int = 4):
    """Floats as fixed-digit text and missing values as "n/a" (a blank cell could be read as 0)."""
    from analysis.tables import format_number

    def numeric_or_missing(values) -> bool:
        return all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values)

    def text(v, whole: bool) -> str:
        if v is None or v != v:
            return "n/a"
        return str(int(v)) if whole else format_number(v, digits)

    out = df.copy()
    for c in out.columns:
        col = out[c]
        if col.dtype.kind == "f" or (col.dtype == object and col.isna().any() and numeric_or_missing(col.tolist())):
            finite = [float(v) for v in col.tolist() if v is not None and v == v]
            whole = bool(finite) and all(v.is_integer() for v in finite) and c not in METRIC_LIKE and \
                not str(c).endswith(METRIC_LIKE)
            out[c] = [text(v, whole) for v in col.tolist()]
    return out


def table(df, key: str, stem: str, *, caption: str = "", notes: list[str] | None = None,
          column_config: dict[str, Any] | None = None, digits: int = 4, show: bool = True,
          paper: Any = None, partial: list[bool] | None = None, **kwargs: Any) -> None:
    """A DataFrame on screen (numbers at ``digits`` digits, n/a where missing) with LaTeX
    (booktabs), Markdown and CSV downloads of the full-precision values.

    ``paper`` (a DataFrame) replaces ``df`` in the LaTeX and Markdown files: the columns a
    paper prints, where the screen shows more. ``partial`` flags the rows of partial runs.
    """
    if show:
        st.dataframe(display_frame(df, digits), hide_index=True, width="stretch", column_config=column_config,
                     key=key, **kwargs)
    cols = st.columns(6)
    printed = df if paper is None else paper
    made = lambda: frame_table(printed, caption=caption, notes=notes, digits=digits, partial=partial)  # noqa: E731
    download("LaTeX", lambda: made().to_latex(), f"{stem}.tex", key, cols[0])
    download("Markdown", lambda: made().to_markdown(), f"{stem}.md", key, cols[1])
    download("CSV", df.to_csv(index=False, na_rep="n/a"), f"{stem}.csv", key, cols[2])


"""Downloads for every chart and table of the dashboard, in one place.

:func:`chart` shows a plotly figure and offers it as PDF, SVG and PNG (the print style:
serif, one column, 300 dpi PNG with its dpi recorded, PDF with a real title) plus its
data as CSV. :func:`table` shows a DataFrame and offers it as LaTeX (booktabs, best in
bold, partial runs marked and never bold, n/a for missing values), Markdown and CSV. Files
are rendered only when a button is clicked (the analysis export drives a local Chromium
through kaleido). Streamlit views only: the files come from :mod:`pages._analysis`.
"""
from __future__ import annotations

from typing import Any, Callable

import streamlit as st

from cascade.metrics import column_label
from pages._analysis import display_frame, figure_file, latex_table, markdown_table, screen_margins

MIME = {"pdf": "application/pdf", "svg": "image/svg+xml", "png": "image/png", "csv": "text/csv",
        "tex": "application/x-tex", "md": "text/markdown", "json": "application/json",
        "npz": "application/octet-stream"}
ICON = ":material/download:"


def download(label: str, data: Any, file_name: str, key: str, col=None) -> None:
    """One download button (``data``: bytes, text, or a function returning them, called on click)."""
    ext = file_name.rsplit(".", 1)[-1]
    (col or st).download_button(label, data=data, file_name=file_name, mime=MIME.get(ext, "application/octet-stream"),
                                key=f"dl_{key}_{ext}", on_click="ignore", icon=ICON)


def chart(fig_or_build: Callable[[Any], Any] | Any, key: str, stem: str, *, data: Any = None,
          title: str | None = None, height: int | None = None, extra: dict[str, Any] | None = None,
          per_row: int | None = None) -> None:
    """A plotly chart with PDF / SVG / PNG / CSV downloads underneath.

    ``fig_or_build`` is a figure or a function ``build(paper)`` returning one (``paper`` False
    on screen, ``"single"`` for the files). ``data`` (a DataFrame or CSV text) is the CSV
    download; ``extra`` maps more file extensions to their bytes (e.g. a matrix as NPZ).
    ``title`` names the PDF and the print figure when the figure has none. ``per_row`` puts
    at most that many buttons on a row (a narrow column: 2 keeps every label readable).
    """
    fig = fig_or_build(False) if callable(fig_or_build) else fig_or_build
    if height:
        fig.update_layout(height=height)
    st.plotly_chart(screen_margins(fig), key=key, width="stretch")
    files: list[tuple[str, Any]] = [
        (fmt, (lambda fmt=fmt: figure_file(fig_or_build, fmt, title)))
        for fmt in ("pdf", "svg", "png")]
    if data is not None:
        files.append(("csv", data if isinstance(data, (str, bytes)) else data.to_csv(index=False, na_rep="n/a")))
    files += list((extra or {}).items())
    per_row = per_row or len(files)   # in a narrow column fewer per row, so each keeps its label
    for start in range(0, len(files), per_row):
        row = files[start:start + per_row]
        for col, (ext, payload) in zip(st.columns(per_row), row):
            download(ext.upper(), payload, f"{stem}.{ext}", key, col)


def table(df, key: str, stem: str, *, caption: str = "", notes: list[str] | None = None,
          column_config: dict[str, Any] | None = None, digits: int = 4, significant: bool = False,
          show: bool = True, paper: Any = None, partial: list[bool] | None = None, **kwargs: Any) -> None:
    """A DataFrame on screen (numbers at ``digits`` decimals, or ``digits`` significant digits with
    ``significant``; n/a where missing) with LaTeX (booktabs), Markdown and CSV downloads of the
    full-precision values.

    ``paper`` (a DataFrame) replaces ``df`` in the LaTeX and Markdown files: the columns a
    paper prints, where the screen shows more. ``partial`` flags the rows of partial runs.
    """
    if show:
        # Metric columns keep their keys (the files, bold-best and n/a rules read them) and show
        # the same metric names as every other view.
        labels = {c: st.column_config.Column(column_label(str(c))) for c in df.columns if column_label(str(c)) != str(c)}
        st.dataframe(display_frame(df, digits, significant=significant), hide_index=True, width="stretch",
                     column_config={**labels, **(column_config or {})}, key=key, **kwargs)
    cols = st.columns(6)
    printed = df if paper is None else paper
    download("LaTeX", lambda: latex_table(printed, caption=caption, notes=notes, digits=digits, partial=partial),
             f"{stem}.tex", key, cols[0])
    download("Markdown", lambda: markdown_table(printed, caption=caption, notes=notes, digits=digits, partial=partial),
             f"{stem}.md", key, cols[1])
    download("CSV", df.to_csv(index=False, na_rep="n/a"), f"{stem}.csv", key, cols[2])


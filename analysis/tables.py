"""Results tables for papers: LaTeX (booktabs), Markdown and CSV.

A :class:`Table` holds cells that are numbers, ``(mean, std)`` pairs or text, plus
which columns are metrics (their best value is set in bold, in the metric's direction from
:data:`cascade.metrics.METRIC_DIRECTIONS`: KL, Chebyshev, Clark and Canberra are better low)
and per-cell markers (e.g. a significance mark explained in a footnote). Missing values (``None``, NaN: a
distribution metric on label-only data) print as "n/a" everywhere, never as 0.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from typing import Any

from cascade.metrics import EVAL_METRICS, METRIC_DIRECTIONS

__all__ = ["Table", "format_number", "frame_table", "latex_escape"]

NA = "n/a"
ABSENT = "—"          # the method has no such column (e.g. a stage it does not have)

_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  # symbols the tables use, as math so a plain pdflatex needs no Unicode set-up
                  "±": r"$\pm$", "↓": r"$\downarrow$", "↑": r"$\uparrow$", "σ": r"$\sigma$", "λ": r"$\lambda$",
                  "α": r"$\alpha$", "×": r"$\times$", "≥": r"$\geq$", "≤": r"$\leq$", "—": "---", "–": "--",
                  "−": "$-$"}


def latex_escape(text: Any) -> str:
    """Text safe inside a LaTeX document (special characters escaped)."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and not math.isfinite(v))


def format_number(v: Any, digits: int = 3) -> str:
    """Fixed digits; "n/a" for missing values; tiny and huge magnitudes in scientific notation."""
    if _missing(v):
        return NA
    x = float(v)
    if x != 0 and (abs(x) < 10 ** -digits or abs(x) >= 1e6):
        return f"{x:.{max(1, digits - 1)}e}"
    return f"{x:.{digits}f}"


@dataclass
class Table:
    """Rows of named cells; ``metric_columns`` maps a column to its metric name (for bold-best).

    A cell is a number, ``(mean, std)``, text, or ``None`` (n/a); :data:`ABSENT` marks a
    cell that does not exist for that row.
    """

    columns: list[str]
    rows: list[dict[str, Any]]
    metric_columns: dict[str, str] = field(default_factory=dict)
    markers: dict[tuple[int, str], str] = field(default_factory=dict)   # (row, column) → superscript mark
    caption: str = ""
    label: str = ""
    notes: list[str] = field(default_factory=list)
    digits: int = 3
    headers: dict[str, str] = field(default_factory=dict)

    # ---- best values ----------------------------------------------------------------
    def _value(self, cell: Any) -> float | None:
        v = cell[0] if isinstance(cell, tuple) else cell
        if isinstance(v, bool) or not isinstance(v, (int, float)) or _missing(v):
            return None
        return float(v)

    def best_rows(self, column: str) -> set[int]:
        """Rows holding the best value of a metric column, compared at the printed precision."""
        metric = self.metric_columns.get(column)
        if metric is None:
            return set()
        values = {i: self._value(r.get(column)) for i, r in enumerate(self.rows)}
        values = {i: round(v, self.digits) for i, v in values.items() if v is not None}
        if len(values) < 2:
            return set()
        best = (min if METRIC_DIRECTIONS.get(metric) == "min" else max)(values.values())
        return {i for i, v in values.items() if v == best}

    # ---- cells ------------------------------------------------------------------------
    def _plain(self, cell: Any) -> str:
        if isinstance(cell, tuple):
            mean, std = cell
            if _missing(mean):
                return NA
            return f"{format_number(mean, self.digits)} ± {format_number(std, self.digits)}"
        if isinstance(cell, (int, float)) and not isinstance(cell, bool):
            return format_number(cell, self.digits) if isinstance(cell, float) or _missing(cell) else str(cell)
        return NA if cell is None else str(cell)

    def _latex(self, cell: Any, bold: bool, mark: str) -> str:
        sup = f"^{{{mark}}}" if mark else ""
        if isinstance(cell, tuple) and not _missing(cell[0]):
            body = f"{format_number(cell[0], self.digits)} \\pm {format_number(cell[1], self.digits)}"
        elif isinstance(cell, float) and not _missing(cell):
            body = format_number(cell, self.digits)
        elif isinstance(cell, int) and not isinstance(cell, bool):
            return str(cell) + (f"$^{{{mark}}}$" if mark else "")
        else:
            text = latex_escape(self._plain(cell))
            return text + (f"$^{{{mark}}}$" if mark else "")
        if bold:
            body = f"\\mathbf{{{body}}}"
        return f"${body}{sup}$"

    def header(self, column: str) -> str:
        return self.headers.get(column, column)

    # ---- renderers ----------------------------------------------------------------------
    def to_latex(self) -> str:
        """A ``table`` environment with a booktabs ``tabular`` (needs ``\\usepackage{booktabs}``)."""
        bold = {c: self.best_rows(c) for c in self.columns}
        align = "".join("r" if c in self.metric_columns else "l" for c in self.columns)
        lines = [r"\begin{table}[t]", r"\centering"]
        if self.caption:
            lines.append(f"\\caption{{{latex_escape(self.caption)}}}")
        if self.label:
            lines.append(f"\\label{{{self.label}}}")
        lines += [f"\\begin{{tabular}}{{{align}}}", r"\toprule",
                  " & ".join(latex_escape(self.header(c)) for c in self.columns) + r" \\", r"\midrule"]
        for i, row in enumerate(self.rows):
            cells = [self._latex(row.get(c), i in bold[c], self.markers.get((i, c), "")) for c in self.columns]
            lines.append(" & ".join(cells) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}"]
        if self.notes:
            lines.append(r"\par\smallskip{\footnotesize " + " ".join(self._latex_note(n) for n in self.notes) + "}")
        lines.append(r"\end{table}")
        return "\n".join(lines) + "\n"

    def _latex_note(self, note: str) -> str:
        """A note; one that starts with a cell marker (e.g. "* ...") shows the mark as a superscript."""
        for mark in sorted(set(self.markers.values()), key=len, reverse=True):
            if note.startswith(mark + " "):
                return f"$^{{{mark}}}$" + latex_escape(note[len(mark):])
        return latex_escape(note)

    def to_markdown(self) -> str:
        bold = {c: self.best_rows(c) for c in self.columns}
        lines = []
        if self.caption:
            lines += [f"**{self.caption}**", ""]
        lines.append("| " + " | ".join(self.header(c) for c in self.columns) + " |")
        lines.append("|" + "|".join("---:" if c in self.metric_columns else "---" for c in self.columns) + "|")
        for i, row in enumerate(self.rows):
            cells = []
            for c in self.columns:
                text = self._plain(row.get(c)) + self.markers.get((i, c), "")
                cells.append(f"**{text}**" if i in bold[c] else text)
            lines.append("| " + " | ".join(cells) + " |")
        if self.notes:
            lines += [""] + self.notes
        return "\n".join(lines) + "\n"

    def to_csv(self) -> str:
        """One column per value: a ``(mean, std)`` cell becomes ``<column>`` and ``<column> std``."""
        out_cols: list[str] = []
        for c in self.columns:
            out_cols.append(c)
            if any(isinstance(r.get(c), tuple) for r in self.rows):
                out_cols.append(f"{c} std")
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(out_cols)
        for row in self.rows:
            values = []
            for c in self.columns:
                cell = row.get(c)
                if isinstance(cell, tuple):
                    values += [_csv_value(cell[0]), _csv_value(cell[1])]
                else:
                    values.append(_csv_value(cell))
                    if f"{c} std" in out_cols:
                        values.append("")
            writer.writerow(values)
        return buf.getvalue()


def _csv_value(v: Any) -> str:
    if _missing(v):
        return NA
    if isinstance(v, float):
        return format(v, ".10g")
    return str(v)


def _base_metric(column: str) -> str | None:
    last = str(column).split(" ")[-1].split(".")[-1]
    return last if last in EVAL_METRICS and not str(column).endswith(" std") else None


def _cell(v: Any) -> Any:
    try:
        import numpy as np

        if isinstance(v, np.generic):
            v = v.item()
    except ImportError:  # pragma: no cover - numpy ships with pandas
        pass
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def frame_table(df: Any, *, caption: str = "", label: str = "", notes: list[str] | None = None, digits: int = 4,
                metric_columns: dict[str, str] | None = None) -> Table:
    """A :class:`Table` from a DataFrame (e.g. a dashboard table).

    Columns named after a metric (``accuracy``, ``val macro_f1``, ``test kl``, ...) are
    metric columns (best in bold); a ``<col> std`` column beside ``<col>`` is merged into
    ``mean ± std`` cells. NaN becomes n/a.
    """
    cols = [str(c) for c in df.columns]
    std_of = {c: f"{c} std" for c in cols if f"{c} std" in cols}
    shown = [c for c in cols if c not in set(std_of.values())]
    rows = []
    for rec in df.to_dict("records"):
        rec = {str(k): _cell(v) for k, v in rec.items()}
        row = {c: (rec.get(c), rec.get(std_of[c])) if c in std_of else rec.get(c) for c in shown}
        rows.append(row)
    if metric_columns is None:
        metric_columns = {c: m for c in shown if (m := _base_metric(c))}
    return Table(columns=shown, rows=rows, metric_columns=metric_columns, caption=caption, label=label,
                 notes=list(notes or []), digits=digits)

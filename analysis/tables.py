"""Results tables for papers: LaTeX (booktabs), Markdown and CSV.

A :class:`Table` holds cells that are numbers, ``(mean, std)`` pairs or text, plus
which columns are metrics (their best value is set in bold, in the metric's direction from
:data:`cascade.metrics.METRIC_DIRECTIONS`: KL, Chebyshev, Clark and Canberra are better low)
and per-cell markers (e.g. a significance mark explained in a footnote). Missing values (``None``, NaN: a
distribution metric on label-only data) print as "n/a" everywhere, never as 0. Rows of
partial runs (stopped before their last epoch) are marked and never set in bold.
"""
from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cascade.metrics import EVAL_METRICS, METRIC_DIRECTIONS

__all__ = ["Table", "format_number", "frame_table", "latex_escape"]

NA = "n/a"
ABSENT = "—"          # the method has no such column (e.g. a stage it does not have)
PARTIAL_MARK = "†"
PARTIAL_NOTE = f"{PARTIAL_MARK} partial run: training stopped before its last epoch (never set in bold)."
ONE_SEED_NOTE = "No ± where a mean is over one seed: its std is n/a."

_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  # symbols the tables use, as math so a plain pdflatex needs no Unicode set-up
                  "±": r"$\pm$", "↓": r"$\downarrow$", "↑": r"$\uparrow$", "σ": r"$\sigma$", "λ": r"$\lambda$",
                  "α": r"$\alpha$", "×": r"$\times$", "≥": r"$\geq$", "≤": r"$\leq$", "—": "---", "–": "--",
                  "−": "$-$", "<": "$<$", ">": "$>$", "†": r"$^{\dagger}$"}
# "p < 0.05" and the like: the whole comparison in math mode (text-mode "<" prints as "¡" in OT1).
_COMPARISON = re.compile(r"(?<![\w\\])([pα])(_holm)? ?([<>=≤≥]) ?(\d+(?:\.\d+)?)")
_MATH_RELATION = {"<": "<", ">": ">", "=": "=", "≤": r"\leq", "≥": r"\geq"}


def latex_escape(text: Any) -> str:
    """Text safe inside a LaTeX document (special characters escaped; comparisons such as
    ``p < 0.05`` set in math)."""
    out, last, s = [], 0, str(text)
    for m in _COMPARISON.finditer(s):
        out.append(_escape_chars(s[last:m.start()]))
        var = r"\alpha" if m.group(1) == "α" else "p"
        sub = r"_{\mathrm{Holm}}" if m.group(2) else ""
        out.append(f"${var}{sub} {_MATH_RELATION[m.group(3)]} {m.group(4)}$")
        last = m.end()
    out.append(_escape_chars(s[last:]))
    return "".join(out)


def _escape_chars(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


# Widths the LaTeX layout is chosen for: a plain 10 pt article's text width, and one column of its
# two-column form. Estimates carry a margin, so a table chosen to fit does fit.
TEXT_WIDTH_PT = 345.0
COLUMN_WIDTH_PT = 229.5
# (size command, its width relative to 10 pt as measured for Computer Modern, column padding in pt)
_LAYOUTS = ((r"\small", 0.93, 4.0), (r"\footnotesize", 0.86, 3.0), (r"\scriptsize", 0.81, 2.0))
_MARGIN = 1.02
# Computer Modern at 10 pt, in pt: digits and most lower-case letters are 5 pt wide.
_GLYPH = {**dict.fromkeys("0123456789", 5.0), **dict.fromkeys(".,:;!'", 2.8), **dict.fromkeys("il", 2.8),
          **dict.fromkeys("mw", 7.8), **dict.fromkeys("ABCDEFGHIJKLMNOPQRSTUVWXYZ", 7.5), " ": 3.4, "-": 3.4,
          "(": 3.9, ")": 3.9, "/": 5.0, "*": 5.0}
_MATH_WORDS = {r"\pm": 12.2, r"\downarrow": 5.0, r"\uparrow": 5.0, r"\sigma": 5.7, r"\lambda": 5.8,
               r"\alpha": 6.4, r"\times": 12.2, r"\geq": 13.3, r"\leq": 13.3, r"\textbackslash{}": 5.0}


def _latex_width(cells: list[str]) -> float:
    """Estimated width in pt of the widest of ``cells`` (LaTeX source) at 10 pt."""
    widest = 0.0
    for cell in cells:
        text = cell
        width = 0.0
        for word, w in _MATH_WORDS.items():
            width += w * text.count(word)
            text = text.replace(word, "")
        bold = 1.12 if r"\mathbf" in text else 1.0
        sup = re.findall(r"\^\{([^}]*)\}", text)
        width += sum(3.5 * len(s) for s in sup)
        text = re.sub(r"\^\{[^}]*\}", "", text)
        text = re.sub(r"\\[a-zA-Z]+", "", text).replace("{", "").replace("}", "").replace("\\", "")
        # spaces inside math ($...$, the odd pieces) take no room
        text = "".join(piece.replace(" ", "") if k % 2 else piece for k, piece in enumerate(text.split("$")))
        width += bold * sum(_GLYPH.get(ch, 5.0) for ch in text)
        widest = max(widest, width)
    return widest * _MARGIN


def _table_width(natural: list[float], cols: list[int], scale: float, sep: float) -> float:
    return sum(natural[k] * scale + 2 * sep for k in cols)


def _split_columns(natural: list[float], scale: float, sep: float) -> list[list[int]]:
    """Column groups that each fit the text width, every group led by the first column."""
    chunks: list[list[int]] = []
    current = [0]
    for k in range(1, len(natural)):
        if len(current) > 1 and _table_width(natural, current + [k], scale, sep) > TEXT_WIDTH_PT:
            chunks.append(current)
            current = [0]
        current.append(k)
    chunks.append(current)
    return chunks


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
    latex_omit: tuple[str, ...] = ()     # columns the LaTeX leaves out (their content is in a note)
    partial_rows: set[int] = field(default_factory=set)    # rows of partial runs: marked, never best

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
        values = {i: self._value(r.get(column)) for i, r in enumerate(self.rows) if i not in self.partial_rows}
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
            if _missing(std):
                return format_number(mean, self.digits)
            return f"{format_number(mean, self.digits)} ± {self._std(mean, std)}"
        if isinstance(cell, (int, float)) and not isinstance(cell, bool):
            return format_number(cell, self.digits) if isinstance(cell, float) or _missing(cell) else str(cell)
        return NA if cell is None else str(cell)

    def _std(self, mean: Any, std: Any) -> str:
        """A std in its mean's notation: float noise (1e-16 for identical runs) prints as 0.000."""
        fixed = "e" not in format_number(mean, self.digits)
        if fixed and not _missing(std) and abs(float(std)) < 10 ** -self.digits:
            return f"{0.0:.{self.digits}f}"
        return format_number(std, self.digits)

    def _latex(self, cell: Any, bold: bool, mark: str) -> str:
        mark = mark.replace(PARTIAL_MARK, r"\dagger ")
        sup = f"^{{{mark}}}" if mark else ""
        if isinstance(cell, tuple) and not _missing(cell[0]):
            body = format_number(cell[0], self.digits)
            if not _missing(cell[1]):
                body += f" \\pm {self._std(cell[0], cell[1])}"
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

    def _mark(self, i: int, column: str) -> str:
        """The cell's marker; a partial run's first cell also carries :data:`PARTIAL_MARK`."""
        mark = self.markers.get((i, column), "")
        if i in self.partial_rows and column == self.columns[0]:
            mark = PARTIAL_MARK + mark
        return mark

    def all_notes(self) -> list[str]:
        """The notes, plus what the partial mark and a missing std mean when the table has them."""
        notes = list(self.notes)
        if self.partial_rows:
            notes.append(PARTIAL_NOTE)
        if any(isinstance(c, tuple) and not _missing(c[0]) and _missing(c[1]) for r in self.rows for c in r.values()):
            notes.append(ONE_SEED_NOTE)
        return notes

    # ---- renderers ----------------------------------------------------------------------
    def to_latex(self) -> str:
        """A ``table`` (or ``table*``) float with a booktabs ``tabular`` (needs ``\\usepackage{booktabs}``).

        The table must fit the text width of a plain 10 pt ``article`` (345 pt) without an
        overfull box: the font size and column padding are the largest of a few compact
        settings whose estimated width fits; if none does, the metric columns are split over
        stacked tabulars that each repeat the first column. A table too wide for one column of
        a two-column page is a ``table*``, which spans both there (and is a plain float in
        one-column documents).
        """
        columns = [c for c in self.columns if c not in self.latex_omit]
        bold = {c: self.best_rows(c) for c in columns}
        header = [latex_escape(self.header(c)) for c in columns]
        body = [[self._latex(row.get(c), i in bold[c], self._mark(i, c)) for c in columns]
                for i, row in enumerate(self.rows)]
        natural = [max(_latex_width([h, *(r[k] for r in body)]), 1.0) for k, h in enumerate(header)]
        chunks: list[list[int]] = [list(range(len(columns)))]
        size, scale, sep = next(((sz, sc, sp) for sz, sc, sp in _LAYOUTS
                                 if _table_width(natural, chunks[0], sc, sp) <= TEXT_WIDTH_PT),
                                (None, 0.0, 0.0))
        if size is None:
            size, scale, sep = _LAYOUTS[-2]
            chunks = _split_columns(natural, scale, sep)
        width = max(_table_width(natural, c, scale, sep) for c in chunks)
        env = "table*" if width > COLUMN_WIDTH_PT else "table"
        lines = [f"\\begin{{{env}}}[t]", r"\centering"]
        if self.caption:
            lines.append(f"\\caption{{{latex_escape(self.caption)}}}")
        if self.label:
            lines.append(f"\\label{{{self.label}}}")
        lines += [size, f"\\setlength{{\\tabcolsep}}{{{sep:g}pt}}"]
        for n, cols in enumerate(chunks):
            if n:
                lines.append(r"\par\medskip")
            align = "".join("r" if columns[k] in self.metric_columns else "l" for k in cols)
            lines += [f"\\begin{{tabular}}{{{align}}}", r"\toprule", " & ".join(header[k] for k in cols) + r" \\",
                      r"\midrule"]
            lines += [" & ".join(r[k] for k in cols) + r" \\" for r in body]
            lines += [r"\bottomrule", r"\end{tabular}"]
        notes = self.all_notes()
        if notes:
            lines.append(r"\par\smallskip{\footnotesize\raggedright "
                         + " ".join(self._latex_note(n) for n in notes) + r"\par}")
        lines.append(f"\\end{{{env}}}")
        return "\n".join(lines) + "\n"

    def _latex_note(self, note: str) -> str:
        """A note; one that starts with a cell marker (e.g. "* ...") shows the mark as a superscript."""
        for mark in sorted(set(self.markers.values()) | {PARTIAL_MARK}, key=len, reverse=True):
            if note.startswith(mark + " "):
                sup = latex_escape(mark) if mark == PARTIAL_MARK else f"$^{{{mark}}}$"
                return sup + latex_escape(note[len(mark):])
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
                text = self._plain(row.get(c)) + self._mark(i, c)
                cells.append(f"**{text}**" if i in bold[c] else text)
            lines.append("| " + " | ".join(cells) + " |")
        notes = self.all_notes()
        if notes:
            lines += [""] + notes
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
        if isinstance(v, np.generic):
            v = v.item()
    except ImportError:  # pragma: no cover - numpy ships with pandas
        pass
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def frame_table(df: Any, *, caption: str = "", label: str = "", notes: list[str] | None = None, digits: int = 4,
                metric_columns: dict[str, str] | None = None, partial: Any = None) -> Table:
    """A :class:`Table` from a DataFrame (e.g. a dashboard table).

    Columns named after a metric (``accuracy``, ``val macro_f1``, ``test kl``, ...) are
    metric columns (best in bold); a ``<col> std`` column beside ``<col>`` is merged into
    ``mean ± std`` cells. NaN becomes n/a. Any other column whose numbers are all whole
    (an epoch, a count: pandas stores them as floats once a value is missing) prints as
    integers. ``partial``: one flag per row, true for a partial run.
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
    for c in shown:
        values = [r[c] for r in rows if isinstance(r[c], (int, float)) and not isinstance(r[c], bool)]
        if c not in metric_columns and values and all(float(v).is_integer() for v in values):
            for r in rows:
                if isinstance(r[c], float):
                    r[c] = int(r[c])
    partial_rows = {i for i, flag in enumerate(partial or []) if flag}
    return Table(columns=shown, rows=rows, metric_columns=metric_columns, caption=caption, label=label,
                 notes=list(notes or []), digits=digits, partial_rows=partial_rows)

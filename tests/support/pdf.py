"""Reading an exported PDF back: its text runs with their text matrices, and word boxes."""
from __future__ import annotations

import io
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from pypdf import PdfReader

WORD = re.compile(r'<word xMin="([\d.-]+)" yMin="([\d.-]+)" xMax="([\d.-]+)" yMax="([\d.-]+)">([^<]*)</word>')
PAGE = re.compile(r'<page width="([\d.]+)" height="([\d.]+)"')


def text_runs(pdf: bytes) -> list[tuple[str, list[float]]]:
    """Every text run of the first page with the 2×2 part (a, b, c, d) of its text matrix times the
    current transformation matrix: b or c not 0 means the text is turned (Chromium turns text
    with the transformation matrix, not the text matrix)."""
    runs: list[tuple[str, list[float]]] = []

    def visit(text, cm, tm, font, size):
        if text.strip():
            t = [[float(tm[0]), float(tm[1])], [float(tm[2]), float(tm[3])]]
            c = [[float(cm[0]), float(cm[1])], [float(cm[2]), float(cm[3])]]
            m = [[sum(t[i][k] * c[k][j] for k in range(2)) for j in range(2)] for i in range(2)]
            runs.append((text, [m[0][0], m[0][1], m[1][0], m[1][1]]))

    PdfReader(io.BytesIO(pdf)).pages[0].extract_text(visitor_text=visit)
    return runs


def turned(pdf: bytes) -> list[str]:
    """The text runs drawn at an angle (a y-axis title, a label turned to fit a bar)."""
    return [text for text, m in text_runs(pdf) if abs(m[1]) > 1e-6 or abs(m[2]) > 1e-6]


def word_boxes(pdf: bytes, folder: Path) -> tuple[list[tuple[str, float, float, float, float]], float, float]:
    """Words with their boxes (xmin, ymin, xmax, ymax; points from the top left) as pdftotext
    reads them, and the page's width and height."""
    exe = shutil.which("pdftotext")
    if exe is None:
        pytest.skip("pdftotext (poppler-utils) is not installed")
    path = Path(folder) / "figure.pdf"
    path.write_bytes(pdf)
    html = subprocess.run([exe, "-bbox", str(path), "-"], capture_output=True, text=True, check=True).stdout
    page = PAGE.search(html)
    words = [(w, float(a), float(b), float(c), float(d)) for a, b, c, d, w in WORD.findall(html)]
    return words, float(page.group(1)), float(page.group(2))


def assert_inside_page(words, width: float, height: float) -> None:
    """Some text, and none of it past the page's edges (kaleido's margins clip nothing)."""
    assert words, "the PDF holds no text"
    outside = [w for w in words if w[1] < -0.5 or w[2] < -0.5 or w[3] > width + 0.5 or w[4] > height + 0.5]
    assert not outside, f"text outside the page: {outside}"

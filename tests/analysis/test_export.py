"""Tests for analysis.export and analysis.style.

Rendering tests drive a real headless Chromium through kaleido; they are skipped
when no browser is installed (CI installs Debian's chromium, so they run there).
"""
from __future__ import annotations

import csv
import io
import os
import re
import xml.etree.ElementTree as ET

import numpy as np
import plotly.graph_objects as go
import pytest
from PIL import Image

from analysis import export
from analysis.export import (
    DEFAULT_PNG_SCALE,
    ExportError,
    close_browser,
    export_figure,
    export_matrix,
    figure_bytes,
    find_browser,
)
from analysis.style import FONT_FAMILY, apply_paper_style, column_width_px, pt_to_px


def _browser_available() -> bool:
    try:
        find_browser()
    except ExportError:
        return False
    return True


needs_browser = pytest.mark.skipif(
    not _browser_available(), reason="no Chromium/Chrome for kaleido (apt-get install chromium)"
)

PX_TO_PT = 72 / 96


@pytest.fixture(scope="module", autouse=True)
def _shutdown_browser():
    yield
    close_browser()


def heatmap(labels=("a", "b", "c")) -> go.Figure:
    z = np.array([[1.0, 0.6, 0.3], [0.6, 1.0, 0.5], [0.3, 0.5, 1.0]])
    return go.Figure(go.Heatmap(z=z, x=list(labels), y=list(labels), colorscale="Viridis"))


def pdf_media_box(data: bytes) -> list[float]:
    boxes = re.findall(rb"/MediaBox\s*\[\s*([-\d.\s]+?)\s*\]", data)
    assert boxes, "no /MediaBox in the PDF"
    return [float(v) for v in boxes[0].split()]


# ---------------------------------------------------------------------------
# rendering through the browser
# ---------------------------------------------------------------------------


@needs_browser
def test_pdf_has_the_asked_page_size(tmp_path):
    path = export_figure(heatmap(), tmp_path / "fig.pdf", width=336, height=240)
    data = path.read_bytes()
    assert data.startswith(b"%PDF")
    x0, y0, x1, y1 = pdf_media_box(data)
    assert (x1 - x0, y1 - y0) == pytest.approx((252.0, 180.0), abs=0.5)  # 3.5 in × 2.5 in


@needs_browser
def test_pdf_size_ignores_scale(tmp_path):
    data = figure_bytes(heatmap(), "pdf", width=336, height=240, scale=3)
    x0, y0, x1, y1 = pdf_media_box(data)
    assert (x1 - x0, y1 - y0) == pytest.approx((252.0, 180.0), abs=0.5)


@needs_browser
def test_svg_parses_with_the_asked_size(tmp_path):
    path = export_figure(heatmap(), tmp_path / "fig.svg", width=400, height=300)
    root = ET.fromstring(path.read_bytes())
    assert root.tag.endswith("svg")
    assert float(root.get("width")) == pytest.approx(400)
    assert float(root.get("height")) == pytest.approx(300)


@needs_browser
@pytest.mark.parametrize("scale", [2, None])
def test_png_has_the_asked_pixel_size(tmp_path, scale):
    path = export_figure(heatmap(), tmp_path / "fig.png", width=336, height=240, scale=scale)
    with Image.open(path) as img:
        assert img.format == "PNG"
        expected_scale = DEFAULT_PNG_SCALE if scale is None else scale
        assert img.size == (round(336 * expected_scale), round(240 * expected_scale))


@needs_browser
def test_paper_style_sets_the_printed_width_and_a_serif_font():
    fig = apply_paper_style(heatmap(), column="double", height=200)
    data = figure_bytes(fig, "pdf")  # size comes from the styled layout
    x0, _, x1, _ = pdf_media_box(data)
    assert x1 - x0 == pytest.approx(7.16 * 72, abs=1.0)
    base_fonts = re.findall(rb"/BaseFont\s*/([A-Za-z0-9+\-]+)", data)
    assert base_fonts and all(re.search(rb"Serif|Times", f) for f in base_fonts), base_fonts


@needs_browser
def test_figure_bytes_formats_and_errors():
    fig = heatmap()
    assert figure_bytes(fig, "pdf", 300, 200).startswith(b"%PDF")
    assert b"<svg" in figure_bytes(fig, "svg", 300, 200)[:200]
    assert figure_bytes(fig, "png", 300, 200, scale=1).startswith(b"\x89PNG")
    assert figure_bytes(fig.to_dict(), "png", 300, 200, scale=1).startswith(b"\x89PNG")
    with pytest.raises(ValueError, match="unsupported"):
        figure_bytes(fig, "gif")
    with pytest.raises(ValueError, match="cannot infer"):
        export_figure(fig, "figure.eps")


@needs_browser
def test_browser_is_reused_and_replaced_when_it_dies(tmp_path):
    figure_bytes(heatmap(), "svg", 200, 200)
    session = export._session
    assert session is not None and session.alive
    figure_bytes(heatmap(), "svg", 200, 200)
    assert export._session is session

    session._kaleido.subprocess.kill()
    session._kaleido.subprocess.wait(timeout=10)
    assert figure_bytes(heatmap(), "png", 200, 200, scale=1).startswith(b"\x89PNG")
    assert export._session is not session and export._session.alive


@needs_browser
def test_export_overwrites_atomically(tmp_path):
    path = tmp_path / "sub" / "fig.svg"
    export_figure(heatmap(), path, 200, 150)
    export_figure(heatmap(("x", "y", "z")), path, 200, 150)
    assert b">x<" in path.read_bytes() or b"x</text>" in path.read_bytes()
    assert os.listdir(path.parent) == ["fig.svg"]


# ---------------------------------------------------------------------------
# no browser
# ---------------------------------------------------------------------------


def test_bad_browser_path_raises_export_error(tmp_path, monkeypatch):
    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "no-such-chromium"))
    with pytest.raises(ExportError, match="BROWSER_PATH") as info:
        export_figure(heatmap(), tmp_path / "fig.pdf")
    assert "apt-get install chromium" in str(info.value)
    assert not (tmp_path / "fig.pdf").exists()


def test_no_browser_anywhere_raises_export_error(tmp_path, monkeypatch):
    monkeypatch.delenv("BROWSER_PATH", raising=False)
    monkeypatch.setattr(export, "_BROWSER_CANDIDATES", (str(tmp_path / "chromium"),))
    with pytest.raises(ExportError) as info:
        figure_bytes(heatmap(), "png")
    message = str(info.value)
    assert "BROWSER_PATH" in message and "apt-get install chromium" in message


# ---------------------------------------------------------------------------
# atomic writes and matrices (no browser needed)
# ---------------------------------------------------------------------------


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "m.csv"
    target.write_text("old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(export.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        export._atomic_write(target, b"new")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["m.csv"]


def test_export_matrix_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((3, 4)) / 7
    rows = ["block 1", "block, 2", 'q"uote']
    cols = ["σ=0.1", "b", "c", "d"]
    csv_path, npz_path = export_matrix(matrix, rows, cols, tmp_path / "out" / "cka.v2")
    assert (csv_path.name, npz_path.name) == ("cka.v2.csv", "cka.v2.npz")

    with open(csv_path, newline="", encoding="utf-8") as fh:
        table = list(csv.reader(fh))
    assert table[0] == ["", *cols]
    assert [r[0] for r in table[1:]] == rows
    np.testing.assert_array_equal(np.array([[float(v) for v in r[1:]] for r in table[1:]]), matrix)

    with np.load(npz_path, allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz["matrix"], matrix)
        assert npz["matrix"].dtype == np.float64
        assert list(npz["labels_row"]) == rows and list(npz["labels_col"]) == cols


def test_export_matrix_accepts_tensors_and_checks_labels(tmp_path):
    torch = pytest.importorskip("torch")
    csv_path, _ = export_matrix(torch.eye(2), ["a", "b"], ["c", "d"], tmp_path / "eye")
    assert io.StringIO(csv_path.read_text()).readline().strip() == ",c,d"
    with pytest.raises(ValueError, match="do not match"):
        export_matrix(np.eye(2), ["a"], ["c", "d"], tmp_path / "bad")
    with pytest.raises(ValueError, match="2-D"):
        export_matrix(np.ones(3), ["a"], ["c"], tmp_path / "bad")


# ---------------------------------------------------------------------------
# paper style (layout only)
# ---------------------------------------------------------------------------


def test_apply_paper_style_layout():
    fig = heatmap()
    assert apply_paper_style(fig) is fig
    assert fig.layout.width == column_width_px("single") == 336
    assert column_width_px("double") == 687
    assert fig.layout.font.family == FONT_FAMILY and "serif" in FONT_FAMILY
    assert fig.layout.font.size == pytest.approx(pt_to_px(8))
    assert 8 <= fig.layout.font.size * 72 / 96 <= 9
    assert fig.layout.paper_bgcolor == "white" and fig.layout.plot_bgcolor == "white"
    assert fig.layout.xaxis.linewidth <= 1 and fig.layout.xaxis.showgrid is False
    assert fig.data[0].colorbar.thickness == 8
    with pytest.raises(ValueError, match="single"):
        apply_paper_style(heatmap(), column="triple")


def test_apply_paper_style_thin_lines_keep_explicit_widths():
    fig = go.Figure([go.Scatter(y=[1, 2, 3]), go.Scatter(y=[3, 2, 1], line={"width": 3})])
    apply_paper_style(fig, "double", height=250)
    assert fig.data[0].line.width == pytest.approx(pt_to_px(1.0))
    assert fig.data[1].line.width == 3
    assert fig.layout.height == 250


@needs_browser
def test_png_records_its_dpi_and_pdf_its_title(tmp_path):
    from pypdf import PdfReader

    png = export_figure(heatmap(), tmp_path / "fig.png", width=336, height=240, dpi=150)
    with Image.open(png) as img:
        assert img.size == (round(336 * 150 / 96), round(240 * 150 / 96))
        assert img.info["dpi"] == pytest.approx((150, 150), abs=0.05)  # stored as pixels per metre
    with Image.open(export_figure(heatmap(), tmp_path / "default.png", width=100, height=80)) as img:
        assert img.info["dpi"] == pytest.approx((300, 300), abs=0.05)
    titled = heatmap()
    titled.update_layout(title={"text": "CKA <b>within</b> a run"})
    meta = PdfReader(export_figure(titled, tmp_path / "fig.pdf", width=336, height=240)).metadata
    assert meta.title == "CKA  within  a run" and "Kaleido" not in str(meta)
    assert PdfReader(io.BytesIO(figure_bytes(heatmap(), "pdf", 200, 100, title="Drift per stage"))).metadata.title \
        == "Drift per stage"
    with pytest.raises(ValueError, match="dpi"):
        figure_bytes(heatmap(), "png", dpi=0)

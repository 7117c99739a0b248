"""The dashboard's figure downloads read back: the print version of a ready figure and of a
figure builder (:func:`pages._analysis.print_figure` / :func:`figure_file`), as PDF text and
word boxes: the title carries the run, no label is turned or clipped."""
from __future__ import annotations

import io
from types import SimpleNamespace

import numpy as np
from pypdf import PdfReader

from analysis.export import figure_bytes
from analysis.figures import cka_heatmap
from cascade.dashboard.charts import distribution_bar
from pages._analysis import figure_file, print_figure
from support.pdf import assert_inside_page, turned, word_boxes

CLASSES = ["amusement", "anger", "awe", "contentment", "disgust", "excitement"]


def test_cka_export_is_titled_with_the_run_and_states_its_colour_range(tmp_path):
    m = 0.984 + 0.016 * np.random.default_rng(0).random((6, 6))
    np.fill_diagonal(m, 1.0)
    pdf = figure_file(lambda paper: cka_heatmap(m, paper=paper), "pdf", "CKA within run-alpha (val)")
    assert PdfReader(io.BytesIO(pdf)).metadata.title == "CKA within run-alpha (val)"
    words, width, height = word_boxes(pdf, tmp_path)
    assert_inside_page(words, width, height)
    text = " ".join(w[0] for w in words)
    assert "run-alpha" in text
    lo, hi = np.percentile(m, [2, 98])
    assert f"{lo:.3f}–{hi:.3f}" in text          # the colour range is written on the colour bar


def test_distribution_pdf_has_no_turned_text_and_keeps_its_axis_title(tmp_path):
    pred = SimpleNamespace(fused=np.array([0.02, 0.23, 0.22, 0.11, 0.25, 0.17]), classnames=CLASSES)
    fig = print_figure(distribution_bar(pred, truth=[0.5, 0.1, 0.1, 0.1, 0.1, 0.1]), "Predicted distribution: a.png")
    assert tuple(fig.layout.xaxis.range) == (0, 1)
    pdf = figure_bytes(fig, "pdf")
    assert turned(pdf) == []
    words, width, height = word_boxes(pdf, tmp_path)
    assert_inside_page(words, width, height)
    labels = [w for w in words if w[0] == "probability"]
    assert labels and labels[0][4] <= height - 1          # the axis title fully on the page
    assert {"0.02", "0.50"} <= {w[0] for w in words}       # every value written, small bars too

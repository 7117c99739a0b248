"""Figures read back from their exports and layouts: the text a PDF really holds and where it
sits on the page (titles with the run name, nothing clipped), 1-2-5 log ticks, rate axes
inside [0, 1], a chance line on accuracy plots, a clear band for the phase names."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from pypdf import PdfReader

from analysis.export import figure_bytes
from analysis.figures import sigma_sweep_figure
from analysis.run_figures import training_curves, value_bars
from support.pdf import assert_inside_page, turned, word_boxes


def sweep_frame() -> pd.DataFrame:
    grid = np.geomspace(0.05, 20.0, 41)
    return pd.DataFrame([{"sigma": s, "stage": g, "accuracy": 0.3 + 0.05 * k * np.tanh(np.log(s))}
                         for k, g in enumerate([1, 2, "joint"], start=1) for s in grid])


def test_sigma_sweep_ticks_read_1_2_5_and_accuracy_stays_in_unit_interval():
    fig = sigma_sweep_figure(sweep_frame(), "accuracy", learned_sigma=[1.0, 2.0], num_classes=6)
    assert list(fig.layout.xaxis.ticktext) == ["0.05", "0.1", "0.2", "0.5", "1", "2", "5", "10", "20"]
    lo, hi = fig.layout.yaxis.range
    assert 0 <= lo < 1 / 6 < hi <= 1                       # the chance level is on the axis
    chance = [s for s in fig.layout.shapes if s.y0 == s.y1 == pytest.approx(1 / 6)]
    assert len(chance) == 1
    assert any(a.text == "chance 1/6" for a in fig.layout.annotations)


def test_sigma_sweep_pdf_reads_back_its_ticks_chance_label_and_run_title(tmp_path):
    title = "run-alpha: accuracy against σ (val)"
    fig = sigma_sweep_figure(sweep_frame(), "accuracy", learned_sigma=[1.0, 2.0], num_classes=6, paper=True,
                             title=title)
    pdf = figure_bytes(fig, "pdf", title=title)
    assert PdfReader(io.BytesIO(pdf)).metadata.title == title
    words, width, height = word_boxes(pdf, tmp_path)
    assert_inside_page(words, width, height)
    text = [w[0] for w in words]
    assert "run-alpha:" in text and "chance" in text and "1/6" in text
    assert turned(pdf) == ["accuracy"]                     # the y-axis title only: the reader can tell
    # the x ticks, left to right, read as numbers: no decade-less "2" and "5" between them
    ticks = sorted((w for w in words if w[0] in {"0.05", "0.1", "0.2", "0.5", "1", "2", "5", "10", "20"}
                    and w[2] > height * 0.75), key=lambda w: w[1])
    assert [w[0] for w in ticks] == ["0.05", "0.1", "0.2", "0.5", "1", "2", "5", "10", "20"]


def test_training_curves_rates_within_unit_interval_chance_and_phase_band():
    loss = [{"step": s, "term": "total", "value": 2 - s / 40} for s in range(0, 60, 2)]
    val = [{"step": 30, "epoch": 1, "metric": m, "value": 0.42, "stage": "fused"} for m in ("accuracy", "macro_f1",
                                                                                          "kl")]
    phases = [{"epoch": 0, "step": 0, "phase": "prompts only", "stages": 4},
              {"epoch": 1, "step": 30, "phase": "unfreeze", "stages": 4}]
    fig = training_curves(loss, val, phases, num_classes=6)
    # one val point: plotly's own range would run from -0.6 to 1.4
    for axis in (fig.layout.yaxis2, fig.layout.yaxis3):
        lo, hi = axis.range
        assert 0 <= lo < 0.42 < hi <= 1
    assert fig.layout.yaxis4.rangemode == "nonnegative"       # KL is never negative
    assert any(a.text == "chance 1/6" for a in fig.layout.annotations)
    # the loss axis leaves a band above the line for the phase names
    top = fig.layout.yaxis.range[1]
    assert top > 2 + 0.3 * (2 - 0.55)
    assert [a.text for a in fig.layout.annotations if a.text in ("prompts only", "unfreeze")] == \
        ["prompts only", "unfreeze"]
    assert fig.layout.yaxis2.title.text == "accuracy" and fig.layout.annotations[2].text == "val macro-F1"


def test_class_count_labels_sit_beside_the_bars_inside_the_axis():
    counts = {"amusement": 1386, "anger": 296, "awe": 310}
    fig = value_bars(counts, value_title="images", horizontal=True)
    bar = fig.data[0]
    assert bar.textposition == "outside" and bar.textangle == 0
    assert fig.layout.xaxis.range[1] > 1386 * 1.1           # room for the longest bar's label
    prob = value_bars({"a": 0.7, "b": 0.3}, value_title="probability", probability=True)
    assert tuple(prob.layout.yaxis.range) == (0, 1)

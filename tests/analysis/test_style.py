"""The shared figure style's helpers: number formats, log ticks, rate axes, the chance line,
screen margins."""
from __future__ import annotations

import plotly.graph_objects as go
import pytest

from analysis.style import add_chance_line, format_sig, log_ticks, screen_margins, unit_range


def test_format_sig_one_notation_at_any_magnitude():
    assert format_sig(0.316228, 3) == "0.316"
    assert format_sig(1.0) == "1"
    assert format_sig(0.8589527) == "0.859"
    assert format_sig(1.604e-28) == "1.604e-28"
    assert format_sig(0.00012345) == "0.0001234"        # never "0.0000" beside a scientific value


def test_log_ticks_read_1_2_5():
    assert log_ticks(0.05, 20) == [0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20]
    assert log_ticks(0.1, 10) == [0.1, 0.2, 0.5, 1, 2, 5, 10]
    assert log_ticks(0.3, 0.9) == [0.5]
    with pytest.raises(ValueError, match="positive"):
        log_ticks(0, 10)


def test_unit_range_fits_the_data_inside_0_1():
    lo, hi = unit_range([0.42])                          # one point: a band around it, not ±1
    assert 0 <= lo < 0.42 < hi <= 1 and hi - lo == pytest.approx(0.11)
    assert unit_range([0.0, 1.0]) == [0.0, 1.0]          # padding never leaves [0, 1]
    lo, hi = unit_range([0.97, 0.99])
    assert hi == 1.0 and lo < 0.97
    assert unit_range([None, float("nan")]) == [0.0, 1.0]


def test_chance_line_is_drawn_and_labelled():
    fig = go.Figure(go.Scatter(x=[1, 2], y=[0.3, 0.4]))
    add_chance_line(fig, 6)
    assert [s.y0 for s in fig.layout.shapes] == [pytest.approx(1 / 6)]
    assert fig.layout.shapes[0].opacity == 1              # not the print template's pale 0.3
    assert [a.text for a in fig.layout.annotations] == ["chance 1/6"]
    add_chance_line(fig, 1)                              # one class: no chance level to draw
    assert len(fig.layout.shapes) == 1


def test_screen_margins_leave_no_empty_band_on_top():
    fig = screen_margins(go.Figure(go.Scatter(x=[1], y=[1])))
    assert fig.layout.margin.t <= 10                      # plotly's default is 100 px
    titled = screen_margins(go.Figure(go.Scatter(x=[1], y=[1]), layout={"title": {"text": "t"}}))
    assert 10 < titled.layout.margin.t <= 60
    kept = screen_margins(go.Figure(layout={"margin": {"t": 33}}))
    assert kept.layout.margin.t == 33                     # a figure's own margin is kept

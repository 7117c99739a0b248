"""Model sources of the analysis pages and the σ tuner's slider values (no Streamlit here).

A *source* is a run's checkpoint path or, before any run exists, :data:`UNTRAINED`: an
untrained cascade model on the current backbone and the sidebar's data.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

UNTRAINED = "untrained"


def source_id(source: str | Path) -> str:
    """A short stable id of a source, for widget keys."""
    return hashlib.sha256(json.dumps(str(source)).encode()).hexdigest()[:12]


def slider_values(learned: float, lo: float = 0.05, hi: float = 20.0, n: int = 49) -> list[float]:
    """Log-spaced σ options (3 significant digits) plus the learned value itself."""
    grid = {float(f"{v:.3g}") for v in np.geomspace(lo, hi, n)}
    grid.add(float(learned))
    return sorted(grid)


def nearest(values: list[float], target: float) -> float:
    """The value of ``values`` closest to ``target`` on a log scale."""
    return min(values, key=lambda v: abs(np.log(v) - np.log(target)))

"""What the dashboard's pages need from :mod:`analysis`, in one module, without Streamlit.

The pages' Streamlit helpers (``_shared``: caches, sidebar, context; ``_exports``: chart and
table downloads; ``_explain``: the Inspect page's explanation maps) call these functions and
do not import :mod:`analysis` themselves. Helpers that need only :mod:`cascade` live in
:mod:`cascade.dashboard`; this one lives beside the pages because it imports ``analysis``,
and ``analysis`` imports nothing of the dashboard.

- model sources (a run's checkpoint, or an untrained cascade model on the sidebar's data)
  as an :class:`analysis.features.LoadedRun`, their cached per-block features, and the σ
  tuner's :class:`SigmaBundle`;
- files: figures in the print style (PDF, SVG, PNG), tables as LaTeX and Markdown, matrices as CSV/NPZ,
  explanation maps as a grid figure and NPZ;
- tables on screen: numbers at fixed digits, n/a where missing.
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from analysis.drift import drift_over_checkpoints
from analysis.explain import explain_images, relevance_npz_bytes
from analysis.explain_figure import colour_scale_image, explanation_grid, overlay_row
from analysis.export import export_matrix, figure_bytes
from analysis.feature_cache import cached_features, data_key, feature_key, model_key
from analysis.features import (extract_features, loaded_run, run_features, targets_kind, without_fake_distributions,
                               zero_prompt_model)
from analysis.sigma import SigmaSweeper, apply_sigma
from analysis.style import apply_paper_style, format_sig, screen_margins
from analysis.tables import format_number, frame_table
from cascade.dashboard.runs import SUMMARY_METRICS, sanitize_run_name
from cascade.data import EmotionDataset
from cascade.data.transforms import eval_transform_for
from cascade.runfolder import TRAINER_NAMES, LoadedModel, checkpoint_path, checkpoint_run_dir

__all__ = ["SIGMA_GRID", "SigmaBundle", "checkpoint_drift", "checkpoint_features", "colour_scale_image",
           "display_frame", "explain_images", "explanation_files", "figure_file", "latex_table",
           "markdown_table", "matrix_file_bytes", "overlay_row", "save_sigma_checkpoint", "screen_margins",
           "sigma_bundle",
           "untrained_features", "zero_prompt_model"]

SIGMA_GRID = np.geomspace(0.05, 20.0, 41)
# columns that hold measured values: shown at fixed digits even when every value is whole
METRIC_LIKE = (*SUMMARY_METRICS, "std", "weight", "value", "probability")


# ---- model sources ----------------------------------------------------------------------------
def untrained_features(model, data, split: str, *, all_blocks: bool = False, poolings=None):
    """Cached per-block features of an untrained model on the sidebar data's ``split``."""
    items = data.splits.get(split) or []
    if not items:
        raise ValueError(f"the {split} split of this data set is empty")
    dataset = EmotionDataset(data.index, items, eval_transform_for(model), max_pixels=data.config.max_image_pixels)
    poolings = sorted(set(poolings or [model.config.pooling]))
    keys = [data.index.records[i].key for i in items]
    key = feature_key(model_key(model), data_key(data.config, data.index, split, keys,
                                                 transform=f"eval:{model.backbone_info.image_size}"), poolings)
    key["all_blocks"] = bool(all_blocks)
    key["targets"] = targets_kind(data.index)
    return cached_features(key, lambda: without_fake_distributions(
        extract_features(model, dataset, poolings=poolings, all_blocks=all_blocks, batch_size=64, progress=False,
                         classnames=data.classnames), data.index))


def checkpoint_features(loaded: LoadedModel, split: str, which: str, device: str):
    """All-block features of a run's loaded checkpoint model (``which="run"``; a
    :class:`cascade.runfolder.LoadedModel`) or of its frozen CLIP (``"frozen"``), on the run's split."""
    return run_features(loaded_run(loaded), split, which=which, progress=False, device=device)


def checkpoint_drift(run_dir: str | Path, split: str, device: str):
    """Drift of each training checkpoint of a run from frozen CLIP
    (see :func:`analysis.drift.drift_over_checkpoints`)."""
    return drift_over_checkpoints(run_dir, split, device=device)


@dataclass
class SigmaBundle:
    """Everything the σ tuner needs for one source and split (held with st.cache_resource)."""

    label: str
    model: Any
    sweeper: Any
    checkpoint: Path | None
    split: str
    num_samples: int
    setup_seconds: float
    learned: list[float]
    _sweep: Any = field(default=None, repr=False)
    _learned_row: Any = field(default=None, repr=False)

    @property
    def stage_blocks(self) -> list[list[int]]:
        return [list(b) for b in self.model.stage_blocks]

    def evaluate(self, sigmas: list[float]) -> tuple[dict[str, Any], float]:
        """Metrics at ``sigmas`` (exact, from cached features) and the milliseconds it took."""
        t0 = time.perf_counter()
        row = self.sweeper.evaluate(list(map(float, sigmas)))
        return row, 1000 * (time.perf_counter() - t0)

    def learned_metrics(self) -> dict[str, Any]:
        if self._learned_row is None:
            self._learned_row = self.sweeper.evaluate(self.learned)
        return self._learned_row

    def sweep(self):
        """Each stage's σ swept over :data:`SIGMA_GRID` (the others at the learned σ), plus the joint sweep."""
        if self._sweep is None:
            self._sweep = self.sweeper.sweep_all(SIGMA_GRID, joint=True)
        return self._sweep


def sigma_bundle(model, features, *, label: str, checkpoint: Path | None, split: str) -> SigmaBundle:
    t0 = time.perf_counter()
    sweeper = SigmaSweeper(features, model)
    return SigmaBundle(label=label, model=model, sweeper=sweeper, checkpoint=checkpoint, split=split,
                       num_samples=sweeper.num_samples, setup_seconds=time.perf_counter() - t0,
                       learned=[float(v) for v in model.sigma().detach().cpu()])


def save_sigma_checkpoint(checkpoint: Path, sigmas: list[float], name: str, tuned_on: str,
                          allow_test: bool = False) -> Path:
    """Write ``<run>/checkpoints/<name>.safetensors``: the checkpoint with σ replaced, recording
    the split σ was tuned on (a σ tuned on test needs ``allow_test``)."""
    clean = sanitize_run_name(name)
    if clean in TRAINER_NAMES or clean.endswith(".train"):
        raise ValueError(f"{clean!r} is reserved for the trainer's checkpoints; choose another name")
    out = checkpoint_path(checkpoint_run_dir(checkpoint), clean)
    if out.exists():
        raise ValueError(f"{out.name} already exists; choose another name")
    return apply_sigma(checkpoint, sigmas, out, tuned_on=tuned_on, allow_test=allow_test)


# ---- files ----------------------------------------------------------------------------------
def matrix_file_bytes(matrix, rows: list[str], cols: list[str], fmt: str) -> bytes:
    """CSV or NPZ bytes of a labelled matrix, written by :func:`analysis.export.export_matrix`."""
    with tempfile.TemporaryDirectory(prefix="cascade-export-") as tmp:
        csv_path, npz_path = export_matrix(matrix, rows, cols, Path(tmp) / "matrix")
        return (csv_path if fmt == "csv" else npz_path).read_bytes()


def print_figure(build: Callable[[Any], Any] | Any, title: str | None):
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


def figure_file(build: Callable[[Any], Any] | Any, fmt: str, title: str | None = None) -> bytes:
    """A figure (or ``build(paper)``) as a PDF, SVG or PNG file in the print style."""
    return figure_bytes(print_figure(build, title), fmt, title=title or None)


def latex_table(df, *, caption: str = "", notes: list[str] | None = None, digits: int = 4,
                partial: list[bool] | None = None) -> str:
    """A DataFrame as a LaTeX (booktabs) table: best in bold, n/a for missing values; rows
    flagged in ``partial`` (partial runs) marked and never set in bold."""
    return frame_table(df, caption=caption, notes=notes, digits=digits, partial=partial).to_latex()


def markdown_table(df, *, caption: str = "", notes: list[str] | None = None, digits: int = 4,
                   partial: list[bool] | None = None) -> str:
    """The same table as :func:`latex_table`, in Markdown."""
    return frame_table(df, caption=caption, notes=notes, digits=digits, partial=partial).to_markdown()


def explanation_files(explained, fmt: str, *, opacity: float, title: str) -> bytes:
    """Explanation maps of all images: the grid figure (double column) as PDF/SVG/PNG, or the maps as NPZ."""
    if fmt == "npz":
        return relevance_npz_bytes(explained)
    return figure_bytes(explanation_grid(explained, opacity=opacity, paper="double"), fmt, title=title)


# ---- tables on screen ---------------------------------------------------------------------------
def display_frame(df, digits: int = 4, *, significant: bool = False):
    """Floats as fixed-digit text and missing values as "n/a" (a blank cell could be read as 0).

    ``significant``: ``digits`` significant digits in one notation for every value (weights
    from 1 down to 1e-28 in one column), instead of ``digits`` decimals."""
    def numeric_or_missing(values) -> bool:
        return all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values)

    def text(v, whole: bool) -> str:
        if v is None or v != v:
            return "n/a"
        if whole:
            return str(int(v))
        return format_sig(v, digits) if significant else format_number(v, digits)

    out = df.copy()
    for c in out.columns:
        col = out[c]
        if col.dtype.kind == "f" or (col.dtype == object and col.isna().any() and numeric_or_missing(col.tolist())):
            finite = [float(v) for v in col.tolist() if v is not None and v == v]
            whole = bool(finite) and all(v.is_integer() for v in finite) and c not in METRIC_LIKE and \
                not str(c).endswith(METRIC_LIKE)
            out[c] = [text(v, whole) for v in col.tolist()]
    return out

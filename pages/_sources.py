"""Model sources for the analysis pages (σ tuner, NGA curves, CKA) — no Streamlit here.

A *source* is a run's checkpoint or, before any run exists, an untrained cascade model on
the current backbone and the sidebar's data. This module turns a source into what
:mod:`analysis` needs (a :class:`analysis.features.LoadedRun`, cached per-block features,
a :class:`analysis.sigma.SigmaSweeper`). It lives beside the pages rather than in
``cascade.dashboard`` because it imports ``analysis`` (which imports ``cascade``).
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

UNTRAINED = "untrained"
SIGMA_GRID = np.geomspace(0.05, 20.0, 41)


def slider_values(learned: float, lo: float = 0.05, hi: float = 20.0, n: int = 49) -> list[float]:
    """Log-spaced σ options (3 significant digits) plus the learned value itself."""
    grid = {float(f"{v:.3g}") for v in np.geomspace(lo, hi, n)}
    grid.add(float(learned))
    return sorted(grid)


def nearest(values: list[float], target: float) -> float:
    return min(values, key=lambda v: abs(np.log(v) - np.log(target)))


def load_run_from_model(checkpoint: Path, model):
    """An :class:`analysis.features.LoadedRun` around an already-loaded checkpoint model
    (the run's config, its saved split, the trainer's data loader)."""
    from analysis.features import LoadedRun
    from cascade.train.data import load_data
    from cascade.train.run_config import load_run_config

    run_dir = checkpoint.parent.parent
    cfg = load_run_config(run_dir / "config.yaml")
    splits_path = run_dir / "splits.json"
    data = load_data(cfg.data, splits_path if splits_path.is_file() else None)
    return LoadedRun(run_dir=run_dir, config=cfg, model=model, checkpoint=checkpoint, data=data)


def untrained_features(model, data, split: str, *, all_blocks: bool = False, poolings=None):
    """Cached per-block features of an untrained model on the sidebar data's ``split``."""
    from analysis.features import (cached_features, data_key, extract_features, feature_key, model_key, targets_kind,
                                   without_fake_distributions)
    from cascade.data import EmotionDataset
    from cascade.predict import preprocess_for

    items = data.splits.get(split) or []
    if not items:
        raise ValueError(f"the {split} split of this data set is empty")
    dataset = EmotionDataset(data.index, items, preprocess_for(model), max_pixels=data.config.max_image_pixels)
    poolings = sorted(set(poolings or [model.config.pooling]))
    keys = [data.index.records[i].key for i in items]
    key = feature_key(model_key(model), data_key(data.config, data.index, split, keys,
                                                 transform=f"eval:{model.backbone_info.image_size}"), poolings)
    key["all_blocks"] = bool(all_blocks)
    key["targets"] = targets_kind(data.index)
    return cached_features(key, lambda: without_fake_distributions(
        extract_features(model, dataset, poolings=poolings, all_blocks=all_blocks, batch_size=64, progress=False,
                         classnames=data.classnames), data.index))


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
    from analysis.sigma import SigmaSweeper

    t0 = time.perf_counter()
    sweeper = SigmaSweeper(features, model)
    return SigmaBundle(label=label, model=model, sweeper=sweeper, checkpoint=checkpoint, split=split,
                       num_samples=sweeper.num_samples, setup_seconds=time.perf_counter() - t0,
                       learned=[float(v) for v in model.sigma().detach().cpu()])


def save_sigma_checkpoint(checkpoint: Path, sigmas: list[float], name: str, tuned_on: str,
                          allow_test: bool = False) -> Path:
    """Write ``<run>/checkpoints/<name>.safetensors``: the checkpoint with σ replaced, recording
    the split σ was tuned on (a σ tuned on test needs ``allow_test``)."""
    from analysis.sigma import apply_sigma
    from cascade.dashboard.runs import sanitize_run_name

    clean = sanitize_run_name(name)
    if clean in ("best", "last") or clean.endswith(".train"):
        raise ValueError(f"{clean!r} is reserved for the trainer's checkpoints; choose another name")
    out = checkpoint.parent / f"{clean}.safetensors"
    if out.exists():
        raise ValueError(f"{out.name} already exists; choose another name")
    return apply_sigma(checkpoint, sigmas, out, tuned_on=tuned_on, allow_test=allow_test)


def source_id(source: str | Path) -> str:
    return hashlib.sha256(json.dumps(str(source)).encode()).hexdigest()[:12]


# ---- CKA ------------------------------------------------------------------------------------
def matrix_file_bytes(matrix, rows: list[str], cols: list[str], fmt: str) -> bytes:
    """CSV or NPZ bytes of a labelled matrix, written by :func:`analysis.export.export_matrix`."""
    import tempfile

    from analysis.export import export_matrix

    with tempfile.TemporaryDirectory(prefix="cascade-export-") as tmp:
        csv_path, npz_path = export_matrix(matrix, rows, cols, Path(tmp) / "matrix")
        return (csv_path if fmt == "csv" else npz_path).read_bytes()


def checkpoint_paths(run_dir: Path) -> list[Path]:
    """The checkpoints training wrote, one per step, in training order (what drift is measured on)."""
    from analysis.features import training_checkpoints

    return [path for path, _ in training_checkpoints(run_dir)]

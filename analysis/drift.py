"""Alignment drift measured with CKA (DESIGN §7).

* block × block CKA within one model (:func:`within_model_cka`);
* prompted vs frozen CLIP, block by block (:func:`cross_model_cka`, :func:`block_drift`):
  how far the prompts pushed each block's representation;
* each stage's Z_s against frozen CLIP's final embedding (:func:`stage_drift`,
  :func:`stage_vs_frozen_matrix`);
* during training, :class:`DriftMonitor` (a trainer callback) on a fixed probe set,
  warning when a stage's drift relative to the untrained model passes a threshold;
* across a run's saved checkpoints (:func:`drift_over_checkpoints`) or from what the
  monitor logged (:func:`drift_from_logs`).

Drift is ``1 - CKA``: 0 means the representation is the frozen one up to an
orthogonal map and a scale; values near 1 mean it shares little with it. Even an untrained
cascade model is not at 0: Z_s is compared with the *projected* frozen embedding and
``proj`` is not orthogonal (CKA 0.73 on the tiny model before any step). So the monitor
also reports drift relative to step 0, ``1 - CKA_t / CKA_0`` (the share of the initial
alignment lost), and its threshold applies to that.
"""
from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from analysis.cka import DEFAULT_BATCH_SIZE, cka_matrix
from cascade.fileio import to_json
from cascade.model import stage_names
from cascade.runfolder import DRIFT, METRICS, checkpoint_path, is_model_checkpoint, iter_checkpoints, read_jsonl

log = logging.getLogger(__name__)

__all__ = [
    "CKAResult",
    "DriftMonitor",
    "REMEDIES",
    "block_drift",
    "cross_model_cka",
    "drift_from_logs",
    "drift_over_checkpoints",
    "probe_batch",
    "stage_boundaries",
    "stage_drift",
    "stage_features",
    "stage_vs_frozen_matrix",
    "within_model_cka",
]

REMEDIES = ("raise σ for this stage (NGA then averages more of its blocks, e.g. via the σ slider or "
            "`cascade sigma-sweep`), or turn on the distillation term (train.loss.distill > 0) that pulls "
            "e_s towards frozen CLIP's embedding")


# ---------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------


@dataclass
class CKAResult:
    """A labelled CKA matrix with where the stage boundaries fall on each axis."""

    matrix: np.ndarray                       # [R, C] float64
    rows: list[str]
    cols: list[str]
    row_boundaries: list[float] = field(default_factory=list)   # between-cell positions (0-based cells)
    col_boundaries: list[float] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def diagonal(self) -> np.ndarray:
        return np.diagonal(self.matrix).copy()

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame(self.matrix, index=self.rows, columns=self.cols)

    def export(self, path_stem: str | os.PathLike) -> tuple[Path, Path]:
        """CSV + NPZ beside a figure (analysis.export.export_matrix)."""
        from analysis.export import export_matrix

        return export_matrix(self.matrix, self.rows, self.cols, path_stem)


def block_labels(block_ids: Sequence[int]) -> list[str]:
    return [f"{b}" for b in block_ids]


def stage_boundaries(stage_blocks: Sequence[Sequence[int]], block_ids: Sequence[int]) -> list[float]:
    """Positions (in cell units, 0-based, between cells) where a new stage starts along ``block_ids``.

    A boundary at 3.5 lies between the 4th and 5th cell. The edge before the first
    stage is included when prefix blocks (no stage) precede it.
    """
    ids = list(block_ids)
    out = []
    for bl in stage_blocks:
        first = bl[0]
        if first in ids:
            pos = ids.index(first)
            if pos > 0:
                out.append(pos - 0.5)
    return out


def _batch(n: int, batch_size: int | None) -> int:
    if n < 4:
        raise ValueError(f"CKA needs at least 4 samples (the unbiased HSIC estimator), got {n}")
    bs = batch_size or DEFAULT_BATCH_SIZE
    return max(4, min(bs, n))


def _stages_of(model) -> list[list[int]]:
    return [list(b) for b in model.stage_blocks] if model is not None else []


# ---------------------------------------------------------------------------
# CKA matrices from feature sets
# ---------------------------------------------------------------------------


def within_model_cka(fs, *, pooling: str | None = None, blocks: Sequence[int] | None = None, model=None,
                     batch_size: int | None = None, seed: int = 0) -> CKAResult:
    """Block × block minibatch CKA of one model's per-block features (a FeatureSet)."""
    blocks = list(blocks) if blocks is not None else list(fs.block_ids)
    f = fs.get(pooling, blocks)
    m = cka_matrix(f, batch_size=_batch(f.shape[1], batch_size), seed=seed).cpu().numpy()
    b = stage_boundaries(_stages_of(model), blocks) if model is not None else []
    return CKAResult(m, block_labels(blocks), block_labels(blocks), b, b,
                     {"mode": "within", "pooling": pooling or fs.pooling, "n": int(f.shape[1])})


def _check_same_items(fs_a, fs_b) -> None:
    if fs_a.num_samples != fs_b.num_samples or not torch.equal(fs_a.indices, fs_b.indices):
        raise ValueError("the two feature sets do not hold the same items in the same order "
                         "(use the same data and split for both)")


def cross_model_cka(fs_a, fs_b, *, pooling: str | None = None, blocks_a: Sequence[int] | None = None,
                    blocks_b: Sequence[int] | None = None, model=None, batch_size: int | None = None,
                    seed: int = 0) -> CKAResult:
    """Blocks of model A (rows) against blocks of model B (columns), on the same items.

    With A a prompted run and B frozen CLIP, the diagonal is the per-block drift the
    prompts cause (``1 - diagonal``).
    """
    _check_same_items(fs_a, fs_b)
    ba = list(blocks_a) if blocks_a is not None else list(fs_a.block_ids)
    bb = list(blocks_b) if blocks_b is not None else list(fs_b.block_ids)
    pa = pooling or fs_a.pooling
    pb = pooling or fs_b.pooling
    fa, fb = fs_a.get(pa, ba), fs_b.get(pb, bb)
    m = cka_matrix(fa, fb, batch_size=_batch(fa.shape[1], batch_size), seed=seed).cpu().numpy()
    stages = _stages_of(model)
    return CKAResult(m, block_labels(ba), block_labels(bb), stage_boundaries(stages, ba),
                     stage_boundaries(stages, bb), {"mode": "cross", "pooling": pa, "n": int(fa.shape[1])})


def block_drift(run_fs, frozen_fs, *, pooling: str | None = None, blocks: Sequence[int] | None = None,
                batch_size: int | None = None, seed: int = 0):
    """Per block: CKA(prompted f_l, frozen f_l) and drift = 1 - CKA, as a DataFrame."""
    import pandas as pd

    _check_same_items(run_fs, frozen_fs)
    blocks = list(blocks) if blocks is not None else [b for b in run_fs.block_ids if b in frozen_fs.block_ids]
    fa = run_fs.get(pooling, blocks)
    fb = frozen_fs.get(pooling or run_fs.pooling, blocks)
    acc = _pairwise_cka(fa, fb, batch_size, seed)
    return pd.DataFrame({"block": blocks, "cka": acc, "drift": 1.0 - acc})


def _pairwise_cka(fa: torch.Tensor, fb: torch.Tensor, batch_size: int | None, seed: int) -> np.ndarray:
    """CKA of layer i of A with layer i of B: the diagonal of the minibatch CKA matrix."""
    m = cka_matrix(fa, fb, batch_size=_batch(fa.shape[1], batch_size), seed=seed)
    return torch.diagonal(m).cpu().numpy().copy()


@torch.no_grad()
def stage_features(fs, model, sigmas: Any = None) -> torch.Tensor:
    """Each stage's Z_s [S, N, D] from cached per-block features (``model.forward_head``)."""
    bf = fs.block_features(model)
    dev = next(model.parameters()).device
    from cascade.model import BlockFeatures

    out = model.forward_head(BlockFeatures(bf.features.to(dev), bf.block_ids),
                             sigmas=None if sigmas is None else torch.as_tensor(sigmas))
    return out.stage_features.detach().float().cpu()


def _raw_embeddings(z: torch.Tensor, model) -> torch.Tensor:
    """e_s = Z_s W_s [S, N, E], before the classifier's normalisation (comparable with CLIP's embedding)."""
    return torch.stack([z[s] @ model.heads[s].detach().to(z.device, z.dtype) for s in range(z.shape[0])])


@torch.no_grad()
def stage_embeddings(fs, model, sigmas: Any = None) -> torch.Tensor:
    """Each stage's embedding e_s = Z_s W_s [S, N, E] (not normalised)."""
    return _raw_embeddings(stage_features(fs, model, sigmas), model)


def stage_drift(run_fs, model, frozen_embedding: torch.Tensor, *, sigmas: Any = None, which: str = "z",
                batch_size: int | None = None, seed: int = 0):
    """Per stage: CKA of Z_s (``which="z"``, default) or e_s = Z_s W_s (``"embedding"``) with frozen
    CLIP's final embedding [N, E]; a DataFrame with ``stage`` (1-based), ``blocks``, ``cka``, ``drift``."""
    import pandas as pd

    z = stage_features(run_fs, model, sigmas) if which == "z" else stage_embeddings(run_fs, model, sigmas)
    emb = frozen_embedding.float().cpu()
    if emb.shape[0] != z.shape[1]:
        raise ValueError(f"frozen embedding has {emb.shape[0]} rows, the run's features {z.shape[1]}")
    m = cka_matrix(z, emb[None], batch_size=_batch(z.shape[1], batch_size), seed=seed)[:, 0].cpu().numpy()
    blocks = [f"{b[0]}-{b[-1]}" if len(b) > 1 else f"{b[0]}" for b in _stages_of(model)]
    return pd.DataFrame({"stage": list(range(1, len(m) + 1)), "blocks": blocks, "cka": m, "drift": 1.0 - m})


def stage_vs_frozen_matrix(run_fs, model, frozen_fs, frozen_embedding: torch.Tensor | None = None, *,
                           sigmas: Any = None, batch_size: int | None = None, seed: int = 0) -> CKAResult:
    """Rows: the run's stages (Z_s); columns: frozen CLIP's blocks, then its final embedding."""
    from analysis.features import frozen_final_embedding

    _check_same_items(run_fs, frozen_fs)
    z = stage_features(run_fs, model, sigmas)
    cols = list(frozen_fs.get(frozen_fs.pooling).unbind(0))
    labels = block_labels(frozen_fs.block_ids)
    emb = frozen_embedding if frozen_embedding is not None else frozen_final_embedding(frozen_fs, model)
    cols.append(emb.float().cpu())
    labels.append("emb")
    m = cka_matrix(list(z.unbind(0)), cols, batch_size=_batch(z.shape[1], batch_size), seed=seed).cpu().numpy()
    rows = stage_names(_stages_of(model))
    bounds = stage_boundaries(_stages_of(model), frozen_fs.block_ids) + [len(labels) - 1.5]
    return CKAResult(m, rows, labels, [], bounds, {"mode": "stages", "n": int(z.shape[1])})


def stages_vs_stages_matrix(run_fs, model, other_fs, other_model, *, batch_size: int | None = None,
                            seed: int = 0) -> CKAResult:
    """Rows: this run's stages (Z_s); columns: another run's stages (same items)."""
    _check_same_items(run_fs, other_fs)
    za = stage_features(run_fs, model)
    zb = stage_features(other_fs, other_model)
    m = cka_matrix(za, zb, batch_size=_batch(za.shape[1], batch_size), seed=seed).cpu().numpy()
    return CKAResult(m, [f"stage {s + 1}" for s in range(za.shape[0])], [f"stage {s + 1}" for s in range(zb.shape[0])],
                     meta={"mode": "stages", "n": int(za.shape[1])})


# ---------------------------------------------------------------------------
# during training
# ---------------------------------------------------------------------------


def probe_batch(dataset, n: int | None = 256, seed: int = 0) -> torch.Tensor:
    """A fixed, seeded set of ``n`` images [n, 3, H, W] from a dataset yielding {"image": ...}
    (``None`` or more than it holds: all of them)."""
    g = np.random.default_rng(seed)
    size = len(dataset) if n is None else min(n, len(dataset))
    picks = g.choice(len(dataset), size=size, replace=False)
    return torch.stack([dataset[int(i)]["image"] for i in sorted(picks)])


def relative_drift(cka: Sequence[float], baseline: Sequence[float] | None) -> list[float | None]:
    """``1 - CKA_t / CKA_0`` per entry: the share of the step-0 alignment lost (None without a baseline)."""
    if baseline is None:
        return [None] * len(cka)
    return [None if b is None or c is None or not b > 0 else 1.0 - c / b for c, b in zip(cka, baseline)]


def _metrics_log_of(state: Any):
    """The trainer's metrics log if the callback state exposes one (any of a few names)."""
    for name in ("metrics_log", "logger", "log"):
        obj = getattr(state, name, None)
        if obj is not None and callable(getattr(obj, "write", None)):
            return obj
    return None


class DriftMonitor:
    """Trainer callback: drift of every stage (and block) on a fixed probe batch every K steps.

    Args:
        probe_batch: images [B, 3, H, W] (see :func:`probe_batch`; the debiased estimator is
            noisy below a few hundred), or a dict with ``"image"``. The monitor keeps its own
            probe, so it works with ``train.cache_prefix`` too.
        every_k_steps: measure when ``global_step % every_k_steps == 0`` (and once at the start).
        threshold: warn when a stage's drift relative to step 0, ``1 - CKA_t / CKA_0`` of
            ``CKA(Z_s, frozen embedding)``, exceeds it (without a step-0 measurement, the
            absolute drift ``1 - CKA_t``).
        which: ``"z"`` compares the stage features Z_s (default, as DESIGN §7), ``"embedding"``
            the stage embeddings e_s = Z_s W_s (what the distillation term pulls; 0 at
            initialisation for a last-block stage).
        per_block: also log the prompted-vs-frozen drift of every feature block.
        log_path: where to append records when the trainer's state does not expose its
            metrics log (default ``<run_dir>/drift.jsonl``; records carry ``kind: "drift"``).

    Records go to the trainer's ``metrics.jsonl`` when the callback state has a
    ``metrics_log`` (with ``write(dict)``), else to ``drift.jsonl`` beside it — writing
    to metrics.jsonl behind the trainer's back would break its resume bookkeeping.
    Warnings go to the ``analysis.drift`` logger, once per stage each time it crosses
    the threshold, naming the stage and the remedies (:data:`REMEDIES`).
    """

    def __init__(self, probe_batch: Any, every_k_steps: int = 50, threshold: float = 0.5, *,
                 per_block: bool = True, log_path: str | os.PathLike | None = None, batch_size: int | None = None,
                 which: str = "z"):
        if which not in ("z", "embedding"):
            raise ValueError(f"which: expected 'z' (stage features Z_s) or 'embedding' (e_s), got {which!r}")
        self.which = which
        if every_k_steps < 1:
            raise ValueError("every_k_steps must be >= 1")
        if not 0 <= threshold <= 2:
            raise ValueError("threshold is a drift 1 - CKA, normally in [0, 1]")
        if isinstance(probe_batch, dict):
            probe_batch = probe_batch["image"]
        probe = torch.as_tensor(probe_batch)
        if probe.ndim != 4:
            raise ValueError(f"probe_batch: expected images [B, 3, H, W], got shape {tuple(probe.shape)}")
        if probe.shape[0] < 4:
            raise ValueError(f"the probe batch needs at least 4 images for CKA, got {probe.shape[0]}")
        self.probe = probe
        self.every = int(every_k_steps)
        self.threshold = float(threshold)
        self.per_block = per_block
        self.log_path = Path(log_path) if log_path is not None else None
        self.batch_size = batch_size
        self.forward_batch = 64     # images per forward pass of the probe
        self.baseline: dict[str, list[float]] | None = None   # CKA of the untrained model (step 0)
        self.history: list[dict[str, Any]] = []
        self.warnings: list[str] = []
        self._above: set[int] = set()
        self._frozen_emb: torch.Tensor | None = None
        self._frozen_blocks: torch.Tensor | None = None
        self._ref_model_id: int | None = None

    # -- references ---------------------------------------------------------------------
    @torch.no_grad()
    def _references(self, model) -> None:
        """Frozen CLIP on the probe: its feature blocks and its final embedding (computed once)."""
        from analysis.features import zero_prompt_model
        from cascade.train.data import frozen_embedding

        frozen = zero_prompt_model(model)
        fb = list(model.feature_blocks)
        blocks, embs = [], []
        device = next(model.parameters()).device
        for chunk in self.probe.split(self.forward_batch):
            x = chunk.to(device)
            bf = frozen.forward_features(x, all_blocks=True)
            blocks.append(bf.features[[bf.block_ids.index(b) for b in fb]].float().cpu())
            # The same reference the distillation term pulls towards.
            embs.append(frozen_embedding(model, images=x).float().cpu())
        self._frozen_blocks = torch.cat(blocks, dim=1)
        self._frozen_emb = torch.cat(embs)
        self._ref_model_id = id(model)

    # -- measuring ------------------------------------------------------------------------
    @torch.no_grad()
    def measure(self, model, step: int | None = None, epoch: int | None = None) -> dict[str, Any]:
        """Drift now (no logging); also used by the hooks."""
        if self._frozen_emb is None or self._ref_model_id != id(model):
            self._references(model)
        modes = [(m, m.training) for m in model.modules()]
        model.eval()
        zs, blocks, ids = [], [], []
        try:
            for chunk in self.probe.split(self.forward_batch):
                out = model(chunk.to(next(model.parameters()).device), return_block_features=True)
                zs.append(out.stage_features.float().cpu())
                if out.block_features is not None:
                    blocks.append(out.block_features.float().cpu())
                    ids = list(out.block_ids)
        finally:
            for m, t in modes:
                m.train(t)
        z = torch.cat(zs, dim=1)
        z = z if self.which == "z" else _raw_embeddings(z, model)
        bs = self.batch_size or z.shape[1]
        cka = [float(v) for v in cka_matrix(z, self._frozen_emb[None], batch_size=_batch(z.shape[1], bs))[:, 0]]
        rec: dict[str, Any] = {"kind": "drift", "global_step": step, "epoch": epoch, "threshold": self.threshold,
                               "of": "Z_s" if self.which == "z" else "e_s", "n": int(z.shape[1]),
                               "stage_cka": cka, "stage_drift": [1 - v for v in cka], "time": time.time()}
        if self.per_block and blocks:
            feats = torch.cat(blocks, dim=1)
            fb = list(model.feature_blocks)
            sel = feats[[ids.index(b) for b in fb]]
            vals = [float(v) for v in _pairwise_cka(sel, self._frozen_blocks, bs, 0)]
            rec["blocks"] = fb
            rec["block_cka"] = vals
            rec["block_drift"] = [1 - v for v in vals]
        return self._add_relative(rec)

    def _add_relative(self, rec: dict[str, Any]) -> dict[str, Any]:
        """Drift relative to the step-0 baseline, and which of the two the threshold reads."""
        base = self.baseline or {}
        rec["threshold_on"] = "relative" if base.get("stage") else "absolute"
        rec["stage_cka_step0"] = base.get("stage")
        rec["stage_drift_relative"] = relative_drift(rec["stage_cka"], base.get("stage"))
        if "block_cka" in rec:
            rec["block_drift_relative"] = relative_drift(rec["block_cka"], base.get("block"))
        return rec

    def check(self, model, step: int | None = None, epoch: int | None = None, state: Any = None) -> dict[str, Any]:
        """Measure, warn on threshold crossings, log and keep the record."""
        rec = self.measure(model, step, epoch)
        if step == 0 and self.baseline is None:
            # The untrained model: every later measurement is read against this one.
            self.baseline = {"stage": rec["stage_cka"], "block": rec.get("block_cka")}
            self._add_relative(rec)
        warned = []
        relative = rec["threshold_on"] == "relative"
        for s, (d_abs, d_rel) in enumerate(zip(rec["stage_drift"], rec["stage_drift_relative"])):
            d = d_rel if relative else d_abs
            if d is None or not math.isfinite(d):
                continue
            if d > self.threshold:
                if s not in self._above:
                    blocks = model.stage_blocks[s]
                    span = f"blocks {blocks[0]}-{blocks[-1]}" if len(blocks) > 1 else f"block {blocks[0]}"
                    what = f"Z_{s + 1}" if self.which == "z" else f"e_{s + 1}"
                    measured = (f"lost {d:.1%} of its step-0 alignment (CKA({what}, frozen CLIP embedding) "
                                f"{rec['stage_cka'][s]:.3f}, was {rec['stage_cka_step0'][s]:.3f})"
                                if relative else f"has 1 - CKA({what}, frozen CLIP embedding) = {d_abs:.3f}")
                    msg = (f"alignment drift: stage {s + 1} ({span}) {measured} > threshold {self.threshold:g}"
                           + (f" at step {step}" if step is not None else "") + f". Remedies: {REMEDIES}.")
                    log.warning(msg)
                    self.warnings.append(msg)
                    warned.append(s + 1)
                self._above.add(s)
            else:
                self._above.discard(s)
        rec["warned_stages"] = warned
        self.history.append(rec)
        self._write(rec, state)
        return rec

    def _write(self, rec: dict[str, Any], state: Any) -> None:
        if state is not None and getattr(state, "rank", 0) != 0:
            return
        sink = _metrics_log_of(state) if state is not None else None
        if sink is not None:
            sink.write(rec)
            return
        path = self.log_path
        if path is None and state is not None and getattr(state, "run_dir", None) is not None:
            path = Path(state.run_dir) / DRIFT
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(to_json(rec, indent=None) + "\n")

    # -- trainer hooks ----------------------------------------------------------------------
    def on_train_start(self, state: Any) -> None:
        # A resumed run already logged its step-0 reference; logging it again would
        # make its metrics.jsonl differ from an uninterrupted run's. Its baseline is read back.
        if int(getattr(state, "global_step", 0)) == 0:
            self.check(state.model, 0, _epoch1(state), state)
        elif self.baseline is None:
            self.baseline = _logged_baseline(state)

    def on_step_end(self, state: Any) -> None:
        step = int(getattr(state, "global_step", 0))
        if step % self.every == 0:
            self.check(state.model, step, _epoch1(state), state)

    def on_epoch_end(self, state: Any) -> None:  # noqa: D401 - nothing per epoch
        return None

    def on_train_end(self, state: Any) -> None:
        return None


class ConfiguredDriftMonitor(DriftMonitor):
    """A :class:`DriftMonitor` built from ``train.drift`` of a run config.

    The probe images are drawn when training starts, from the run's own val split
    (train if val is empty) with the model's eval preprocessing, so the CLI and the
    dashboard need nothing but the config to turn monitoring on.
    """

    def __init__(self, drift_cfg: Any):
        self.cfg = drift_cfg
        self._ready = False

    def on_train_start(self, state: Any) -> None:
        from cascade.data import EmotionDataset
        from cascade.data.transforms import eval_transform_for

        bundle = state.data
        split = "val" if bundle.splits.get("val") else "train"
        dataset = EmotionDataset(bundle.index, bundle.splits[split], transform=eval_transform_for(state.model),
                                 max_pixels=bundle.config.max_image_pixels)
        super().__init__(probe_batch(dataset, n=self.cfg.probe_size, seed=state.config.train.seed),
                         every_k_steps=self.cfg.every_k_steps, threshold=self.cfg.threshold,
                         per_block=self.cfg.per_block, which=self.cfg.which)
        self._ready = True
        super().on_train_start(state)


def drift_callbacks(run_config: Any) -> list[Any]:
    """The callbacks ``train.drift`` asks for (none when ``every_k_steps`` is 0)."""
    cfg = run_config.train.drift
    return [ConfiguredDriftMonitor(cfg)] if cfg.every_k_steps > 0 else []


def _logged_baseline(state: Any) -> dict[str, list[float]] | None:
    """The step-0 CKA a resumed run logged before it stopped."""
    sink = _metrics_log_of(state)
    records = sink.records() if sink is not None and callable(getattr(sink, "records", None)) else []
    for rec in records:
        if rec.get("kind") == "drift" and rec.get("global_step") == 0:
            return {"stage": rec.get("stage_cka"), "block": rec.get("block_cka")}
    return None


def _epoch1(state: Any) -> int | None:
    e = getattr(state, "epoch", None)
    return None if e is None else int(e) + 1




# ---------------------------------------------------------------------------
# curves over training
# ---------------------------------------------------------------------------


def drift_from_logs(run_dir: str | os.PathLike):
    """Drift records the monitor logged (metrics.jsonl and drift.jsonl), long format.

    Columns: ``global_step``, ``epoch``, ``kind`` ("stage" or "block"), ``index``
    (1-based stage or block number), ``series`` (e.g. "stage 2"), ``cka``, ``drift`` and
    ``drift_relative`` (``1 - CKA / CKA at step 0``; None in logs without a step-0 baseline).
    """
    import pandas as pd

    run_dir = Path(run_dir)
    rows = []
    seen = set()
    for path in (run_dir / METRICS, run_dir / DRIFT):
        for rec in read_jsonl(path):
            if rec.get("kind") != "drift":
                continue
            key = (rec.get("global_step"), rec.get("time"))
            if key in seen:
                continue
            seen.add(key)
            at = {"global_step": rec.get("global_step"), "epoch": rec.get("epoch")}
            stage_cka = rec.get("stage_cka") or []
            stage_rel = rec.get("stage_drift_relative") or [None] * len(stage_cka)
            for s, (c, r) in enumerate(zip(stage_cka, stage_rel)):
                rows.append(at | {"kind": "stage", "index": s + 1, "series": f"stage {s + 1}", "cka": c,
                                  "drift": None if c is None else 1 - c, "drift_relative": r})
            block_cka = rec.get("block_cka") or []
            block_rel = rec.get("block_drift_relative") or [None] * len(block_cka)
            for b, c, r in zip(rec.get("blocks") or [], block_cka, block_rel):
                rows.append(at | {"kind": "block", "index": b, "series": f"block {b}", "cka": c,
                                  "drift": None if c is None else 1 - c, "drift_relative": r})
    df = pd.DataFrame(rows, columns=["global_step", "epoch", "kind", "index", "series", "cka", "drift",
                                     "drift_relative"])
    return df.sort_values(["kind", "index", "global_step"], kind="stable").reset_index(drop=True)


def drift_over_checkpoints(run_dir: str | os.PathLike, split: str = "val", *, checkpoints: Sequence[str | os.PathLike]
                           | None = None, device: str | torch.device = "cpu", cache_dir: str | os.PathLike | None = None,
                           batch_size: int = 64, progress: bool = False, per_block: bool = True):
    """Stage (and block) drift of each saved checkpoint of a run on one split, long format.

    Features of every checkpoint are cached (keyed by the checkpoint's hash). Columns:
    ``checkpoint``, ``global_step``, ``epoch``, ``kind``, ``index``, ``series``, ``cka``, ``drift``.
    """
    import pandas as pd

    from analysis.features import LoadedRun, frozen_final_embedding, load_run, run_features
    from cascade.checkpoint import load_into, read_meta

    run = load_run(run_dir, checkpoint="last" if checkpoint_path(run_dir, "last").is_file() else "best", device=device)
    paths = ([Path(p) for p in checkpoints if is_model_checkpoint(p)] if checkpoints is not None
             else iter_checkpoints(run_dir))
    if not paths:
        raise FileNotFoundError(f"{run_dir}: no checkpoints")
    frozen = run_features(run, split, which="frozen", poolings=sorted({"cls", run.model.config.pooling}),
                          cache_dir=cache_dir, device=device, batch_size=batch_size, progress=progress)
    emb = frozen_final_embedding(frozen, run.model)
    rows = []
    for path in paths:
        load_into(run.model, path)
        extra = read_meta(path).get("extra") or {}
        this = LoadedRun(run_dir=run.run_dir, config=run.config, model=run.model, checkpoint=path, data=run.data)
        fs = run_features(this, split, cache_dir=cache_dir, device=device, batch_size=batch_size, progress=progress)
        base = {"checkpoint": path.stem, "global_step": extra.get("global_step"), "epoch": extra.get("epoch")}
        sd = stage_drift(fs, run.model, emb)
        for _, r in sd.iterrows():
            rows.append(base | {"kind": "stage", "index": int(r["stage"]), "series": f"stage {int(r['stage'])}",
                                "cka": float(r["cka"]), "drift": float(r["drift"])})
        if per_block:
            bd = block_drift(fs, frozen, blocks=list(run.model.feature_blocks))
            for _, r in bd.iterrows():
                rows.append(base | {"kind": "block", "index": int(r["block"]), "series": f"block {int(r['block'])}",
                                    "cka": float(r["cka"]), "drift": float(r["drift"])})
    return pd.DataFrame(rows, columns=["checkpoint", "global_step", "epoch", "kind", "index", "series", "cka", "drift"])

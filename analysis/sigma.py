"""Exact σ sweeps from cached per-block features, NGA weight curves, and writing chosen σ.

σ acts only after the blocks (NGA weighs their outputs), so with a run's per-block features f_k
cached, the outputs for any σ follow from the (fixed) heads and classifier alone.
Everything here is linear in the NGA weights, which makes the sweep vectorisable:

* stage s: e_s(σ) = Σ_{l∈s} w_l(σ) P_l with P_l = f_l W_s, computed once;
* a stage's cosine logits need only e_s·T̂_c = Σ_l w_l Q_{l,c} (Q = P T̂ᵀ, once) and
  ‖e_s‖² = wᵀ G w with G the per-sample Gram matrix of the P_l (once);
* fused e = Σ_s λ_s e_s/‖e_s‖ = Σ_k v_k P_k with v_k = λ_{s(k)} w_k / ‖e_{s(k)}‖, so its
  logits again need only Q and G.

No embedding-sized product is done per σ; a σ costs O(N·K·(K + C)). The weights come
from :func:`cascade.nga.nga_weights` with σ in float32 — the very computation
``model.forward_head(..., sigmas=...)`` does — and everything after them runs in
float64, so the results equal a float64 forward pass to rounding (≈1e-12).
"""
from __future__ import annotations

import contextlib
import math
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file

from analysis.feature_cache import file_sha256
from cascade.checkpoint import read_meta, write_checkpoint
from cascade.config import parse_stages
from cascade.metrics import (
    CLASSIFICATION_METRICS,
    DEFAULT_EPS,
    DISTRIBUTION_METRICS,
    confusion_matrix,
    higher_is_better,
    metrics_from_confusion,
)
from cascade.model import BlockFeatures
from cascade.nga import nga_weights
from cascade.runfolder import resolve_checkpoint

__all__ = [
    "HeadSpec",
    "SigmaSweeper",
    "apply_sigma",
    "benchmark_sweep",
    "nga_limits",
    "nga_weight_curves",
    "parse_sigma_grid",
]

_EPS = 1e-12  # F.normalize's eps


# ---------------------------------------------------------------------------
# grids and NGA weight curves
# ---------------------------------------------------------------------------


def parse_sigma_grid(spec: str | Sequence[float]) -> np.ndarray:
    """σ values from ``"lo:hi:n"`` (n values log-spaced from lo to hi, inclusive), a
    comma list ``"0.5,1,2"``, or a sequence of numbers. All must be > 0."""
    if isinstance(spec, str):
        text = spec.strip()
        if ":" in text:
            parts = text.split(":")
            if len(parts) != 3:
                raise ValueError(f"sigma grid {spec!r}: expected lo:hi:n, e.g. 0.1:10:50")
            try:
                lo, hi, n = float(parts[0]), float(parts[1]), int(parts[2])
            except ValueError:
                raise ValueError(f"sigma grid {spec!r}: lo and hi must be numbers and n an integer") from None
            if not (lo > 0 and hi > 0):
                raise ValueError(f"sigma grid {spec!r}: lo and hi must be > 0 (the grid is log-spaced)")
            if n < 1:
                raise ValueError(f"sigma grid {spec!r}: n must be >= 1")
            values = np.geomspace(lo, hi, n) if n > 1 else np.array([lo])
        else:
            try:
                values = np.array([float(v) for v in text.split(",") if v.strip()])
            except ValueError:
                raise ValueError(f"sigma grid {spec!r}: expected lo:hi:n or a comma-separated list") from None
    else:
        values = np.asarray(list(spec), dtype=np.float64).reshape(-1)
    if values.size == 0:
        raise ValueError("sigma grid is empty")
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ValueError(f"sigma values must be finite and > 0, got {values.tolist()}")
    return values


def _stage_depths(spec: Any) -> list[list[int]]:
    """Blocks (1-based) of each stage, from a model, a HeadSpec, a list of depths or of block lists."""
    if hasattr(spec, "stage_blocks"):
        return [list(b) for b in spec.stage_blocks]
    if isinstance(spec, int):
        return [list(range(1, spec + 1))]
    out = []
    for s in spec:
        out.append(list(range(1, int(s) + 1)) if isinstance(s, (int, np.integer)) else list(s))
    return out


def nga_weight_curves(stages: Any, sigmas: Sequence[float] | Sequence[Sequence[float]], mode: str = "normalized",
                      labels: Sequence[str] | None = None) -> "pd.DataFrame":  # noqa: F821
    """NGA weights per stage for each σ.

    Args:
        stages: a CascadeCLIP / HeadSpec, a list of stage depths, or a list of block lists.
        sigmas: σ values applied to every stage, or one list of per-stage σ per curve.
        mode: ``normalized`` (default), ``free`` or ``last`` (as ``CascadeConfig.nga``).
        labels: a name per curve (default ``"σ=<value>"``).

    Returns a DataFrame with columns ``stage`` (1-based), ``curve``, ``sigma``, ``block``
    (1-based block number), ``position`` (1..d within the stage) and ``weight``.
    """
    import pandas as pd

    blocks = _stage_depths(stages)
    if hasattr(stages, "config") and mode == "normalized":
        mode = stages.config.nga
    elif isinstance(stages, HeadSpec) and mode == "normalized":
        mode = stages.nga_mode
    rows = []
    for c, sig in enumerate(sigmas):
        per_stage = [float(sig)] * len(blocks) if np.isscalar(sig) else [float(v) for v in sig]
        if len(per_stage) != len(blocks):
            raise ValueError(f"curve {c}: {len(per_stage)} σ values for {len(blocks)} stages")
        name = labels[c] if labels is not None else (
            f"σ={per_stage[0]:g}" if len(set(per_stage)) == 1 else "σ=(" + ", ".join(f"{v:.3g}" for v in per_stage) + ")")
        for s, (bl, sv) in enumerate(zip(blocks, per_stage)):
            w = nga_weights(len(bl), torch.tensor(sv, dtype=torch.float32), mode)
            for pos, (b, wv) in enumerate(zip(bl, w.tolist())):
                rows.append({"stage": s + 1, "curve": name, "sigma": sv, "block": b, "position": pos + 1,
                             "weight": wv})
    return pd.DataFrame(rows, columns=["stage", "curve", "sigma", "block", "position", "weight"])


def nga_limits(stages: Any) -> "pd.DataFrame":  # noqa: F821
    """The two limits of normalised NGA per stage: σ→0 (last block only) and σ→∞ (plain mean)."""
    import pandas as pd

    rows = []
    for s, bl in enumerate(_stage_depths(stages)):
        d = len(bl)
        for pos, b in enumerate(bl):
            rows.append({"stage": s + 1, "curve": "σ→0: last block", "block": b, "position": pos + 1,
                         "weight": 1.0 if pos == d - 1 else 0.0})
            rows.append({"stage": s + 1, "curve": "σ→∞: mean", "block": b, "position": pos + 1, "weight": 1.0 / d})
    return pd.DataFrame(rows, columns=["stage", "curve", "block", "position", "weight"])


# ---------------------------------------------------------------------------
# the head, detached from the backbone
# ---------------------------------------------------------------------------


@dataclass
class HeadSpec:
    """What ``forward_head`` uses: stage blocks, heads, classifier, λ, NGA mode and σ.

    Built from a model with :meth:`from_model`, or by hand (benchmarks) — it holds no
    backbone, so it is cheap to keep around in a dashboard.
    """

    stage_blocks: list[list[int]]            # 1-based blocks per stage
    heads: list[torch.Tensor]                # [D, E] per stage
    classifier: torch.Tensor                 # [C, E] raw class vectors
    logit_scale: torch.Tensor                # scalar
    fusion_weights: torch.Tensor | None      # [S] λ, zero outside the fusion; None under concat fusion
    fused_stages: list[int]                  # 0-based
    sigma: torch.Tensor                      # [S] the model's σ
    nga_mode: str = "normalized"
    concat_head: torch.Tensor | None = None  # [S_f·D, E] for fusion "concat"
    classnames: list[str] = field(default_factory=list)

    @classmethod
    @torch.no_grad()
    def from_model(cls, model) -> "HeadSpec":
        return cls(
            stage_blocks=[list(b) for b in model.stage_blocks],
            heads=[h.detach().float().cpu().clone() for h in model.heads],
            classifier=model.classifier.weight.detach().float().cpu().clone(),
            logit_scale=model.classifier.logit_scale.detach().float().cpu().clone(),
            fusion_weights=None if (lam := model.current_fusion_weights()) is None else lam.detach().float().cpu(),
            fused_stages=list(model.fused_stages),
            sigma=model.sigma().detach().float().cpu(),
            nga_mode=model.config.nga,
            concat_head=None if model.concat_head is None else model.concat_head.detach().float().cpu().clone(),
            classnames=list(model.classnames),
        )

    @property
    def num_stages(self) -> int:
        return len(self.stage_blocks)

    @property
    def feature_blocks(self) -> list[int]:
        return [b for bl in self.stage_blocks for b in bl]

    @property
    def num_classes(self) -> int:
        return int(self.classifier.shape[0])


# ---------------------------------------------------------------------------
# the sweeper
# ---------------------------------------------------------------------------


def _to_numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _nanmean_rows(a: np.ndarray) -> np.ndarray:
    """Row means over the non-NaN entries (NaN for an all-NaN row), without warnings."""
    ok = ~np.isnan(a)
    cnt = ok.sum(axis=1)
    tot = np.where(ok, a, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, tot / np.maximum(cnt, 1), np.nan)


def _argmax_dim1(x: torch.Tensor) -> torch.Tensor:
    """argmax over dim 1 (the classes) with the first maximum winning ties, as np.argmax.

    A loop over the few classes: torch's argmax over a non-innermost dim is slow on CPU.
    """
    best = x.amax(dim=1)
    idx = torch.zeros(best.shape, dtype=torch.long, device=x.device)
    for c in range(x.shape[1] - 1, -1, -1):      # descending: the lowest maximal class is written last
        idx.masked_fill_(x[:, c] == best, c)
    return idx


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Temporarily set torch's intra-op threads (process-wide; restored on exit)."""
    if n is None or n == torch.get_num_threads():
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


class SigmaSweeper:
    """Metrics for any σ from cached per-block features, exactly (σ acts after the blocks).

    Args:
        features: a :class:`analysis.feature_cache.FeatureSet` (labels and distributions
            come with it), a ``BlockFeatures``, or a tensor [K, N, D] of the model's
            feature blocks in order.
        model: the CascadeCLIP whose heads and classifier score the features, or a
            :class:`HeadSpec`.
        labels, dists: targets [N] and [N, C] when ``features`` does not carry them.
        dtype: computation dtype after the weights (float64 makes results equal a
            float64 forward pass to ~1e-12).
        num_threads: torch threads while sweeping (default 1: the per-σ work is small
            and memory-bound, and extra threads only add contention; None leaves torch's).
        chunk: σ configurations computed together (bounds memory: ~N·K·chunk floats).
        stage_metrics: per-stage metrics to report: ``"accuracy"`` (default, cheap),
            ``"all"`` or ``None``.

    Stages are 1-based in every argument and output of this class.
    """

    def __init__(self, features: Any, model: Any, *, labels: Any = None, dists: Any = None,
                 dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu",
                 stage_metrics: str | None = "accuracy", chunk: int = 64, num_threads: int | None = 1):
        spec = model if isinstance(model, HeadSpec) else HeadSpec.from_model(model)
        if stage_metrics not in (None, "accuracy", "all"):
            raise ValueError(f"stage_metrics: expected 'accuracy', 'all' or None, got {stage_metrics!r}")
        self.spec = spec
        self.dtype = dtype
        self.device = torch.device(device)
        self.stage_metrics = stage_metrics
        self.chunk = max(1, int(chunk))
        self.num_threads = num_threads
        self._weight_cache: dict[tuple[int, float], torch.Tensor] = {}

        blocks = spec.feature_blocks
        f, lab, dis = self._unpack(features, blocks, model)
        if labels is not None:
            lab = labels
        if dists is not None:
            dis = dists
        if lab is None:
            raise ValueError("SigmaSweeper needs labels: pass a FeatureSet or labels=")
        self.labels = _to_numpy(lab).astype(np.int64).reshape(-1)
        n = int(f.shape[1])
        if self.labels.shape[0] != n:
            raise ValueError(f"{n} feature rows but {self.labels.shape[0]} labels")
        c = spec.num_classes
        if dis is not None:
            d = _to_numpy(dis).astype(np.float64)
            if d.shape != (n, c):
                raise ValueError(f"dists must be [{n}, {c}], got {d.shape}")
            self.dists = d if np.all(np.isfinite(d)) else None
        else:
            self.dists = None
        self.num_samples = n
        self._precompute(f)

    # -- set-up ------------------------------------------------------------------------
    @staticmethod
    def _unpack(features: Any, blocks: list[int], model: Any):
        lab = dis = None
        if hasattr(features, "features") and isinstance(getattr(features, "features"), dict):  # FeatureSet
            pooling = getattr(getattr(model, "config", None), "pooling", None)
            f = features.get(pooling if pooling in features.features else None, blocks)
            lab, dis = features.labels, features.dists
        elif isinstance(features, BlockFeatures):
            if features.block_ids != blocks:
                f = features.features[[features.block_ids.index(b) for b in blocks]]
            else:
                f = features.features
        else:
            f = torch.as_tensor(features)
            if f.shape[0] != len(blocks):
                raise ValueError(f"features hold {f.shape[0]} blocks; the head needs {len(blocks)} ({blocks})")
        return f, lab, dis

    @torch.no_grad()
    def _precompute(self, f: torch.Tensor) -> None:
        spec, dt, dev = self.spec, self.dtype, self.device
        f = f.to(dev)
        n = int(f.shape[1])
        # As in TextClassifier.forward: normalise the class vectors in their own dtype, then cast.
        t_hat = F.normalize(spec.classifier.to(dev), dim=-1).to(dt)           # [C, E]
        self.scale_t = spec.logit_scale.to(dev).to(dt)
        self._stage_slices: list[slice] = []
        k0 = 0
        for bl in spec.stage_blocks:
            self._stage_slices.append(slice(k0, k0 + len(bl)))
            k0 += len(bl)
        self.num_blocks = k0
        c = t_hat.shape[0]
        with torch_threads(self.num_threads):
            # P_k = f_k W_{s(k)} (once); then Q = P T̂ᵀ and the per-sample Gram matrix of the P's.
            # Layouts are sample-major so that every per-σ product is one plain GEMM.
            proj = torch.empty((n, k0, t_hat.shape[1]), dtype=dt, device=dev)   # [N, K, E]
            for s, sl in enumerate(self._stage_slices):
                w = spec.heads[s].to(dev).to(dt)
                proj[:, sl] = torch.matmul(f[sl].to(dt), w).transpose(0, 1)
            q = torch.matmul(t_hat, proj.transpose(1, 2))                        # [N, C, K]
            gram = torch.matmul(proj, proj.transpose(1, 2))                      # [N, K, K]
            self._q = [q[:, :, sl].reshape(n * c, sl.stop - sl.start).contiguous() for sl in self._stage_slices]
            self._gcol = [gram[:, :, sl].reshape(n * k0, sl.stop - sl.start).contiguous() for sl in self._stage_slices]
            # concat fusion has no λ: its projection of the concatenated stages does the fusing
            self._lam = [0.0] * spec.num_stages if spec.fusion_weights is None else \
                [float(v) for v in spec.fusion_weights.to(dev).to(dt)]
            self.concat = spec.concat_head is not None
            if self.concat:
                d = f.shape[-1]
                mask = torch.zeros(k0, dtype=dt, device=dev)
                r = torch.zeros((n, k0, t_hat.shape[1]), dtype=dt, device=dev)
                head = spec.concat_head.to(dev).to(dt)
                for i, s in enumerate(spec.fused_stages):
                    sl = self._stage_slices[s]
                    r[:, sl] = torch.matmul(f[sl].to(dt), head[i * d:(i + 1) * d]).transpose(0, 1)
                    mask[sl] = 1.0
                self._fused_mask = mask
                self._qr = torch.matmul(t_hat, r.transpose(1, 2)).reshape(n * c, k0).contiguous()
                self._gr = torch.matmul(r, r.transpose(1, 2)).reshape(n * k0, k0).contiguous()
                del r
            del proj, q, gram
        self.num_classes = c
        # Targets in the [N, C, G] layout the batched metrics use.
        self._y = torch.from_numpy(self.labels).to(dev)
        if self.dists is not None:
            p = torch.from_numpy(np.clip(self.dists, 0.0, None)).to(dev)
            self._p = p[:, :, None]
            pos = self._p > 0
            self._logp = torch.where(pos, torch.log(torch.where(pos, self._p, 1.0)), 0.0)
            self._p_norm = p.square().sum(1).sqrt()[:, None]   # as np.linalg.norm(axis=1)

    # -- σ → weights -------------------------------------------------------------------
    def _stage_weights(self, s: int, sigma: float) -> torch.Tensor:
        key = (s, float(sigma))
        w = self._weight_cache.get(key)
        if w is None:
            d = len(self.spec.stage_blocks[s])
            # Exactly model.current_nga_weights: σ as a float32 scalar.
            w = nga_weights(d, torch.tensor(float(sigma), dtype=torch.float32), self.spec.nga_mode)
            w = w.to(self.device).to(self.dtype)
            if len(self._weight_cache) > 100_000:
                self._weight_cache.clear()
            self._weight_cache[key] = w
        return w

    def sigma_matrix(self, sigmas: Any) -> torch.Tensor:
        """[G, S] σ configurations from one configuration (S values or a scalar) or a list of them."""
        s_n = self.spec.num_stages
        arr = np.asarray(_to_numpy(sigmas) if isinstance(sigmas, torch.Tensor) else sigmas, dtype=np.float64)
        if arr.ndim == 0:
            arr = np.full((1, s_n), float(arr))
        elif arr.ndim == 1:
            if arr.shape[0] != s_n:
                raise ValueError(f"sigma: expected {s_n} values (one per stage), got {arr.shape[0]}")
            arr = arr[None]
        if arr.ndim != 2 or arr.shape[1] != s_n:
            raise ValueError(f"sigma: expected [G, {s_n}] configurations, got shape {arr.shape}")
        if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
            raise ValueError("sigma: values must be finite and > 0")
        return torch.from_numpy(arr)

    def _weight_columns(self, sig: torch.Tensor) -> list[torch.Tensor]:
        """Per stage, the weights of the G configurations as columns: [d_s, G], or [d_s, 1]
        when the stage's σ is the same in every configuration (a held stage), which every
        later product then broadcasts instead of recomputing."""
        cols = []
        for s in range(self.spec.num_stages):
            values = sig[:, s].tolist()
            if len(set(values)) == 1:
                cols.append(self._stage_weights(s, values[0])[:, None])
            else:
                cols.append(torch.stack([self._stage_weights(s, v) for v in values], dim=1))
        return cols

    # -- logits --------------------------------------------------------------------------
    @torch.no_grad()
    def logits(self, sigmas: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Fused logits [G, N, C] and stage logits [G, S, N, C] for σ configurations [G, S]
        (a single configuration gives G = 1)."""
        sig = self.sigma_matrix(sigmas)
        fused, stages = [], []
        with torch_threads(self.num_threads):
            for start in range(0, sig.shape[0], self.chunk):
                fz, st = self._logits_chunk(sig[start:start + self.chunk])
                g = fz.shape[-1]
                fused.append(fz.permute(2, 0, 1))
                stages.append(torch.stack([x.expand(-1, -1, g) for x in st]).permute(3, 0, 1, 2))
        return torch.cat(fused), torch.cat(stages)

    def _logits_chunk(self, sig: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Fused logits [N, C, G] and per stage logits [N, C, G or 1] (configurations last)."""
        u = self._weight_columns(sig)                                           # [d_s, G | 1] per stage
        g, n, c, s_n, k = sig.shape[0], self.num_samples, self.num_classes, self.spec.num_stages, self.num_blocks
        sl = self._stage_slices
        # M[s][t] = e_s · e_t per sample (and configuration), [N, G | 1]; M[s][s] = ‖e_s‖².
        m: list[list[Any]] = [[None] * s_n for _ in range(s_n)]
        for t in range(s_n):
            y = torch.matmul(self._gcol[t], u[t]).view(n, k, u[t].shape[1])      # Σ_{j∈t} G[n,k,j] w_j
            for s in range(t, s_n):
                m[s][t] = (y[:, sl[s], :] * u[s]).sum(1)
                m[t][s] = m[s][t]
        inv = [1.0 / m[s][s].clamp_min(0).sqrt().clamp_min(_EPS) for s in range(s_n)]
        stage_logits = []
        fused_dot = torch.zeros((n, c, g), dtype=self.dtype, device=self.device)
        for s in range(s_n):
            cos = torch.matmul(self._q[s], u[s]).view(n, c, u[s].shape[1]) * inv[s][:, None, :]
            stage_logits.append(self.scale_t * cos)
            if self._lam[s] != 0.0:
                fused_dot += self._lam[s] * cos
        if self.concat:
            uf = torch.cat([x.expand(-1, g) for x in u], dim=0) * self._fused_mask[:, None]   # [K, G]
            fused_dot = torch.matmul(self._qr, uf).view(n, c, g)
            norm2 = (torch.matmul(self._gr, uf).view(n, k, g) * uf).sum(1)
        else:
            # ‖Σ_s a_s e_s‖² with a_s = λ_s / ‖e_s‖
            a = [self._lam[s] * inv[s] for s in range(s_n)]
            norm2 = torch.zeros((n, g), dtype=self.dtype, device=self.device)
            for s in range(s_n):
                if self._lam[s] == 0.0:
                    continue
                for t in range(s_n):
                    if self._lam[t] != 0.0:
                        norm2 += a[s] * a[t] * m[s][t]
        fused = self.scale_t * fused_dot / norm2.clamp_min(0).sqrt().clamp_min(_EPS)[:, None, :]
        return fused, stage_logits

    # -- metrics ---------------------------------------------------------------------------
    def _batched_metrics(self, logits: torch.Tensor) -> dict[str, np.ndarray]:
        """cascade.metrics' definitions, vectorised over configurations: logits [N, C, G] → {name: [G]}.

        Same conventions as :class:`cascade.metrics.EmotionMetrics` (argmax ties to the
        lowest index, macro-F1 over classes present in truth or prediction, UAR over
        classes with support, q = softmax(logits), KL with q clamped at eps, Clark and
        Canberra skipping p + q = 0 terms); the tests check equality with it.
        """
        n, c, g = logits.shape
        pred = _argmax_dim1(logits)                                             # [N, G], first max wins
        idx = torch.arange(g, device=logits.device)[None, :] * (c * c) + self._y[:, None] * c + pred
        cm = torch.bincount(idx.reshape(-1), minlength=g * c * c).reshape(g, c, c).cpu().numpy().astype(np.float64)
        tp = np.diagonal(cm, axis1=1, axis2=2)
        support, predicted = cm.sum(axis=2), cm.sum(axis=1)
        denom = support + predicted
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1), np.nan)
            recall = np.where(support > 0, tp / np.where(support > 0, support, 1), np.nan)
        out: dict[str, np.ndarray] = {
            "accuracy": tp.sum(axis=1) / cm.sum(axis=(1, 2)),
            "macro_f1": _nanmean_rows(f1),
            "uar": _nanmean_rows(recall),
        }
        if self.dists is None:
            for k in DISTRIBUTION_METRICS:
                out[k] = np.full(g, np.nan)
            return out
        eps = DEFAULT_EPS
        e = torch.exp(logits - logits.amax(dim=1, keepdim=True))
        q = e / e.sum(dim=1, keepdim=True)
        p = self._p
        # p = 0 terms: p·(log p − log q) is exactly 0 there (log p is stored as 0, log q is finite)
        kl = (p * (self._logp - torch.log(q.clamp_min(eps)))).sum(1)
        diff = p - q
        total = p + q
        adiff = diff.abs()
        if bool((total > 0).all()):              # the usual case: softmax q > 0 everywhere
            clark = (diff / total).square().sum(1).sqrt()
            canberra = (adiff / total).sum(1)
        else:
            nz = total > 0
            safe = torch.where(nz, total, 1.0)
            clark = torch.where(nz, diff.square() / safe.square(), 0.0).sum(1).sqrt()
            canberra = torch.where(nz, adiff / safe, 0.0).sum(1)
        per = {
            "kl": kl,
            "chebyshev": adiff.amax(dim=1),
            "clark": clark,
            "canberra": canberra,
            "cosine": (p * q).sum(1) / (self._p_norm * q.square().sum(1).sqrt()).clamp_min(eps),
            "intersection": torch.minimum(p, q).sum(1),
        }
        for k in DISTRIBUTION_METRICS:
            out[k] = per[k].mean(dim=0).cpu().numpy()
        return out

    def _rows(self, fused: torch.Tensor, stages: list[torch.Tensor]) -> list[dict[str, Any]]:
        g = fused.shape[-1]
        fm = self._batched_metrics(fused)
        names = list(CLASSIFICATION_METRICS) + list(DISTRIBUTION_METRICS)
        rows = [{k: float(fm[k][i]) for k in names} for i in range(g)]
        if self.stage_metrics is None:
            return rows
        for s, st in enumerate(stages):
            # a held stage has one column: its metrics are the same for every configuration
            if self.stage_metrics == "all":
                sm = self._batched_metrics(st)
                for i in range(g):
                    j = i if st.shape[-1] > 1 else 0
                    rows[i].update({f"stage{s + 1}.{k}": float(sm[k][j]) for k in names})
            else:
                acc = (_argmax_dim1(st) == self._y[:, None]).to(self.dtype).mean(dim=0).cpu().numpy()
                for i in range(g):
                    rows[i][f"stage{s + 1}.accuracy"] = float(acc[i if st.shape[-1] > 1 else 0])
        return rows

    def evaluate(self, sigmas: Any = None, *, details: bool = False) -> dict[str, Any]:
        """Metrics of the fused prediction (and per stage) at one σ configuration.

        ``sigmas``: one value per stage (1-based order), a scalar for all stages, or
        None for the model's learned σ. ``details`` adds the confusion matrix and
        per-class recall (from :func:`cascade.metrics.metrics_from_confusion`).
        """
        sig = self.sigma_matrix(self.spec.sigma if sigmas is None else sigmas)
        with torch.no_grad(), torch_threads(self.num_threads):
            fused, stages = self._logits_chunk(sig)
            row = self._rows(fused, stages)[0]
            if details:
                pred = _argmax_dim1(fused)[:, 0].cpu().numpy()
                cls = metrics_from_confusion(confusion_matrix(self.labels, pred, self.num_classes))
                row["confusion"] = cls["confusion"]
                row["per_class_recall"] = cls["per_class_recall"]
                row["per_class_f1"] = cls["per_class_f1"]
        row["sigma"] = [float(v) for v in sig[0]]
        return row

    def evaluate_many(self, sigmas: Any) -> list[dict[str, Any]]:
        """:meth:`evaluate` (without details) for each configuration of a [G, S] array."""
        sig = self.sigma_matrix(sigmas)
        rows = []
        with torch.no_grad(), torch_threads(self.num_threads):
            for start in range(0, sig.shape[0], self.chunk):
                part = sig[start:start + self.chunk]
                rows.extend(self._rows(*self._logits_chunk(part)))
        return rows

    def sweep(self, grid: Any, stage: int | None = None, base: Any = None) -> "pd.DataFrame":  # noqa: F821
        """Metrics for every σ in ``grid``.

        ``stage`` (1-based) varies that stage's σ with the others held at ``base``
        (default: the learned σ); ``None`` sets every stage to the same σ (joint).
        Columns: ``sigma``, ``stage`` ("joint" or the stage number), ``sigma_1..S``, metrics.
        """
        import pandas as pd

        values = parse_sigma_grid(grid) if isinstance(grid, str) else np.asarray(grid, dtype=np.float64).reshape(-1)
        s_n = self.spec.num_stages
        if stage is None:
            mat = np.repeat(values[:, None], s_n, axis=1)
            label: Any = "joint"
        else:
            if not 1 <= int(stage) <= s_n:
                raise ValueError(f"stage {stage} outside 1..{s_n} (stages are 1-based)")
            held = self.sigma_matrix(self.spec.sigma if base is None else base)[0].numpy()
            mat = np.repeat(held[None], len(values), axis=0)
            mat[:, int(stage) - 1] = values
            label = int(stage)
        rows = self.evaluate_many(mat)
        records = []
        for v, cfg, m in zip(values, mat, rows):
            rec: dict[str, Any] = {"sigma": float(v), "stage": label}
            rec.update({f"sigma_{s + 1}": float(cfg[s]) for s in range(s_n)})
            rec.update(m)
            records.append(rec)
        return pd.DataFrame.from_records(records)

    def sweep_all(self, grid: Any, base: Any = None, joint: bool = True) -> "pd.DataFrame":  # noqa: F821
        """Each stage varied in turn (others held), plus the joint sweep; one DataFrame."""
        import pandas as pd

        parts = [self.sweep(grid, stage=s, base=base) for s in range(1, self.spec.num_stages + 1)]
        if joint:
            parts.append(self.sweep(grid, stage=None))
        return pd.concat(parts, ignore_index=True)

    def best(self, df: "pd.DataFrame", metric: str = "accuracy") -> dict[str, Any]:  # noqa: F821
        """The row of ``df`` with the best ``metric`` (direction from :func:`cascade.metrics.higher_is_better`)."""
        i = df[metric].idxmax() if higher_is_better(metric) else df[metric].idxmin()
        return df.loc[i].to_dict()


# ---------------------------------------------------------------------------
# writing a checkpoint with chosen σ
# ---------------------------------------------------------------------------


TUNING_SPLITS = ("train", "val", "test")


def apply_sigma(run_or_checkpoint: str | os.PathLike, sigmas: Sequence[float] | float, out_path: str | os.PathLike,
                *, checkpoint: str = "best", tuned_on: str | None = None, allow_test: bool = False) -> Path:
    """Write a copy of a checkpoint with σ replaced; the original is never touched.

    ``run_or_checkpoint``: a run folder (its ``checkpoints/<checkpoint>.safetensors``) or
    a ``.safetensors`` checkpoint. σ is stored exactly as ``model.set_sigma`` stores it
    (log of the float32 value), so loading the new checkpoint equals ``set_sigma`` on the
    old one. No backbone is loaded. The JSON records the source, its hash and
    ``sigma_tuned_on``: the split σ was chosen on (None: not said). A σ chosen on ``test``
    is a model selected on test data: it is refused unless ``allow_test``.
    """
    if tuned_on is not None and tuned_on not in TUNING_SPLITS:
        raise ValueError(f"tuned_on: expected one of {TUNING_SPLITS} or None, got {tuned_on!r}")
    if tuned_on == "test" and not allow_test:
        raise ValueError("σ was chosen on the test split: a checkpoint saved with it is a model selected on test "
                         "data, and its test metrics would be optimistic. Tune on val, or confirm explicitly "
                         "(allow_test=True) to save it marked sigma_tuned_on: test")
    src = resolve_checkpoint(run_or_checkpoint, checkpoint)
    out = Path(out_path)
    if out.suffix != ".safetensors":
        raise ValueError(f"{out}: checkpoints are written as .safetensors")
    if out.exists() and out.resolve() == src.resolve():
        raise ValueError(f"{out}: refusing to overwrite the source checkpoint; choose another path")
    meta = read_meta(src)
    state = load_file(str(src))
    if "nga.log_sigma" not in state:
        raise ValueError(f"{src}: no nga.log_sigma tensor")
    n = state["nga.log_sigma"].numel()
    values = torch.as_tensor(sigmas, dtype=torch.float32).reshape(-1)
    if values.numel() == 1 and n > 1:
        values = values.expand(n).clone()
    if values.numel() != n:
        raise ValueError(f"sigma: expected {n} values (one per stage), got {values.numel()}")
    if not bool((values > 0).all()) or not bool(torch.isfinite(values).all()):
        raise ValueError(f"sigma: values must be finite and > 0, got {values.tolist()}")
    state["nga.log_sigma"] = values.log().to(state["nga.log_sigma"].dtype).reshape(state["nga.log_sigma"].shape)
    with safe_open(str(src), framework="pt") as fh:
        st_meta = fh.metadata() or {}
    meta = dict(meta)
    meta["sigma"] = [float(v) for v in state["nga.log_sigma"].exp()]
    extra = dict(meta.get("extra") or {})
    extra["sigma_applied"] = {"from": str(src), "from_sha256": file_sha256(src),
                              "sigma": [float(v) for v in values], "tuned_on": tuned_on,
                              "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    meta["extra"] = extra
    meta["sigma_tuned_on"] = tuned_on
    return write_checkpoint(out, state, meta, metadata=st_meta)


# ---------------------------------------------------------------------------
# benchmark
# ---------------------------------------------------------------------------


def random_head(stages: str = "1-4,5-8,9-11,12", width: int = 768, embed_dim: int = 512, num_classes: int = 6,
                seed: int = 0, sigma: float = 1.0) -> HeadSpec:
    """A HeadSpec with random heads and classifier (benchmarks and tests)."""
    gen = torch.Generator().manual_seed(seed)
    ranges = parse_stages(stages)
    blocks = [list(range(lo, hi + 1)) for lo, hi in ranges]
    s_n = len(blocks)
    proj = torch.randn(width, embed_dim, generator=gen) / math.sqrt(width)
    heads = [proj + 0.01 * torch.randn(width, embed_dim, generator=gen) for _ in range(s_n)]
    return HeadSpec(stage_blocks=blocks, heads=heads,
                    classifier=torch.randn(num_classes, embed_dim, generator=gen),
                    logit_scale=torch.tensor(100.0), fusion_weights=torch.softmax(torch.randn(s_n, generator=gen), 0),
                    fused_stages=list(range(s_n)), sigma=torch.full((s_n,), float(sigma)),
                    classnames=[f"class{i}" for i in range(num_classes)])


def benchmark_sweep(n: int = 2000, num_sigmas: int = 100, *, stages: str = "1-4,5-8,9-11,12", width: int = 768,
                    embed_dim: int = 512, num_classes: int = 6, seed: int = 0, repeats: int = 3,
                    device: str | torch.device = "cpu", joint: bool = False) -> dict[str, Any]:
    """Time a σ sweep from random features of ViT-B-32 size (defaults: b32-4stage, D=768, E=512).

    Times (seconds, best of ``repeats``): ``setup_seconds`` (the one-off projections),
    ``sweep_seconds`` (``num_sigmas`` σ for each stage in turn, the others held — with
    ``joint`` also the joint sweep — metrics included; ``sweep_cpu_seconds`` is the CPU
    time of the same, a load-independent figure on a shared machine), and ``evaluate_ms``
    (one σ configuration, what a dashboard slider move costs; median).
    """
    head = random_head(stages, width, embed_dim, num_classes, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    k = len(head.feature_blocks)
    feats = torch.empty(k, n, width)
    feats[0] = torch.randn(n, width, generator=gen)
    for i in range(1, k):
        feats[i] = 0.8 * feats[i - 1] + 0.6 * torch.randn(n, width, generator=gen)
    labels = torch.randint(0, num_classes, (n,), generator=gen)
    dists = torch.softmax(torch.randn(n, num_classes, generator=gen) + 3 * F.one_hot(labels, num_classes), -1)
    grid = np.geomspace(0.1, 10.0, num_sigmas)

    setup, sweeps, evals = [], [], []
    sweeper = None
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        sweeper = SigmaSweeper(feats, head, labels=labels, dists=dists, device=device)
        setup.append(time.perf_counter() - t0)
    assert sweeper is not None
    sweeper.evaluate([1.0] * head.num_stages)  # warm-up
    df = None
    cpu = []
    for _ in range(max(1, repeats)):
        sweeper._weight_cache.clear()
        t0, c0 = time.perf_counter(), time.process_time()
        df = sweeper.sweep_all(grid, joint=joint)
        sweeps.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    rng = np.random.default_rng(seed)
    for _ in range(max(5, repeats)):
        sig = rng.uniform(0.2, 5.0, head.num_stages)
        t0 = time.perf_counter()
        sweeper.evaluate(sig)
        evals.append(time.perf_counter() - t0)
    return {
        "setup_seconds": min(setup),
        "sweep_seconds": min(sweeps),
        "sweep_seconds_median": statistics.median(sweeps),
        "sweep_cpu_seconds": min(cpu),
        "evaluate_ms": 1000 * statistics.median(evals),
        "num_evaluations": int(len(df)),
        "n": n, "num_sigmas": num_sigmas, "stages": stages, "num_stages": head.num_stages,
        "width": width, "embed_dim": embed_dim, "num_classes": num_classes, "joint": joint,
        "device": str(device), "threads": torch.get_num_threads(), "torch_version": torch.__version__,
    }

"""Reading run folders (``runs/<name>/``) for the dashboard: safe names, summaries, tables.

Only YAML (``safe_load``), JSON and safetensors headers are read; nothing is unpickled.
Every path built from a user-supplied name goes through :func:`safe_run_dir`, which
refuses anything that would leave the runs folder.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..metrics import EVAL_METRICS, mean_std
from ..run_config import RunNameError, sanitize_run_name
from ..runfolder import (CONFIG, EVAL, MARKERS, METRICS, TRAINER_NAMES, checkpoint_names, checkpoint_path, read_json,
                         read_metrics, read_run_state, sigma_tuned_on)

SUMMARY_METRICS = EVAL_METRICS


def safe_run_dir(runs_dir: str | os.PathLike, name: str) -> Path:
    """``runs_dir/<sanitised name>``, guaranteed to be a direct child of ``runs_dir``."""
    clean = sanitize_run_name(name)
    root = Path(runs_dir).expanduser().resolve()
    path = (root / clean).resolve()
    if path.parent != root or clean in (".", ".."):
        raise RunNameError(f"{name!r} would leave the runs folder {root}")
    return path


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _num(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


@dataclass
class RunSummary:
    name: str
    path: Path
    method: str = "?"
    stages: str = ""
    preset: str | None = None
    backbone: str = "?"
    random_weights: bool | None = None
    data: str = "?"
    status: str = "unknown"         # a run state (cascade.runfolder.status) or "empty"
    state_label: str = ""           # e.g. "stopped at epoch 1, step 33/44"
    partial: bool = True            # metrics of anything but a finished run describe a partial run
    epochs_done: int = 0
    epochs_total: int | None = None
    best_epoch: int | None = None
    select_metric: str | None = None
    val: dict[str, float | None] = field(default_factory=dict)
    test: dict[str, float | None] = field(default_factory=dict)
    test_stages: list[dict[str, float | None]] = field(default_factory=list)
    classifier_init: str = "templates"     # stage 1 (config classifier.init); runs before it had templates
    stage1_test: float | None = None       # stage 1's test accuracy on frozen CLIP embeddings
    supervision: str = "labels"             # stage 2 (config train.supervision); runs before it had labels
    checkpoints: list[str] = field(default_factory=list)
    tuned_on_test: list[str] = field(default_factory=list)   # checkpoints whose σ was chosen on test
    modified: float = 0.0

    def checkpoint(self, which: str = "best") -> Path | None:
        p = checkpoint_path(self.path, which)
        return p if p.is_file() else None

    def row(self) -> dict[str, Any]:
        """One flat table row: the run, its metrics (fused test, fused val, per-stage test accuracy),
        its state ("status": finished, stopped at …, partial metrics), then what it is (method,
        stages, backbone, data, epochs)."""
        r: dict[str, Any] = {"run": self.name}
        for k in ("accuracy", "macro_f1", "uar", "kl"):
            r[f"test {k}"] = self.test.get(k)
        for k in ("accuracy", "macro_f1", "uar", "kl"):
            r[f"val {k}"] = self.val.get(k)
        for s, m in enumerate(self.test_stages):
            r[f"test stage{s + 1} accuracy"] = m.get("accuracy")
        r.update({
            "status": (self.state_label or self.status) + (" · partial metrics" if self.partial and self.status in
                                                           ("stopped", "failed", "killed") else ""),
            "flags": f"σ tuned on TEST: {', '.join(self.tuned_on_test)}" if self.tuned_on_test else "",
            "method": self.method, "stages": self.stages, "backbone": self.backbone, "data": self.data,
            "stage 1": self.classifier_init, "stage 1 test accuracy": self.stage1_test,
            "supervision": self.supervision,
            "epochs": f"{self.epochs_done}/{self.epochs_total}" if self.epochs_total is not None else str(self.epochs_done),
            "best epoch": self.best_epoch,
            "modified": time.strftime("%Y-%m-%d %H:%M", time.localtime(self.modified)) if self.modified else "",
        })
        return r


def _pick(metrics: dict[str, Any] | None) -> dict[str, float | None]:
    if not isinstance(metrics, dict):
        return {}
    return {k: _num(metrics.get(k)) for k in SUMMARY_METRICS if k in metrics}


def summarize_run(path: Path) -> RunSummary:
    path = Path(path)
    s = RunSummary(name=path.name, path=path)
    cfg = _read_yaml(path / CONFIG)
    if cfg:
        s.method = str(cfg.get("method", "?"))
        model = cfg.get("model") or {}
        s.stages = str(model.get("stages", ""))
        s.preset = model.get("preset")
        bb = cfg.get("backbone") or {}
        s.random_weights = bb.get("pretrained") in (None, "none", "")
        s.backbone = f"{bb.get('model_name', '?')}" + (" (random)" if s.random_weights else f" ({bb.get('pretrained')})")
        frozen_dtype = (cfg.get("train") or {}).get("frozen_dtype") or "fp32"
        if frozen_dtype != "fp32":
            s.backbone += f", {frozen_dtype} blocks"   # results differ slightly from float32 blocks
        data = cfg.get("data") or {}
        root = data.get("root")
        where = "one source per split" if isinstance(root, dict) else (Path(str(root)).name if root else "")
        s.data = str(data.get("format", "?")) + (f": {where}" if where else "")
        ep = (cfg.get("train") or {}).get("epochs") or {}
        try:
            s.epochs_total = int(ep.get("warmup", 0)) + int(ep.get("unfreeze", 0)) + int(ep.get("global", 0))
        except (TypeError, ValueError):
            s.epochs_total = None
        s.select_metric = (cfg.get("train") or {}).get("select_metric")
        s.supervision = str((cfg.get("train") or {}).get("supervision") or "labels")
        s.classifier_init = str((cfg.get("classifier") or {}).get("init") or "templates")
    records = read_metrics(path)
    evals = [r for r in records if r.get("kind") == "eval" and r.get("split", "val") == "val"]
    s.epochs_done = max((int(r.get("epoch") or 0) for r in evals), default=0)
    best = [r for r in evals if r.get("best")]
    if best:
        s.best_epoch = int(best[-1].get("epoch") or 0)
        s.val = _pick((best[-1].get("metrics") or {}).get("fused"))
    report = read_json(path / EVAL)
    state = read_run_state(path)
    s.status, s.state_label, s.partial = state.state, state.label(), state.partial
    if isinstance(report, dict):
        s.best_epoch = report.get("best_epoch", s.best_epoch)
        s.select_metric = report.get("select_metric", s.select_metric)
        val, test = report.get("val") or {}, report.get("test") or {}
        if val:
            s.val = _pick(val.get("fused"))
        if test:
            s.test = _pick(test.get("fused"))
            s.test_stages = [_pick(m) for m in test.get("stages") or []]
        if report.get("method"):
            s.method = str(report["method"])
        stage1 = report.get("stage1")
        if isinstance(stage1, dict):
            s.classifier_init = str(stage1.get("init") or s.classifier_init)
            s.stage1_test = _num((stage1.get("test") or {}).get("accuracy"))
        elif "stage1" in report or s.method == "linear-probe":
            s.classifier_init = "n/a (own head)"
    elif not cfg and not records:
        s.status = "empty"
    s.checkpoints = checkpoint_names(path)
    s.tuned_on_test = [n for n in s.checkpoints
                       if n not in TRAINER_NAMES and sigma_tuned_on(checkpoint_path(path, n)) == "test"]
    try:
        s.modified = max((p.stat().st_mtime for p in (path / METRICS, path / EVAL, path / CONFIG)
                          if p.exists()), default=path.stat().st_mtime)
    except OSError:
        s.modified = 0.0
    return s


def list_runs(runs_dir: str | os.PathLike) -> list[RunSummary]:
    """Run folders directly under ``runs_dir``, newest first (hidden folders skipped)."""
    root = Path(runs_dir).expanduser()
    if not root.is_dir():
        return []
    out = []
    for child in root.iterdir():
        if child.name.startswith(".") or not child.is_dir() or child.is_symlink():
            continue
        if not any((child / f).exists() for f in MARKERS):
            continue
        out.append(summarize_run(child))
    return sorted(out, key=lambda r: r.modified, reverse=True)


def runs_table(runs: list[RunSummary]) -> list[dict[str, Any]]:
    return [r.row() for r in runs]


def stage_table(run: RunSummary, split: str = "test") -> list[dict[str, Any]]:
    """Per-stage metrics of one run (from eval.json), fused last."""
    report = read_json(run.path / EVAL)
    if not isinstance(report, dict) or not isinstance(report.get(split), dict):
        return []
    rows = []
    for s, m in enumerate(report[split].get("stages") or []):
        rows.append({"run": run.name, "stage": f"stage {s + 1}", **_pick(m)})
    rows.append({"run": run.name, "stage": "fused", **_pick(report[split].get("fused"))})
    return rows


def checkpoint_choices(runs: list[RunSummary]) -> list[tuple[str, Path]]:
    """(label, path) for every run's best and last checkpoints (plus any others saved)."""
    out = []
    for r in runs:
        names = sorted(r.checkpoints, key=lambda n: (n != "best", n != "last", n))
        for n in names:
            p = checkpoint_path(r.path, n)
            if p.is_file():
                out.append((f"{r.name} · {n}" + (" (σ tuned on TEST)" if n in r.tuned_on_test else ""), p))
    return out


# ---- ablations (``cascade ablate`` output: <runs_dir>/ablate-*/results.{json,csv}, runs/) ----------
@dataclass
class AblationSummary:
    name: str
    path: Path
    rows: list[dict[str, Any]]
    runs: list[RunSummary]
    select_metric: str | None = None
    random_weights: bool | None = None


def _csv_rows(path: Path) -> list[dict[str, Any]]:
    import csv

    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error):
        return []
    out = []
    for r in rows:
        out.append({k: (_num(v) if k not in ("method", "run_dir", "random_weights") and _num(v) is not None else v)
                    for k, v in r.items()})
    return out


def read_ablation(path: Path) -> AblationSummary | None:
    path = Path(path)
    payload = read_json(path / "results.json")
    rows: list[dict[str, Any]] = []
    select = random = None
    if isinstance(payload, dict) and isinstance(payload.get("rows"), list):
        rows = [r for r in payload["rows"] if isinstance(r, dict)]
        select, random = payload.get("select_metric"), payload.get("random_weights")
    elif (path / "results.csv").is_file():
        rows = _csv_rows(path / "results.csv")
    runs = list_runs(path / "runs")
    if not rows and not runs:
        return None
    return AblationSummary(name=path.name, path=path, rows=rows, runs=runs, select_metric=select,
                           random_weights=random)


def list_ablations(runs_dir: str | os.PathLike) -> list[AblationSummary]:
    """Ablation folders directly under ``runs_dir`` (``results.json``/``results.csv`` or a ``runs/`` folder)."""
    root = Path(runs_dir).expanduser()
    if not root.is_dir():
        return []
    out = []
    for child in sorted(root.iterdir(), reverse=True):
        if child.name.startswith(".") or not child.is_dir() or child.is_symlink():
            continue
        if not ((child / "results.json").is_file() or (child / "results.csv").is_file()):
            continue
        summary = read_ablation(child)
        if summary is not None:
            out.append(summary)
    return out


def ablation_table(ab: AblationSummary, metrics: tuple[str, ...] = SUMMARY_METRICS) -> list[dict[str, Any]]:
    """Mean and sample std per method over seeds (test split, val-selected checkpoint)."""
    methods: dict[str, list[dict[str, Any]]] = {}
    for r in ab.rows:
        methods.setdefault(str(r.get("method")), []).append(r)
    out = []
    for method, rows in methods.items():
        row: dict[str, Any] = {"method": method, "seeds": len(rows)}
        for m in metrics:
            row[m], row[f"{m} std"] = mean_std(r.get(m) for r in rows)
        out.append(row)
    return out

"""Reading run folders (``runs/<name>/``) for the dashboard: safe names, summaries, tables.

Only YAML (``safe_load``), JSON and safetensors headers are read; nothing is unpickled.
Every path built from a user-supplied name goes through :func:`safe_run_dir`, which
refuses anything that would leave the runs folder.
"""
from __future__ import annotations

import csv
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..metrics import EVAL_METRICS, mean_std
from ..run_config import RunNameError, sanitize_run_name
from ..runfolder import (CONFIG, EVAL, MARKERS, METRICS, TRAINER_NAMES, RunState, checkpoint_names, checkpoint_path,
                         read_json, read_metrics, read_run_state, sigma_tuned_on)

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
    run_state: RunState = field(default_factory=RunState)
    test_checkpoint: str | None = None  # what eval.json's test metrics are of: "best" or "last"

    @property
    def partial_tag(self) -> str:
        """How a picker or table names a run that did not finish, e.g. ``stopped at epoch 1: partial``
        (empty for a finished run)."""
        if not self.partial:
            return ""
        if self.status == "empty":
            return "empty folder"
        st, epoch = self.run_state, self.run_state.epoch
        where = {"stopped": "stopped", "failed": "failed", "killed": "killed", "running": "running"}.get(st.state)
        if where is None:
            return "state unknown: partial"
        return f"{where}{f' at epoch {epoch}' if epoch else ''}: partial"

    @property
    def display_name(self) -> str:
        """The run's name, with its partial tag when it did not finish."""
        return f"{self.name} ({self.partial_tag})" if self.partial_tag else self.name

    @property
    def test_selection(self) -> str:
        """Which checkpoint the test metrics are of, and how it was chosen."""
        if not self.test:
            return "no test metrics"
        if self.test_checkpoint == "last":
            return "the model as it stopped (no epoch ended: none selected on val)"
        where = f"epoch {self.best_epoch}" if self.best_epoch else "best"
        return f"{where}, selected on val" + (f" {self.select_metric}" if self.select_metric else "") + \
            (f" among the epochs done ({self.partial_tag})" if self.partial else "")

    def checkpoint(self, which: str = "best") -> Path | None:
        p = checkpoint_path(self.path, which)
        return p if p.is_file() else None

    def row(self) -> dict[str, Any]:
        """One flat table row: the run, its state ("status": finished, stopped at …, partial
        metrics), data and backbone, then its metrics (fused test, fused val, per-stage test
        accuracy) and which checkpoint they are of, then the rest (method, stages, epochs)."""
        r: dict[str, Any] = {
            "run": self.name,
            "status": (self.state_label or self.status) + (" · partial metrics" if self.partial and self.status in
                                                           ("stopped", "failed", "killed") else ""),
            "data": self.data, "backbone": self.backbone,
        }
        for k in ("accuracy", "macro_f1", "uar", "kl"):
            r[f"test {k}"] = self.test.get(k)
        for k in ("accuracy", "macro_f1", "uar", "kl"):
            r[f"val {k}"] = self.val.get(k)
        for s, m in enumerate(self.test_stages):
            r[f"test stage{s + 1} accuracy"] = m.get("accuracy")
        r.update({
            "test checkpoint": self.test_selection,
            "flags": f"σ tuned on TEST: {', '.join(self.tuned_on_test)}" if self.tuned_on_test else "",
            "method": self.method, "stages": self.stages,
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
    s.status, s.state_label, s.partial, s.run_state = state.state, state.label(), state.partial, state
    if isinstance(report, dict):
        s.test_checkpoint = report.get("checkpoint")
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
    """Run folders directly under ``runs_dir``, newest first (hidden folders skipped).

    Pickers that choose one run by default take :func:`finished_first` of this list.
    """
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


def finished_first(runs: list[RunSummary]) -> list[RunSummary]:
    """Finished runs before partial ones (each group keeps its order), so a picker's default,
    its first option, is never a stopped run while a finished one exists."""
    return [r for r in runs if not r.partial] + [r for r in runs if r.partial]


def runs_table(runs: list[RunSummary]) -> list[dict[str, Any]]:
    return [r.row() for r in runs]


PAPER_RUN_METRICS = ("accuracy", "macro_f1", "uar", "kl")


def paper_runs_table(runs: list[RunSummary]) -> tuple[list[dict[str, Any]], list[str]]:
    """The runs table as a paper prints it: run, method, the fused test metrics, best epoch,
    plus backbone and data only where they differ between runs (else one note says them).

    Returns rows and notes; pair the rows with ``[r.partial for r in runs]`` so partial runs are
    marked and never set in bold.
    """
    varying = [k for k in ("backbone", "data") if len({getattr(r, k) for r in runs}) > 1]
    rows = []
    for r in runs:
        row: dict[str, Any] = {"run": r.name, "method": r.method}
        row.update({k: getattr(r, k) for k in varying})
        row.update({f"test {m}": r.test.get(m) for m in PAPER_RUN_METRICS})
        row["best epoch"] = r.best_epoch
        rows.append(row)
    notes = ["Fused test metrics of the checkpoint selected on val (best epoch); n/a: a distribution metric on "
             "data with labels only."]
    same = [f"{k} {getattr(runs[0], k)}" for k in ("backbone", "data") if k not in varying and runs]
    if same:
        notes.append("All runs: " + "; ".join(same) + ".")
    return rows, notes


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
    """(label, path) for every run's best and last checkpoints (plus any others saved).

    Finished runs come first, so the first choice (a picker's default) is a finished run's
    best checkpoint whenever one exists; a partial run's labels say so
    (``run · last — stopped at epoch 1: partial``).
    """
    out = []
    for r in finished_first(runs):
        names = sorted(r.checkpoints, key=lambda n: (n != "best", n != "last", n))
        for n in names:
            p = checkpoint_path(r.path, n)
            if p.is_file():
                out.append((f"{r.name} · {n}" + (" (σ tuned on TEST)" if n in r.tuned_on_test else "")
                            + (f" — {r.partial_tag}" if r.partial_tag else ""), p))
    return out


def describe_checkpoint(path: str | os.PathLike) -> str:
    """How a checkpoint of a run folder was selected, in words, for the caption beside what it shows."""
    path = Path(path)
    run = summarize_run(path.parent.parent)
    name = path.stem
    tuned = sigma_tuned_on(path)
    partial = f" — {run.partial_tag}" if run.partial_tag else ""
    if tuned:
        return f"`{run.name}` · {name}: a copy with σ tuned on the {tuned} split{partial}"
    if name == "best":
        metric = f" {run.select_metric}" if run.select_metric else ""
        epoch = f"epoch {run.best_epoch}" if run.best_epoch else "the best epoch"
        return f"`{run.name}` · best: the checkpoint of {epoch}, selected on the val split by{metric or ' its metric'}" \
               + (f" among the epochs done{partial}" if partial else "")
    if name == "last":
        return f"`{run.name}` · last: the model as training " + \
            ("ended (final epoch; not selected on val)" if not run.partial else f"left it{partial}")
    if name.startswith("epoch-"):
        return f"`{run.name}` · {name}: saved at the end of epoch {name.removeprefix('epoch-')}{partial}"
    return f"`{run.name}` · {name}{partial}"


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

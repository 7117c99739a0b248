"""Training progress from a run folder's ``metrics.jsonl`` (what the Train page draws)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..train.runstate import RunState, read_run_state
from .runs import read_json, read_metrics


@dataclass
class Progress:
    started: bool = False
    done: bool = False
    total_steps: int = 0
    steps_per_epoch: int = 0
    global_step: int = 0
    epoch: int = 0                    # 1-based epoch of the latest record
    phase: str | None = None
    phase_stages: list[int] = field(default_factory=list)
    loss: list[dict[str, Any]] = field(default_factory=list)       # rows: step, term, value
    val: list[dict[str, Any]] = field(default_factory=list)        # rows: epoch, metric, value, stage
    test: dict[str, Any] | None = None
    best_epoch: int | None = None
    images_per_s: float | None = None
    random_weights: bool | None = None
    sizes: dict[str, int] = field(default_factory=dict)
    state: RunState = field(default_factory=RunState)

    @property
    def partial(self) -> bool:
        return self.state.partial

    @property
    def fraction(self) -> float:
        """Share of the planned steps taken: a stopped run shows where it stopped, not 100 %."""
        if self.state.state == "finished":
            return 1.0
        if self.total_steps <= 0:
            return 0.0
        return max(0.0, min(1.0, self.global_step / self.total_steps))

    def describe(self) -> str:
        if self.state.state == "finished":
            return f"finished — best epoch {self.best_epoch}" if self.best_epoch else "finished"
        if self.done:
            best = (f"; best checkpoint from epoch {self.best_epoch}" if self.best_epoch
                    else "; no epoch ended, so no checkpoint was selected on val")
            return f"{self.state.label()} — its metrics are partial{best}"
        if not self.started:
            return "starting (loading data and backbone)…"
        stages = ",".join(str(s) for s in self.phase_stages)
        speed = f", {self.images_per_s:.1f} img/s" if self.images_per_s else ""
        return (f"phase **{self.phase or '?'}** (stages {stages or '?'}), epoch {self.epoch}, "
                f"step {self.global_step}/{self.total_steps}{speed}")


VAL_METRICS = ("accuracy", "macro_f1", "uar", "kl")


def read_progress(run_dir: str | Path) -> Progress:
    run_dir = Path(run_dir)
    p = Progress()
    for rec in read_metrics(run_dir / "metrics.jsonl"):
        kind = rec.get("kind")
        if kind == "start":
            p.started = True
            p.total_steps = int(rec.get("total_steps") or 0)
            p.steps_per_epoch = int(rec.get("steps_per_epoch") or 0)
            p.random_weights = rec.get("random_weights")
            p.sizes = rec.get("sizes") or {}
        elif kind == "phase":
            p.phase = rec.get("phase")
            p.phase_stages = list(rec.get("stages") or [])
            p.epoch = int(rec.get("epoch") or p.epoch)
        elif kind == "step":
            p.global_step = int(rec.get("global_step") or p.global_step)
            p.epoch = int(rec.get("epoch") or p.epoch)
            p.phase = rec.get("phase", p.phase)
            p.images_per_s = rec.get("images_per_s")
            for term, value in (rec.get("loss") or {}).items():
                if isinstance(value, (int, float)):
                    p.loss.append({"step": p.global_step, "term": term, "value": float(value)})
        elif kind == "eval":
            epoch = int(rec.get("epoch") or 0)
            metrics = rec.get("metrics") or {}
            fused = metrics.get("fused") or {}
            for m in VAL_METRICS:
                if isinstance(fused.get(m), (int, float)):
                    p.val.append({"epoch": epoch, "metric": m, "value": float(fused[m]), "stage": "fused"})
            for s, sm in enumerate(metrics.get("stages") or []):
                if isinstance(sm.get("accuracy"), (int, float)):
                    p.val.append({"epoch": epoch, "metric": "accuracy", "value": float(sm["accuracy"]),
                                  "stage": f"stage {s + 1}"})
            if rec.get("best"):
                p.best_epoch = epoch
        elif kind == "test":
            p.test = rec.get("metrics")
            p.best_epoch = rec.get("best_epoch", p.best_epoch)
    p.state = read_run_state(run_dir)
    p.done = p.state.state in ("finished", "stopped", "failed", "killed")
    if p.state.global_step is not None:
        p.global_step = max(p.global_step, int(p.state.global_step))
    report = read_json(run_dir / "eval.json")
    if isinstance(report, dict):
        p.best_epoch = report.get("best_epoch", p.best_epoch)
        p.test = report.get("test") or p.test
    return p

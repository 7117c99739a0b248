"""Training progress from a run folder's ``metrics.jsonl`` and ``state.json``: curves, phase,
speed and time left (what the dashboard's Train page draws and the run report summarises).

Keys added by newer trainers (``sigma`` and ``fusion`` per stage on step and eval
records) are read when present; older run folders simply lack those curves.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .folder import EVAL, read_json, read_metrics
from .status import RunState, read_run_state


@dataclass
class RunProgress:
    started: bool = False
    done: bool = False
    total_steps: int = 0
    steps_per_epoch: int = 0
    global_step: int = 0
    epoch: int = 0                    # 1-based epoch of the latest record
    phase: str | None = None
    phase_stages: list[int] = field(default_factory=list)
    loss: list[dict[str, Any]] = field(default_factory=list)       # rows: step, term, value
    val: list[dict[str, Any]] = field(default_factory=list)        # rows: epoch, step, metric, value, stage
    lr: list[dict[str, Any]] = field(default_factory=list)         # rows: step, group, value
    sigma: list[dict[str, Any]] = field(default_factory=list)      # rows: step, stage (1-based), value
    fusion: list[dict[str, Any]] = field(default_factory=list)     # rows: step, stage (1-based), value (λ)
    phases: list[dict[str, Any]] = field(default_factory=list)     # rows: epoch, step, phase, stages
    activity: str = "starting"          # starting | training | validating | testing | done
    smoothed_images_per_s: float | None = None
    eta_seconds: float | None = None
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
        if self.activity == "testing":
            return "testing the checkpoint selected on val…"
        stages = ",".join(str(s) for s in self.phase_stages)
        doing = f"validating epoch {self.epoch}… · " if self.activity == "validating" else ""
        speed = f", {self.smoothed_images_per_s:.1f} img/s" if self.smoothed_images_per_s else ""
        eta = f", about {format_duration(self.eta_seconds)} left" if self.eta_seconds is not None else ""
        return (f"{doing}phase **{self.phase or '?'}** (stages {stages or '?'}), epoch {self.epoch}, "
                f"step {self.global_step}/{self.total_steps}{speed}{eta}")


VAL_METRICS = ("accuracy", "macro_f1", "uar", "kl")
SMOOTHING = 0.3          # weight of the newest img/s reading in the moving average
ETA_WINDOW = 50          # step records the ETA's rate is measured over


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes, sec = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _numbers(values: Any) -> list[float | None]:
    if not isinstance(values, (list, tuple)):
        return []
    return [float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None for v in values]


def _eta(p: "RunProgress", clock: list[tuple[int, float]]) -> float | None:
    """Seconds left at the recent rate (wall time per step, validations included)."""
    recent = clock[-ETA_WINDOW:]
    if p.done or len(recent) < 2 or p.total_steps <= 0:
        return None
    (s0, t0), (s1, t1) = recent[0], recent[-1]
    if s1 <= s0 or t1 <= t0:
        return None
    return max(0.0, (p.total_steps - p.global_step) * (t1 - t0) / (s1 - s0))


def read_progress(run_dir: str | Path) -> RunProgress:
    run_dir = Path(run_dir)
    p = RunProgress()
    clock: list[tuple[int, float]] = []
    last_kind, last_step_in_epoch = None, 0
    for rec in read_metrics(run_dir):
        kind = rec.get("kind")
        if kind in ("step", "eval", "test", "start"):
            last_kind = kind
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
            p.phases.append({"epoch": p.epoch, "step": int(rec.get("global_step") or 0), "phase": p.phase,
                             "stages": list(p.phase_stages)})
        elif kind == "step":
            p.global_step = int(rec.get("global_step") or p.global_step)
            p.epoch = int(rec.get("epoch") or p.epoch)
            p.phase = rec.get("phase", p.phase)
            last_step_in_epoch = int(rec.get("step") or 0)
            ips = rec.get("images_per_s")
            p.images_per_s = ips
            if isinstance(ips, (int, float)) and ips > 0:
                prev = p.smoothed_images_per_s
                p.smoothed_images_per_s = float(ips) if prev is None else SMOOTHING * ips + (1 - SMOOTHING) * prev
            if isinstance(rec.get("time"), (int, float)):
                clock.append((p.global_step, float(rec["time"])))
            for term, value in (rec.get("loss") or {}).items():
                if isinstance(value, (int, float)):
                    p.loss.append({"step": p.global_step, "term": term, "value": float(value)})
            for group, value in (rec.get("lr") or {}).items():
                if isinstance(value, (int, float)):
                    p.lr.append({"step": p.global_step, "group": group, "value": float(value)})
            _stage_rows(p.sigma, p.global_step, rec.get("sigma"))
            _stage_rows(p.fusion, p.global_step, rec.get("fusion"))
        elif kind == "eval":
            epoch = int(rec.get("epoch") or 0)
            step = int(rec.get("global_step") or 0)
            metrics = rec.get("metrics") or {}
            fused = metrics.get("fused") or {}
            for m in VAL_METRICS:
                if isinstance(fused.get(m), (int, float)):
                    p.val.append({"epoch": epoch, "step": step, "metric": m, "value": float(fused[m]),
                                  "stage": "fused"})
            for s, sm in enumerate(metrics.get("stages") or []):
                if isinstance(sm.get("accuracy"), (int, float)):
                    p.val.append({"epoch": epoch, "step": step, "metric": "accuracy", "value": float(sm["accuracy"]),
                                  "stage": f"stage {s + 1}"})
            if not any(r["step"] == step for r in p.sigma):   # zero-epoch runs: σ and λ only here
                _stage_rows(p.sigma, step, rec.get("sigma"))
                _stage_rows(p.fusion, step, rec.get("fusion"))
            if rec.get("best"):
                p.best_epoch = epoch
        elif kind == "test":
            p.test = rec.get("metrics")
            p.best_epoch = rec.get("best_epoch", p.best_epoch)
    p.state = read_run_state(run_dir)
    p.done = p.state.state in ("finished", "stopped", "failed", "killed")
    if p.state.global_step is not None:
        p.global_step = max(p.global_step, int(p.state.global_step))
    report = read_json(run_dir / EVAL)
    if isinstance(report, dict):
        p.best_epoch = report.get("best_epoch", p.best_epoch)
        p.test = report.get("test") or p.test
    p.activity = _activity(p, last_kind, last_step_in_epoch)
    p.eta_seconds = _eta(p, clock)
    return p


def _stage_rows(rows: list[dict[str, Any]], step: int, values: Any) -> None:
    for k, v in enumerate(_numbers(values), start=1):
        if v is not None:
            rows.append({"step": step, "stage": k, "value": v})


def _activity(p: RunProgress, last_kind: str | None, last_step_in_epoch: int) -> str:
    """What the trainer is doing now, from the last record it wrote."""
    if p.done:
        return "done"
    if not p.started:
        return "starting"
    finished_all = p.total_steps > 0 and p.global_step >= p.total_steps
    if last_kind == "step" and p.steps_per_epoch and last_step_in_epoch >= p.steps_per_epoch:
        return "validating"       # an epoch's last step is logged, its evaluation is not yet
    if last_kind == "eval" and finished_all:
        return "testing"
    return "training"


@dataclass
class AblationProgress:
    total: int
    finished: list[str]
    current: str | None = None
    current_progress: RunProgress | None = None

    @property
    def fraction(self) -> float:
        if self.total <= 0:
            return 0.0
        part = self.current_progress.fraction if self.current_progress is not None else 0.0
        return max(0.0, min(1.0, (len(self.finished) + part) / self.total))

    def describe(self) -> str:
        text = f"{len(self.finished)}/{self.total} runs finished"
        if self.current and self.current_progress is not None:
            text += f"; now `{self.current}`: {self.current_progress.describe()}"
        return text


def read_ablation_progress(out_dir: str | Path, methods: list[str], seeds: int) -> AblationProgress:
    """How far an ablation (``cascade ablate`` / the Compare page) got: finished runs and the current one."""
    runs = Path(out_dir) / "runs"
    planned = [f"{m}-seed" for m in methods]
    names = sorted((p.name for p in runs.iterdir() if p.is_dir()), key=lambda n: (runs / n).stat().st_mtime) \
        if runs.is_dir() else []
    names = [n for n in names if any(n.startswith(prefix) for prefix in planned)]
    finished = [n for n in names if (runs / n / EVAL).is_file()]
    current = next((n for n in reversed(names) if n not in finished), None)
    return AblationProgress(total=len(methods) * int(seeds), finished=finished, current=current,
                            current_progress=read_progress(runs / current) if current else None)

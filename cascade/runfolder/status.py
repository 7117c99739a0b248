"""What a run folder's results are: ``state.json`` records whether the run is running,
finished, stopped (at which epoch and step), failed (why) or was killed.

The trainer writes the file at the start, at every logged step, while it evaluates (a
heartbeat thread), and at the end. A reader turns a ``running`` state whose process is gone,
or whose heartbeat is older than :data:`STALE_AFTER_S`, into ``killed``: nothing could
write the end of such a run. Every state but ``finished`` means the metrics are *partial*.

Folders written before ``state.json`` existed are read from what they hold: an
``eval.json`` means finished, a ``metrics.jsonl`` alone means unknown.
"""
from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from ..fileio import write_json
from .folder import EVAL, STATE, read_json

STATES = ("running", "finished", "stopped", "failed", "killed", "unknown")
HEARTBEAT_S = 30.0
# A live trainer refreshes its heartbeat every HEARTBEAT_S; ten missed beats mean it is gone.
STALE_AFTER_S = 10 * HEARTBEAT_S
# What every result of a run (its eval.json, a later evaluation, predictions) says about itself
RANDOM_WEIGHTS_NOTE = "RANDOM backbone weights (pretrained: none): numbers say nothing about CLIP"
PARTIAL_NOTE = "partial run: training did not reach its last epoch, so these metrics describe a partial run"


@dataclass
class RunState:
    state: str = "unknown"
    reason: str | None = None          # why it stopped or failed
    epoch: int | None = None           # 1-based epoch in progress (or the last one, when finished)
    step: int | None = None            # steps done in that epoch
    steps_per_epoch: int | None = None
    global_step: int | None = None
    total_steps: int | None = None
    pid: int | None = None
    host: str | None = None
    started: float | None = None
    heartbeat: float | None = None
    ended: float | None = None

    @property
    def partial(self) -> bool:
        """True unless the run trained to its end: its metrics describe a partial run."""
        return self.state != "finished"

    @property
    def fraction(self) -> float | None:
        """Share of the planned optimiser steps taken."""
        if not self.total_steps:
            return 1.0 if self.state == "finished" else None
        return max(0.0, min(1.0, (self.global_step or 0) / self.total_steps))

    def where(self) -> str:
        if self.epoch is None:
            return ""
        step = f", step {self.step}/{self.steps_per_epoch}" if self.step is not None and self.steps_per_epoch else ""
        total = f" (global step {self.global_step}/{self.total_steps})" if self.total_steps else ""
        return f"epoch {self.epoch}{step}{total}"

    def label(self) -> str:
        """Short text for tables and logs, e.g. ``stopped at epoch 1, step 33/44``."""
        at = self.where()
        if self.state == "finished":
            return "finished"
        if self.state == "running":
            return f"running ({at})" if at else "running"
        if self.state == "stopped":
            return f"stopped at {at}" if at else "stopped"
        if self.state == "failed":
            return f"failed{' at ' + at if at else ''}: {self.reason or 'unknown error'}"
        if self.state == "killed":
            return f"killed{' at ' + at if at else ''} ({self.reason})"
        return "unknown (written before run states were recorded)"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["partial"] = self.partial
        out["label"] = self.label()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunState":
        known = {f.name for f in fields(cls)}
        state = cls(**{k: v for k, v in data.items() if k in known})
        if state.state not in STATES:
            state.state = "unknown"
        return state


def result_warnings(state: RunState, random_weights: bool) -> list[str]:
    """The warnings a result of the run carries: random backbone weights, a partial run (and where it stopped)."""
    warnings = [RANDOM_WEIGHTS_NOTE] if random_weights else []
    if state.partial:
        warnings.append(f"{PARTIAL_NOTE} ({state.label()})")
    return warnings


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_run_state(run_dir: str | os.PathLike, now: float | None = None) -> RunState:
    """The state of the run in ``run_dir`` (``killed`` when a running trainer is gone)."""
    run_dir = Path(run_dir)
    data = read_json(run_dir / STATE)
    if not isinstance(data, dict):
        if (run_dir / EVAL).is_file():
            return RunState(state="finished")
        return RunState(state="unknown")
    state = RunState.from_dict(data)
    if state.state == "running":
        now = time.time() if now is None else now
        if state.host == socket.gethostname() and state.pid and not _pid_alive(state.pid):
            state.state, state.reason = "killed", f"process {state.pid} ended without finishing"
        elif state.heartbeat is not None and now - state.heartbeat > STALE_AFTER_S:
            state.state = "killed"
            state.reason = f"no heartbeat for {(now - state.heartbeat) / 60:.0f} min"
    return state


class StateWriter:
    """Keeps ``state.json`` of one run current (rank 0 only; other ranks pass ``enabled=False``).

    A daemon thread refreshes the heartbeat every :data:`HEARTBEAT_S` seconds, so a long
    evaluation or a slow first compile is not mistaken for a dead process.
    """

    def __init__(self, run_dir: str | os.PathLike, enabled: bool = True, heartbeat_s: float = HEARTBEAT_S):
        self.path = Path(run_dir) / STATE
        self.enabled = enabled
        self.heartbeat_s = heartbeat_s
        self.state = RunState(state="running", pid=os.getpid(), host=socket.gethostname(), started=time.time())
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _write(self) -> None:
        self.state.heartbeat = time.time()
        write_json(self.path, self.state.to_dict())

    def update(self, **changes: Any) -> None:
        if not self.enabled:
            return
        with self._lock:
            for k, v in changes.items():
                setattr(self.state, k, v)
            self._write()

    def start(self, **changes: Any) -> None:
        """Mark the run running (a resumed run too) and start the heartbeat."""
        if not self.enabled:
            return
        self.update(state="running", reason=None, ended=None, **changes)
        if self._thread is None:
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._beat, name="cascade-heartbeat", daemon=True)
            self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                with self._lock:
                    if self.state.state == "running":
                        self._write()
            except OSError:
                pass  # a full disk must not kill training; the next beat tries again

    def closing(self, state: str, reason: str | None = None, **changes: Any) -> RunState:
        """Stop the heartbeat and set the final state in memory (for a report written
        before :meth:`flush` records it)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        with self._lock:
            for k, v in {"state": state, "reason": reason, "ended": time.time(), **changes}.items():
                setattr(self.state, k, v)
        return self.state

    def flush(self) -> None:
        if not self.enabled:
            return
        with self._lock:
            self._write()

    def end(self, state: str, reason: str | None = None, **changes: Any) -> None:
        """Record the final state and stop the heartbeat."""
        self.closing(state, reason, **changes)
        self.flush()

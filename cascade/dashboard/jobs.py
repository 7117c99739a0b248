"""A process-wide registry of background training jobs, keyed by run name.

The dashboard keeps one :class:`JobRegistry` per server process (``st.cache_resource``),
so reloading or leaving a page neither stops nor duplicates a run, and two browser
sessions that start two runs get two jobs that share nothing but the registry.
Each job is a separate process (:mod:`cascade.dashboard.worker`) that writes only its
run folder; the pages follow it by reading ``metrics.jsonl`` there.
"""
from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..runfolder import CONFIG, TRAIN_LOG
from .runs import safe_run_dir

JobState = Literal["running", "stopping", "finished", "stopped", "failed"]
ABLATION_LOG = "ablate.log"     # not train.log: an ablation folder is not a run folder
# How the dashboard names a job's state.
STATE_LABELS = {"running": "running", "stopping": "stopping…", "finished": "finished", "stopped": "stopped",
                "failed": "FAILED"}


def log_name(kind: str) -> str:
    """The log file of a job of ``kind`` in its folder."""
    return ABLATION_LOG if kind == "ablation" else TRAIN_LOG


class JobError(ValueError):
    """A job cannot be started (name taken, folder exists, bad config)."""


@dataclass
class Job:
    name: str
    run_dir: Path
    process: subprocess.Popen
    started: float = field(default_factory=time.time)
    owner: str | None = None            # an opaque session id, for display only
    stop_requested: float | None = None
    ended: float | None = None
    kind: str = "train"                 # "train" (one run) or "ablation" (methods × seeds into run_dir)
    plan: dict | None = None            # an ablation's methods and seeds

    @property
    def log_path(self) -> Path:
        return self.run_dir / log_name(self.kind)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    @property
    def state(self) -> JobState:
        rc = self.process.poll()
        if rc is None:
            return "stopping" if self.stop_requested else "running"
        if self.ended is None:
            self.ended = time.time()
        if rc == 0:
            return "finished"
        from .worker import EXIT_STOPPED
        if rc == EXIT_STOPPED or (self.stop_requested and rc in (-signal.SIGTERM, -signal.SIGKILL, 130)):
            return "stopped"
        return "failed"

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                fh.seek(max(0, size - 64 * 1024))
                text = fh.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class JobRegistry:
    """Start, list and stop training jobs; thread-safe, one per dashboard process."""

    def __init__(self, python: str | None = None):
        self.python = python or sys.executable
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        _REGISTRIES.add(self)

    # ---- queries ------------------------------------------------------------------------
    def get(self, name: str) -> Job | None:
        with self._lock:
            return self._jobs.get(name)

    def jobs(self) -> list[Job]:
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: j.started)

    def active(self) -> list[Job]:
        return [j for j in self.jobs() if j.alive]

    # ---- control ------------------------------------------------------------------------
    def start(self, run_config, runs_dir: str | os.PathLike, name: str, owner: str | None = None) -> Job:
        """Start training ``run_config`` into ``runs_dir/name`` in a worker process.

        Refuses a name that is running or whose folder already holds a run, so a repeated
        click, a reload or a second session can never start the same run twice.
        """
        run_dir = safe_run_dir(runs_dir, name)
        cfg = run_config.model_copy(deep=True)
        cfg.run.name = run_dir.name
        cfg.run.runs_dir = str(run_dir.parent)
        return self._spawn(run_dir, cfg.to_yaml(), [], owner, "train", None,
                           taken=(CONFIG, TRAIN_LOG))

    def start_ablation(self, base_config, runs_dir: str | os.PathLike, name: str, methods: list[str], seeds: int,
                       owner: str | None = None) -> Job:
        """Start ``cascade ablate`` of ``base_config`` (methods × seeds) into ``runs_dir/name``."""
        import json

        from ..train.ablate import parse_methods

        methods = parse_methods(methods)
        if int(seeds) < 1:
            raise JobError("seeds: at least one")
        run_dir = safe_run_dir(runs_dir, name)
        plan = {"methods": methods, "seeds": int(seeds)}
        payload = json.dumps({"config": base_config.to_yaml(), **plan})
        return self._spawn(run_dir, payload, ["--ablate"], owner, "ablation", plan,
                           taken=("results.json", ABLATION_LOG, CONFIG))

    def _spawn(self, run_dir: Path, stdin_text: str, flags: list[str], owner: str | None, kind: str,
               plan: dict | None, taken: tuple[str, ...]) -> Job:
        name = run_dir.name
        with self._lock:
            existing = self._jobs.get(name)
            if existing is not None and existing.alive:
                raise JobError(f"{name!r} is already running (pid {existing.pid})")
            if any((run_dir / t).exists() for t in taken):
                raise JobError(f"{run_dir} already exists; choose another name")
            run_dir.mkdir(parents=True, exist_ok=True)
            env = dict(os.environ)
            env["CASCADE_DASHBOARD_PID"] = str(os.getpid())
            env.setdefault("TQDM_DISABLE", "1")
            env["PYTHONUNBUFFERED"] = "1"
            root = str(Path(__file__).resolve().parents[2])
            env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
            log = open(run_dir / log_name(kind), "ab")
            try:
                proc = subprocess.Popen(
                    [self.python, "-m", "cascade.dashboard.worker", *flags, str(run_dir)],
                    stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=os.getcwd(),
                    close_fds=True,
                )
            finally:
                log.close()
            try:
                assert proc.stdin is not None
                proc.stdin.write(stdin_text.encode("utf-8"))
                proc.stdin.close()
            except OSError:
                pass  # the worker died at once; its log says why
            job = Job(name=name, run_dir=run_dir, process=proc, owner=owner, kind=kind, plan=plan)
            self._jobs[name] = job
        return job

    def stop(self, name: str, force: bool = False) -> bool:
        """Ask a job to stop (SIGTERM: clean stop after the current step); ``force`` kills it."""
        job = self.get(name)
        if job is None or not job.alive:
            return False
        job.stop_requested = job.stop_requested or time.time()
        try:
            if force:
                job.process.kill()
            else:
                job.process.terminate()
        except OSError:
            return False
        return True

    def wait(self, name: str, timeout: float | None = None) -> JobState | None:
        job = self.get(name)
        if job is None:
            return None
        try:
            job.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        return job.state

    def shutdown(self, grace: float = 5.0) -> None:
        """Stop every running job (used at interpreter exit so no worker outlives its server)."""
        jobs = self.active()
        for job in jobs:
            self.stop(job.name)
        deadline = time.time() + grace
        for job in jobs:
            try:
                job.process.wait(max(0.0, deadline - time.time()))
            except subprocess.TimeoutExpired:
                job.process.kill()


_REGISTRIES: "weakref.WeakSet[JobRegistry]" = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for registry in list(_REGISTRIES):
        registry.shutdown(grace=3.0)

"""The training worker the dashboard starts: ``python -m cascade.dashboard.worker RUN_DIR``,
or ``python -m cascade.dashboard.worker --ablate OUT_DIR`` for an ablation.

It reads the run config (YAML) from stdin, calls the trainer's library entry point
(:func:`cascade.train.train`) with ``run_dir=RUN_DIR`` and writes nothing but the run
folder. With ``--ablate`` stdin holds JSON ``{"config": YAML, "methods": [...], "seeds": n}``
and :func:`cascade.train.ablate.run_ablation` writes ``OUT_DIR`` as ``cascade ablate`` does. A separate process keeps each run isolated from the dashboard and from other
runs, and is easy to stop:

- SIGTERM (the dashboard's *Stop*) ends training cleanly at the next step — the
  trainer writes ``checkpoints/last``, evaluates the best checkpoint and ``eval.json``;
- the worker also stops when the dashboard process that started it is gone.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import sys
import traceback
from pathlib import Path

import yaml

from ..run_config import RunConfig, validate_run_config
from ..train import train
from ..train.ablate import AblationStopped, run_ablation

EXIT_STOPPED = 3


class StopWhenAsked:
    """Trainer callback: stop after the current step on SIGTERM or when the parent dies."""

    def __init__(self, parent_pid: int):
        self.parent_pid = parent_pid
        self.requested = False
        self.reason = ""

    def request(self, reason: str) -> None:
        self.requested = True
        self.reason = self.reason or reason

    def _check(self, state) -> None:
        if self.parent_pid > 1 and os.getppid() != self.parent_pid:
            self.request("the dashboard that started this run has exited")
        if self.requested:
            state.should_stop = True
            state.stop_reason = self.reason

    on_train_start = _check
    on_step_end = _check
    on_epoch_end = _check


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ablate = bool(argv) and argv[0] == "--ablate"
    if ablate:
        argv = argv[1:]
    if len(argv) != 1:
        print("usage: python -m cascade.dashboard.worker [--ablate] DIR  (run config YAML, or ablation JSON, on "
              "stdin)", file=sys.stderr)
        return 2
    run_dir = Path(argv[0])
    os.environ.setdefault("TQDM_DISABLE", "1")
    logging.getLogger().setLevel(logging.ERROR)  # open_clip warns on every random init
    stopper = StopWhenAsked(int(os.environ.get("CASCADE_DASHBOARD_PID", "0") or 0))

    def on_term(signum, frame):  # noqa: ARG001 - signal handler signature
        stopper.request("stopped from the dashboard")

    signal.signal(signal.SIGTERM, on_term)
    text = sys.stdin.read()
    try:
        if ablate:
            job = json.loads(text)
            cfg: RunConfig = validate_run_config(yaml.safe_load(job["config"]) or {})
            print(f"worker pid {os.getpid()}: ablation of {', '.join(job['methods'])} × {job['seeds']} seed(s) "
                  f"into {run_dir}", flush=True)
            run_ablation(cfg, job["methods"], int(job["seeds"]), run_dir, quiet=True, callbacks=[stopper],
                         stop_requested=lambda: stopper.requested)
        else:
            cfg = validate_run_config(yaml.safe_load(text) or {})
            print(f"worker pid {os.getpid()}: training into {run_dir}", flush=True)
            train(cfg, callbacks=[stopper], run_dir=run_dir)
    except BaseException as exc:  # noqa: BLE001 - everything goes to the log, then a non-zero exit
        if stopper.requested and isinstance(exc, AblationStopped):
            print(f"STOPPED: {stopper.reason} ({exc})", flush=True)
            return EXIT_STOPPED
        if isinstance(exc, KeyboardInterrupt):
            print("interrupted", file=sys.stderr, flush=True)
            return 130
        traceback.print_exc()
        print(f"TRAINING FAILED: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1
    if stopper.requested:
        print(f"STOPPED: {stopper.reason}", flush=True)
        return EXIT_STOPPED
    print("DONE", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

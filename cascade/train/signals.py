"""Stopping on a scheduler's signal without losing work.

A cluster's scheduler sends SIGTERM before it kills a job (at its time limit, or to
preempt it), and many can send SIGUSR1 some minutes earlier on request; ``torchrun``
forwards both to every rank, and ``kill`` sends SIGTERM. While a run trains, the handlers
installed here only note the signal. The trainer then finishes the optimiser step it is
taking, writes ``checkpoints/last`` with its resume state, records ``state: stopped`` with
the reason ``signal SIGTERM`` (or ``signal SIGUSR1``) and returns without evaluating on
test, so it is done well within a scheduler's grace period. ``cascade train`` then exits
with :data:`EXIT_STOPPED`, and ``cascade train --resume RUN_DIR`` continues from that step
to the metrics an uninterrupted run reaches.

Under ``torchrun`` the ranks may see the signal at slightly different moments, so every
rank adds its flag to one all-reduce per step and all of them stop after the same step.
"""
from __future__ import annotations

import signal
import threading
from typing import Any

# sysexits' EX_TEMPFAIL: "a temporary failure; the user is invited to retry" (here: --resume).
EXIT_STOPPED = 75
STOP_SIGNALS = ("SIGTERM", "SIGUSR1")


class StopSignals:
    """Notes SIGTERM / SIGUSR1 while active (a context manager); restores the old handlers after.

    A signal whose handler someone else already installed (an embedding program that
    stops the trainer its own way, such as the dashboard's worker) is left to that handler.
    Handlers can only be installed from the main thread; elsewhere this notes nothing.
    """

    def __init__(self, names: tuple[str, ...] = STOP_SIGNALS):
        self.names = tuple(n for n in names if hasattr(signal, n))
        self.received: str | None = None      # the first stop signal this process got
        self.stopped = False                  # the trainer stopped because of a signal (on any rank)
        self._previous: dict[int, Any] = {}

    def _note(self, signum: int, frame) -> None:  # noqa: ARG002 - signal handler signature
        if self.received is None:
            self.received = signal.Signals(signum).name

    def request(self, name: str) -> None:
        """Act as if signal ``name`` had arrived (for programs that relay a stop request)."""
        if self.received is None:
            self.received = name

    @property
    def reason(self) -> str | None:
        return f"signal {self.received}" if self.received else None

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is not threading.main_thread():
            return self
        for name in self.names:
            signum = getattr(signal, name)
            if signal.getsignal(signum) in (signal.SIG_DFL, None):
                self._previous[signum] = signal.signal(signum, self._note)
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

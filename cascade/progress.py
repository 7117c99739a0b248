"""Progress of long loops: a tqdm bar on a terminal, plain lines in a log.

Off a terminal (``cascade train > log``, batch jobs, CI) a bar's carriage returns would fill
the log, so instead one line is printed each time another 10 % of the loop is done (with
the latest values given to ``set_postfix``), or none at all for loops that print their own
summary. ``metrics.jsonl`` stays the record of a run; these lines are for people.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from tqdm.auto import tqdm


def interactive(stream: TextIO | None = None) -> bool:
    """True on a terminal, or in a Jupyter kernel (where tqdm draws a widget)."""
    stream = stream if stream is not None else sys.stderr
    try:
        if stream.isatty():
            return True
    except (AttributeError, ValueError):
        return False
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    """``update``/``set_postfix``/``close`` as tqdm has them; see the module for the modes.

    ``plain``: print plain lines off a terminal (every ``every`` of ``total``), else stay
    silent there. ``enabled=False`` prints nothing anywhere (``--quiet``, ranks other than 0).
    """

    def __init__(self, total: int, desc: str, *, enabled: bool = True, initial: int = 0, unit: str = "it",
                 plain: bool = True, every: float = 0.1, stream: TextIO | None = None):
        self.total, self.desc, self.unit, self.n = int(total), desc, unit, int(initial)
        self.stream = stream if stream is not None else sys.stderr
        self.postfix: dict[str, Any] = {}
        self._bar = None
        self._lines = False
        if not enabled or self.total <= 0:
            return
        if interactive(self.stream):
            self._bar = tqdm(total=self.total, initial=self.n, desc=desc, unit=unit, leave=False,
                             dynamic_ncols=True, file=self.stream)
        elif plain:
            self._lines = True
            self._start, self._start_n = time.perf_counter(), self.n
            self._parts = max(1, round(1 / every))
            self._next = self._threshold_after(self.n)

    @property
    def mode(self) -> str:
        return "bar" if self._bar is not None else ("lines" if self._lines else "off")

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
        elif self._lines and (self.n >= self._next or self.n >= self.total):
            self._print()
            self._next = self._threshold_after(self.n)

    def _threshold_after(self, n: int) -> int:
        """The first step count past ``n`` that completes another part (ceil(total·k/parts))."""
        # k = floor(n·parts/total) + 1 is the first part with total·k/parts > n
        k = n * self._parts // self.total + 1
        return -(-self.total * k // self._parts)

    def set_postfix(self, **values: Any) -> None:
        self.postfix = values
        if self._bar is not None:
            self._bar.set_postfix(**values)

    def _print(self) -> None:
        elapsed = time.perf_counter() - self._start
        done = self.n - self._start_n
        line = f"{self.desc}: {100 * self.n / self.total:3.0f}% ({self.n}/{self.total} {self.unit}) {_clock(elapsed)}"
        if 0 < done and self.n < self.total:
            line += f" <{_clock(elapsed / done * (self.total - self.n))}"
        if self.postfix:
            line += "  " + " ".join(f"{k}={v}" for k, v in self.postfix.items())
        print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self._lines = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def track(iterable: Iterable[Any], total: int, desc: str, **kwargs: Any) -> Iterator[Any]:
    """Iterate ``iterable`` with a :class:`Progress` of ``total`` steps (closed at the end)."""
    with Progress(total, desc, **kwargs) as bar:
        for item in iterable:
            yield item
            bar.update(1)

"""Side-by-side timing: every contender runs in the same process, interleaved.

Machines shared with other jobs drift: a figure measured first and another measured a
minute later are not comparable. :func:`compare` therefore warms every contender up,
then runs round after round in which each contender runs once (the order rotates
every round), and reports medians. Ratios are formed from medians of the same rounds.
Process CPU time is recorded too: under contention from other processes it is a
steadier measure of work than wall time (but counts spin-waiting threads).
"""
from __future__ import annotations

import ctypes
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import torch


@dataclass
class Timing:
    name: str
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    items: int = 1          # images per call, for images/s

    @property
    def median(self) -> float:
        return statistics.median(self.wall)

    @property
    def best(self) -> float:
        return min(self.wall)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu)

    @property
    def spread(self) -> float:
        """(max - min) / median of the wall times: how noisy this figure was."""
        return (max(self.wall) - min(self.wall)) / self.median if self.median > 0 else 0.0

    @property
    def per_second(self) -> float:
        return self.items / self.median

    def to_dict(self) -> dict:
        return {
            "seconds_median": self.median,
            "seconds_min": self.best,
            "cpu_seconds_median": self.cpu_median,
            "items_per_call": self.items,
            "items_per_second": self.per_second,
            "repeats": len(self.wall),
            "spread": self.spread,
        }


def synchronizer(device: torch.device | str) -> Callable[[], None]:
    dev = torch.device(device)
    if dev.type == "cuda":
        return lambda: torch.cuda.synchronize(dev)
    return lambda: None


def compare(fns: dict[str, Callable[[], object]], *, items: dict[str, int] | int = 1, warmup: int = 1,
            repeats: int = 3, sync: Callable[[], None] = lambda: None,
            inner: int = 1) -> dict[str, Timing]:
    """Time every function in ``fns`` in interleaved rounds; ``inner`` calls per sample."""
    names = list(fns)
    timings = {n: Timing(n, items=(items if isinstance(items, int) else items.get(n, 1)) * inner) for n in names}
    for _ in range(max(0, warmup)):
        for n in names:
            fns[n]()
        sync()
    for r in range(max(1, repeats)):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            sync()
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(inner):
                fns[n]()
            sync()
            timings[n].wall.append(time.perf_counter() - t0)
            timings[n].cpu.append(time.process_time() - c0)
    return timings


def ratio(t: dict[str, Timing], num: str, den: str) -> float:
    """Time ratio of two contenders from their medians (> 1: ``num`` is slower)."""
    return t[num].median / t[den].median


# ---- memory ----------------------------------------------------------------------
def _status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_mb() -> float | None:
    kb = _status_kb("VmRSS")
    return None if kb is None else kb / 1024


def peak_rss_mb() -> float | None:
    kb = _status_kb("VmHWM")
    return None if kb is None else kb / 1024


def reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark (Linux ``clear_refs`` 5); False if not allowed."""
    release_free_memory()
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def release_free_memory() -> None:
    """Give memory freed by tensors back to the OS so the next peak is this figure's own."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def measure_peak(fn: Callable[[], object], device: torch.device | str) -> dict:
    """Peak memory of one call of ``fn``: CPU RSS (above the RSS before the call), CUDA max allocated."""
    dev = torch.device(device)
    out: dict = {}
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        fn()
        torch.cuda.synchronize(dev)
        peak = torch.cuda.max_memory_allocated(dev)
        out.update(cuda_peak_allocated_mb=peak / 2**20, cuda_peak_above_start_mb=(peak - base) / 2**20)
    else:
        ok = reset_peak_rss()
        before = rss_mb()
        fn()
        peak = peak_rss_mb()
        if ok and peak is not None and before is not None:
            out.update(cpu_peak_rss_mb=peak, cpu_peak_above_start_mb=max(0.0, peak - before))
        else:
            out.update(cpu_peak_rss_mb=peak, cpu_peak_above_start_mb=None,
                       note="could not reset the RSS high-water mark: peak is the process's since start")
    return out

"""The run folder ``runs/<name>/``: the names of the files in it, their paths, the
metrics log, and tolerant readers for its JSON and JSON-lines files.

The trainer writes every file atomically (``metrics.jsonl`` is appended to and fsynced
record by record), so a reader may meet a folder mid-run: :func:`read_json` and
:func:`read_jsonl` return what can be read and skip a half-written last line.
"""
from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import versions
from ..fileio import atomic_write_text, to_json
from ..run_config import RunConfig, sanitize_run_name

CONFIG = "config.yaml"
SPLITS = "splits.json"
DATA_REPORT = "data_report.json"
METRICS = "metrics.jsonl"
EVAL = "eval.json"
ENV = "env.json"
STATE = "state.json"
DRIFT = "drift.jsonl"
TRAIN_LOG = "train.log"
CHECKPOINTS = "checkpoints"
FEATURES = "features"
# Files any run folder holds from its first seconds on (what tells a run folder from another folder).
MARKERS = (CONFIG, METRICS, EVAL, TRAIN_LOG)


class RunFolderError(ValueError):
    """A run folder is missing, incomplete, or would be overwritten."""


def predictions_path(run_dir: str | os.PathLike, split: str) -> Path:
    """``<run>/predictions-<split>.csv``: per-item predictions of one split."""
    return Path(run_dir) / f"predictions-{split}.csv"


def read_json(path: str | os.PathLike, *, strict: bool = False) -> Any:
    """The JSON value in ``path``; None when the file is missing, unreadable or not JSON
    (a file being written), unless ``strict``: then a :class:`RunFolderError` naming the file."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        if strict:
            raise RunFolderError(f"{path}: cannot read it as JSON ({exc})") from None
        return None


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines file: blank lines, lines that are not JSON objects
    and a half-written last line are skipped; a missing file is empty."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return []
    out = []
    for line in data.decode("utf-8", "replace").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def read_metrics(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a run's ``metrics.jsonl`` (see :func:`read_jsonl`)."""
    return read_jsonl(Path(run_dir) / METRICS)


class MetricsLog:
    """``metrics.jsonl``: one JSON object per line, flushed and fsynced after every write.

    Sinks (objects with ``write(record)`` and ``close()``, e.g. the TensorBoard writer)
    receive every record written after they were added.
    """

    def __init__(self, path: str | os.PathLike, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled
        self.sinks: list[Any] = []
        self.lines = 0
        if enabled and self.path.is_file():
            self.lines = sum(1 for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip())

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(to_json(record, indent=None) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.lines += 1
        for sink in self.sinks:
            sink.write(record)

    def add_sink(self, sink: Any) -> None:
        self.sinks.append(sink)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
        self.sinks = []

    def truncate(self, keep_lines: int) -> None:
        """Keep the first ``keep_lines`` records (what a resumed checkpoint had seen)."""
        if not self.enabled or not self.path.is_file():
            return
        lines = [line for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]
        atomic_write_text(self.path, "".join(line + "\n" for line in lines[:keep_lines]))
        self.lines = min(keep_lines, len(lines))

    def records(self) -> list[dict[str, Any]]:
        return read_jsonl(self.path)


def git_commit(start: str | os.PathLike | None = None) -> str | None:
    where = Path(start) if start else Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    if out.returncode != 0 or not commit:
        return None
    try:
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        dirty = ""
    return commit + ("-dirty" if dirty else "")


def environment(device: torch.device, amp: str, world_size: int) -> dict[str, Any]:
    env: dict[str, Any] = {
        "versions": versions(),
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "amp": amp,
        "world_size": world_size,
        "torch_threads": torch.get_num_threads(),
        "git_commit": git_commit(),
    }
    for pkg in ("numpy", "torchvision", "safetensors", "pydantic", "scikit-learn", "pillow"):
        try:
            env["versions"][pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return env


class RunFolder:
    """Paths of one run folder (nothing is created until :meth:`create`)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @classmethod
    def for_config(cls, cfg: RunConfig, run_dir: str | os.PathLike | None = None) -> "RunFolder":
        if run_dir is not None:
            return cls(run_dir)
        if cfg.run.name:
            return cls(Path(cfg.run.runs_dir) / sanitize_run_name(cfg.run.name))
        # a default (time-based) name never collides with an earlier run: -2, -3, ... if needed
        base = Path(cfg.run.runs_dir) / cfg.default_run_name()
        path, n = base, 1
        while (path / CONFIG).exists():
            n += 1
            path = base.with_name(f"{base.name}-{n}")
        return cls(path)

    def __truediv__(self, other: str) -> Path:
        return self.path / other

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    def checkpoint(self, which: str) -> Path:
        return self.checkpoints / f"{which}.safetensors"

    @property
    def train_state(self) -> Path:
        return self.checkpoints / "last.train.safetensors"

    def create(self) -> None:
        if self.config.exists():
            raise RunFolderError(f"{self.path} already holds a run; resume it with --resume {self.path} "
                                 "or choose another run.name / --run-dir")
        self.path.mkdir(parents=True, exist_ok=True)
        self.checkpoints.mkdir(exist_ok=True)

    def require(self) -> None:
        if not self.config.is_file():
            raise RunFolderError(f"{self.path} is not a run folder (no {CONFIG})")

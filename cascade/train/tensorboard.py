"""TensorBoard event files in the run folder, mirroring ``metrics.jsonl``.

:class:`TensorBoardSink` receives every record the trainer (and its callbacks, such as
the drift monitor) writes to the metrics log and turns the numbers into scalars, so
``tensorboard --logdir runs`` shows every run side by side:

========================  ===================================================
tag                       from
========================  ===================================================
``loss/<term>``           step records (total, ce, kl, consistency, ...)
``lr/<group>``            step records (prompts, nga, fusion, heads, ...)
``sigma/stage<k>``        step and eval records' ``sigma`` (NGA σ per stage)
``fusion/stage<k>``       step and eval records' ``fusion`` (λ per stage)
``throughput/images_per_s`` step records
``val/<metric>``          val eval records (fused), ``val/stage<k>_accuracy``
``test/<metric>``         the test record of the val-selected checkpoint
``drift/stage<k>``        drift records (1 − CKA vs frozen CLIP), also
                          ``drift_relative/stage<k>`` and ``drift_block/block<b>``
========================  ===================================================

The x axis is the global optimiser step. Missing, null or non-finite values are
skipped (e.g. distribution metrics of label-only data). A resumed run purges the
events after the step it resumes from, as the metrics log is truncated there.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter

__all__ = ["TensorBoardSink", "scalars_of"]


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def _per_stage(prefix: str, values: Any) -> dict[str, float]:
    if not isinstance(values, (list, tuple)):
        return {}
    out = {}
    for k, v in enumerate(values, start=1):
        f = _finite(v)
        if f is not None:
            out[f"{prefix}/stage{k}"] = f
    return out


def _named(prefix: str, values: Any) -> dict[str, float]:
    if not isinstance(values, dict):
        return {}
    out = {}
    for name, v in values.items():
        f = _finite(v)
        if f is not None:
            out[f"{prefix}/{name}"] = f
    return out


def scalars_of(record: dict[str, Any]) -> dict[str, float]:
    """The TensorBoard scalars (tag → value) of one metrics.jsonl record."""
    kind = record.get("kind")
    out: dict[str, float] = {}
    if kind == "step":
        out.update(_named("loss", record.get("loss")))
        out.update(_named("lr", record.get("lr")))
        ips = _finite(record.get("images_per_s"))
        if ips is not None:
            out["throughput/images_per_s"] = ips
        wait = _finite(record.get("data_wait"))
        if wait is not None:
            out["throughput/data_wait"] = wait
    if kind in ("step", "eval"):
        out.update(_per_stage("sigma", record.get("sigma")))
        out.update(_per_stage("fusion", record.get("fusion")))
    if kind in ("eval", "test"):
        split = "test" if kind == "test" else str(record.get("split") or "val")
        metrics = record.get("metrics") or {}
        out.update(_named(split, {k: v for k, v in (metrics.get("fused") or {}).items()}))
        for k, stage in enumerate(metrics.get("stages") or [], start=1):
            if isinstance(stage, dict):
                acc = _finite(stage.get("accuracy"))
                if acc is not None:
                    out[f"{split}/stage{k}_accuracy"] = acc
    if kind == "drift":
        out.update(_per_stage("drift", record.get("stage_drift")))
        out.update(_per_stage("drift_relative", record.get("stage_drift_relative")))
        for b, v in zip(record.get("blocks") or [], record.get("block_drift") or []):
            f = _finite(v)
            if f is not None:
                out[f"drift_block/block{b}"] = f
    return out


class TensorBoardSink:
    """Writes the scalars of metrics-log records as TensorBoard events in ``run_dir``.

    The writer opens on the first record (an event file per trainer process start);
    it is flushed after every evaluation, test and drift record, and on :meth:`close`.
    """

    FLUSH_KINDS = ("eval", "test", "drift", "phase")

    def __init__(self, run_dir: str | os.PathLike, purge_step: int | None = None):
        self.run_dir = Path(run_dir)
        self.purge_step = purge_step
        self._writer = None

    def _open(self):
        if self._writer is None:
            self._writer = SummaryWriter(log_dir=str(self.run_dir), purge_step=self.purge_step, flush_secs=30)
        return self._writer

    def write(self, record: dict[str, Any]) -> None:
        scalars = scalars_of(record)
        kind = record.get("kind")
        step = record.get("global_step")
        step = int(step) if isinstance(step, (int, float)) and not isinstance(step, bool) else 0
        if not scalars and kind != "phase":
            return
        writer = self._open()
        for tag, value in scalars.items():
            writer.add_scalar(tag, value, global_step=step)
        if kind == "phase":
            stages = ", ".join(str(s) for s in record.get("stages") or [])
            writer.add_text("phase", f"epoch {record.get('epoch')}: {record.get('phase')} (stages {stages})",
                            global_step=step)
        if kind in self.FLUSH_KINDS:
            writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

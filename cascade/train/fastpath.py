"""``train.frozen_dtype: auto`` and ``train.compile: auto``: the GPU's fast path by default,
where it pays.

- frozen dtype: bf16 on CUDA GPUs that compute in bf16, fp32 elsewhere (CPUs, older GPUs).
  The run folder's ``config.yaml`` records the resolved dtype, so ``cascade eval`` and
  ``predict`` load the model the way it was trained and selected.
- compile: eager on CPUs. On CUDA, ``torch.compile(mode="reduce-overhead")`` per graph:
  every phase, and every stage that joins, changes which parameters need gradients and
  costs a new compilation (about :data:`COMPILE_SECONDS` on an H200). A graph is compiled
  when its full-size steps save more than that, estimated from the step's FLOPs, the GPU's
  peak and the eager/compiled MFU measured on an H200 (see the constants). Short runs, such
  as most dashboard runs, stay eager. The plan and its estimate go to the log and to the
  ``start`` record of ``metrics.jsonl``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ..devices import device_kind, resolve_frozen_dtype
from ..flops import peak_tflops
from ..methods import METHODS

# Measured on an H200 (random ViT-B/32, b32-4stage with 16 tokens, batch 256, frozen
# backbone in bf16; cascade bench --device cuda --compile reduce-overhead, issue 12).
COMPILE_SECONDS = 24.0          # first step of a phase with torch.compile reduce-overhead
EAGER_MFU = 0.181               # eager training step
COMPILED_MFU = 0.336            # compiled training step
# Below this an eager step is bound by kernel launches, not FLOPs (about 700 launches per
# step at roughly 6 µs each; the CUDA bench prints the launch count); CUDA graphs remove it.
EAGER_LAUNCH_SECONDS = 0.004
# GPUs missing from cascade.flops.PEAK_BF16_TFLOPS are assumed this fast: a high
# guess, so the saving is underestimated and auto compiles only when clearly worth it.
ASSUMED_PEAK_TFLOPS = 989.4
COMPILE_MODE = "reduce-overhead"


def resolve_run_frozen_dtype(cfg) -> str:
    """The frozen dtype a :class:`RunConfig` trains with on this machine (the trainer's rule:
    the linear probe keeps float32 weights; ``train.device: auto`` is CUDA when available)."""
    tc = cfg.train
    if tc.frozen_dtype != "auto":
        return tc.frozen_dtype
    if METHODS[cfg.method].linear_probe:
        return "fp32"
    if tc.supervision == "pseudo" and tc.pseudo.train_layernorms:
        return "fp32"      # the visual LayerNorms train, in float32
    return resolve_frozen_dtype("auto", device_kind(tc.device))


@dataclass
class GraphSteps:
    """One compiled graph's share of the run: the trainable set and its full-size steps."""

    trainable: frozenset[str]
    phases: list[str]
    steps: int


@dataclass
class CompilePlan:
    setting: str
    modes: dict[frozenset[str], str] = field(default_factory=dict)
    default: str = "none"
    estimate: dict[str, Any] = field(default_factory=dict)
    disabled: str | None = None

    def mode_for(self, trainable: frozenset[str]) -> str:
        if self.disabled:
            return "none"
        return self.modes.get(trainable, self.default)

    @property
    def compiles(self) -> bool:
        return not self.disabled and (self.default != "none" or any(m != "none" for m in self.modes.values()))

    def disable(self, reason: str) -> None:
        self.disabled = reason

    def summary(self) -> str:
        if self.setting != "auto":
            return f"torch.compile: {self.setting} (train.compile)"
        est = self.estimate
        if "graphs" not in est:
            return f"torch.compile: auto -> none ({est.get('reason', '')})"
        parts = []
        for g in est["graphs"]:
            verdict = "compiled" if g["compile"] else "eager"
            parts.append(f"{'+'.join(g['phases'])}: {g['steps']} steps x {g['saving_ms_per_step']:.2f} ms "
                         f"= {g['saving_seconds']:.1f}s saved vs {est['compile_seconds']:.0f}s to compile -> {verdict}")
        return (f"torch.compile: auto ({COMPILE_MODE} where it pays; eager step ~{est['eager_ms_per_step']:.2f} ms, "
                f"compiled ~{est['compiled_ms_per_step']:.2f} ms, estimated): " + "; ".join(parts))

    def record(self) -> dict[str, Any]:
        modes = sorted({m for m in self.modes.values()} | {self.default})
        return {"setting": self.setting, "modes": modes, "estimate": self.estimate}


def step_seconds(flops_per_step: float, peak_tflops: float) -> tuple[float, float]:
    """Estimated (eager, compiled) seconds of one training step."""
    peak = peak_tflops * 1e12
    eager = max(flops_per_step / (peak * EAGER_MFU), EAGER_LAUNCH_SECONDS)
    return eager, flops_per_step / (peak * COMPILED_MFU)


def plan_compile(setting: str, *, device: torch.device, graphs: list[GraphSteps], flops_per_step: float | None,
                 device_name: str = "", backend: str = "inductor") -> CompilePlan:
    """What ``train.compile`` means for this run, graph by graph."""
    if setting != "auto":
        return CompilePlan(setting, default=setting)
    if device.type != "cuda":
        return CompilePlan(setting, estimate={"reason": f"eager on {device.type}"})
    if backend != "inductor":
        return CompilePlan(setting, estimate={"reason": f"compile_backend {backend!r}: auto compiles with inductor "
                                                        "only; set train.compile to a mode to use it"})
    if not graphs or not flops_per_step:
        return CompilePlan(setting, estimate={"reason": "no training steps"})

    peak, source = peak_tflops(device_name)
    if peak is None:
        peak, source = ASSUMED_PEAK_TFLOPS, f"{device_name or 'GPU'} not in the peak table: assumed"
    eager, compiled = step_seconds(flops_per_step, peak)
    plan = CompilePlan(setting)
    rows = []
    for g in graphs:
        saving = g.steps * (eager - compiled)
        on = saving > COMPILE_SECONDS
        plan.modes[g.trainable] = COMPILE_MODE if on else "none"
        rows.append({"phases": g.phases, "steps": g.steps, "saving_ms_per_step": (eager - compiled) * 1e3,
                     "saving_seconds": saving, "compile": on})
    plan.estimate = {"peak_tflops": peak, "peak_source": source, "flops_per_step": flops_per_step,
                     "eager_mfu": EAGER_MFU, "compiled_mfu": COMPILED_MFU,
                     "eager_ms_per_step": eager * 1e3, "compiled_ms_per_step": compiled * 1e3,
                     "compile_seconds": COMPILE_SECONDS, "graphs": rows,
                     "basis": "H200 measurements, ViT-B/32 b32-4stage batch 256 (cascade.train.fastpath)"}
    return plan

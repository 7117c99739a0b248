"""The progressive schedule (DESIGN §5) and the learning-rate curve.

Phases, per epoch (0-based ``e``; user-facing text is 1-based):

1. ``warmup``  — only the deepest stage's prompts, its head (and LayerNorm copy) and the
   classifier train (plus shared prompts and the concat head, which have no stage);
2. ``unfreeze`` — the other stages join one at a time, deep to shallow, spread evenly over
   the unfreeze epochs (with K other stages and U epochs, ``ceil((j+1)·K/U)`` have joined
   in unfreeze epoch ``j``);
3. ``global``  — every parameter the method adds: all prompts, σ, λ, heads, classifier.

A parameter the model config made untrainable (e.g. ``sigma_learnable: false``) stays
frozen in every phase. The backbone is never trainable.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .run_config import EpochsConfig

PHASES = ("warmup", "unfreeze", "global")


@dataclass(frozen=True)
class PhaseInfo:
    name: str                       # warmup | unfreeze | global
    epoch: int                      # 0-based epoch of the whole run
    epoch_in_phase: int             # 0-based
    active_stages: tuple[int, ...]  # 0-based stages whose prompts/heads train (all in global)
    everything: bool = False        # global: σ, λ and every other added parameter too

    def describe(self) -> str:
        stages = ",".join(str(s + 1) for s in sorted(self.active_stages))
        return f"{self.name} (stages {stages}{' + σ, λ' if self.everything else ''})"


def phase_for_epoch(epoch: int, epochs: EpochsConfig, num_stages: int) -> PhaseInfo:
    w, u = epochs.warmup, epochs.unfreeze
    deepest = num_stages - 1
    if epoch < w:
        return PhaseInfo("warmup", epoch, epoch, (deepest,))
    if epoch < w + u:
        j = epoch - w
        others = num_stages - 1
        joined = math.ceil((j + 1) * others / u) if others else 0
        stages = tuple(range(deepest, deepest - joined - 1, -1))
        return PhaseInfo("unfreeze", epoch, j, stages)
    return PhaseInfo("global", epoch, epoch - w - u, tuple(range(num_stages)), everything=True)


def phase_plan(epochs: EpochsConfig, num_stages: int) -> list[PhaseInfo]:
    return [phase_for_epoch(e, epochs, num_stages) for e in range(epochs.total)]


@dataclass
class TrainableSets:
    """Which of the model's added parameters may ever train, and which train in a phase."""

    capable: set[str]                      # requires_grad when the model was built
    always: set[str] = field(default_factory=set)   # train from warm-up on (no stage of their own)

    @classmethod
    def from_model(cls, model) -> "TrainableSets":
        capable = {n for n, p in model.cascade_named_parameters() if p.requires_grad}
        always = {n for n, _ in model.cascade_named_parameters() if n.startswith("classifier.")}
        if model.prompts is not None and model.prompts.sharing == "shared":
            always |= {n for n, _ in model.cascade_named_parameters() if n.startswith("prompts.")}
        always |= {n for n, _ in model.cascade_named_parameters() if n.startswith("concat_head")}
        return cls(capable=capable, always=always)

    def names_for(self, model, phase: PhaseInfo) -> set[str]:
        if phase.everything:
            wanted = {n for n, _ in model.cascade_named_parameters()}
        else:
            wanted = set(self.always)
            for s in phase.active_stages:
                wanted |= set(model.stage_parameter_names(s))
        return wanted & self.capable


def apply_phase(model, names: set[str]) -> dict[str, int]:
    """Set requires_grad on the model's added parameters; returns trainable counts per group."""
    counts: dict[str, int] = {}
    for n, p in model.cascade_named_parameters():
        on = n in names
        p.requires_grad_(on)
        if not on:
            p.grad = None
        if on:
            g = model.group_of(n)
            counts[g] = counts.get(g, 0) + p.numel()
    for p in model.visual.parameters():
        p.requires_grad_(False)
    return counts


def lr_factor(step: int, total_steps: int, warmup_steps: int, schedule: str, min_ratio: float = 0.0) -> float:
    """Multiplier of every group's base lr for 0-based optimiser ``step``."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    span = max(1, total_steps - warmup_steps)
    t = min(1.0, max(0.0, (step - warmup_steps) / span))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))

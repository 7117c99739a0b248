"""The progressive schedule (warm-up, unfreeze, global) and the learning-rate curve.

Phases, per epoch (0-based ``e``; user-facing text is 1-based):

1. ``warmup``  — only the deepest stage's prompts, its head (and LayerNorm copy) and the
   classifier train (plus shared prompts and the concat head, which have no stage);
2. ``unfreeze`` — the other stages join one at a time, deep to shallow, spread evenly over
   the unfreeze epochs (with K other stages and U epochs, ``ceil((j+1)·K/U)`` have joined
   in unfreeze epoch ``j``);
3. ``global``  — every parameter the method adds: all prompts, σ, λ, heads, classifier.

σ and λ follow ``train.recipe``. ``seed`` (the reference recipe): they train in the global
phase only. ``default``: stage s's σ and fusion logit train from the phase in which stage
s's prompts do. σ and the fusion logits are one tensor each, so in a phase where only some
stages train, the entries of the others are held fixed by a mask (:meth:`TrainableSets.masks_for`).

A parameter the model config made untrainable (e.g. ``sigma_learnable: false``) stays
frozen in every phase. The backbone is never trainable.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..run_config import EpochsConfig

# Parameters with one entry per stage (σ) or per fused stage (λ's logits).
PER_STAGE = ("nga.log_sigma", "fusion_logits")

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
    recipe: str = "default"

    @classmethod
    def from_model(cls, model, recipe: str = "default") -> "TrainableSets":
        capable = {n for n, p in model.cascade_named_parameters() if p.requires_grad}
        always = {n for n, _ in model.cascade_named_parameters() if n.startswith("classifier.")}
        if model.prompts is not None and model.prompts.sharing == "shared":
            always |= {n for n, _ in model.cascade_named_parameters() if n.startswith("prompts.")}
        # concat_head, and the backbone's LayerNorms when they train: no stage of their own.
        always |= {n for n, _ in model.cascade_named_parameters() if n.startswith(("concat_head", "visual."))}
        return cls(capable=capable, always=always, recipe=recipe)

    def masks_for(self, model, phase: PhaseInfo) -> dict[str, torch.Tensor]:
        """Per-stage parameters that train only in some entries this phase → bool mask of those.

        Empty in the seed recipe and in the global phase (every entry trains).
        """
        if self.recipe == "seed" or phase.everything:
            return {}
        active = set(phase.active_stages)
        entries = {"nga.log_sigma": list(range(model.num_stages)), "fusion_logits": list(model.fused_stages)}
        return {name: torch.tensor([s in active for s in stages]) for name, stages in entries.items()
                if name in self.capable}

    def names_for(self, model, phase: PhaseInfo) -> set[str]:
        if phase.everything:
            wanted = {n for n, _ in model.cascade_named_parameters()}
        else:
            wanted = set(self.always)
            for s in phase.active_stages:
                wanted |= set(model.stage_parameter_names(s))
            wanted |= {name for name, mask in self.masks_for(model, phase).items() if bool(mask.any())}
        return wanted & self.capable

    def describe(self, model, phase: PhaseInfo) -> str:
        """The phase as the training log shows it, with which stages' σ and λ train."""
        if self.recipe == "seed" or phase.everything:
            return phase.describe()
        trained = [name for name in PER_STAGE if name in self.names_for(model, phase)]
        if not trained:
            return phase.describe()
        what = " and ".join({"nga.log_sigma": "σ", "fusion_logits": "λ"}[n] for n in trained)
        return f"{phase.describe()}, with their {what}"


def hold_masked(params: dict[str, torch.nn.Parameter], masks: dict[str, torch.Tensor]):
    """Zero the gradients of the masked-out entries; returns a function that, called after
    the optimiser step, puts those entries back exactly (AdamW's decoupled weight decay and
    earlier moments would otherwise still move them)."""
    kept = []
    for name, mask in masks.items():
        p = params.get(name)
        if p is None or p.grad is None:
            continue
        off = ~mask.to(p.device)
        p.grad[off] = 0
        kept.append((p, off, p.detach()[off].clone()))

    def restore() -> None:
        with torch.no_grad():
            for p, off, values in kept:
                p[off] = values
    return restore


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
    trained = getattr(model, "trained_visual", set())     # the backbone's own that train (set above)
    for n, p in model.visual.named_parameters():
        if f"visual.{n}" not in trained:
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

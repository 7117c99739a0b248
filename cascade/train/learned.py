"""The method's headline parameters, σ (NGA, per stage) and λ (fusion weights), as a run
learned them: their values now, and how far they moved from where they started.

A σ can only move when its stage has two or more blocks (one block always gets weight 1),
when it is learnable (``nga: normalized|free`` with ``sigma_learnable``) and when the recipe
gives it a learning rate that moves it. The check below is what lets a report say so when
it did not.
"""
from __future__ import annotations

import math
from typing import Any

SIGMA_STAYED = "σ stayed at its initial value"
MOVED_FRACTION = 0.01   # a σ "moved" when it changed by at least 1 % of its initial value


def nga_now(model) -> dict[str, list[float]]:
    """``{"sigma": [σ per stage], "fusion": [λ per stage]}`` (λ is 0 outside the fusion; None under
    concat fusion, which has no λ)."""
    lam = model.current_fusion_weights()
    return {"sigma": [float(v) for v in model.sigma().detach().float().cpu()],
            "fusion": None if lam is None else [float(v) for v in lam.detach().float().cpu()]}


def _relative(now: list[float] | None, init: list[float]) -> list[float] | None:
    if now is None:
        return None
    return [n / i - 1.0 for n, i in zip(now, init)]


def learned_parameters(model, init: dict[str, list[float]], last: dict[str, list[float]],
                       best: dict[str, list[float]] | None, sigma_trainable: bool) -> dict[str, Any]:
    """eval.json's ``nga`` entry: σ and λ at init, best and last, and whether σ moved.

    ``sigma_movable_stages`` lists the 1-based stages whose σ can change the model (σ
    trains in this run, the stage has two or more blocks); ``sigma_moved`` is whether any
    of them changed by ≥ 1 % (at the best or the last checkpoint), None when none can move.
    """
    movable = [s + 1 for s, blocks in enumerate(model.stage_blocks) if sigma_trainable and len(blocks) > 1]
    change_last = _relative(last["sigma"], init["sigma"])
    change_best = _relative(best["sigma"] if best else None, init["sigma"])
    moved = None
    if movable:
        changes = [abs(change_last[s - 1]) for s in movable]
        if change_best is not None:
            changes += [abs(change_best[s - 1]) for s in movable]
        moved = max(changes) >= MOVED_FRACTION
    out: dict[str, Any] = {
        "sigma_init": init["sigma"], "sigma_best": best["sigma"] if best else None, "sigma_last": last["sigma"],
        "sigma_change_best": change_best, "sigma_change_last": change_last,
        "sigma_movable_stages": movable, "sigma_moved": moved,
        "fusion_init": init["fusion"], "fusion_best": best["fusion"] if best else None, "fusion_last": last["fusion"],
        "fusion_max_change": None if last["fusion"] is None or init["fusion"] is None else
        max((abs(a - b) for a, b in zip(last["fusion"], init["fusion"])), default=0.0),
        "moved_threshold": MOVED_FRACTION,
    }
    if moved is False:
        out["warning"] = sigma_warning(out)
    return out


def sigma_warning(nga: dict[str, Any]) -> str:
    """The warning a report carries when no movable σ changed by 1 %."""
    worst = max((abs(c) for c in (nga.get("sigma_change_last") or []) if c is not None and math.isfinite(c)),
                default=0.0)
    return (f"{SIGMA_STAYED}: no σ changed by {MOVED_FRACTION:.0%} (largest change {worst:.2%}), so the NGA "
            "weights are the initial ones; give σ a learning rate and phase in which it can move "
            "(train.recipe: default, train.lr.nga)")

"""AdamW with one parameter group per group name, and its state as plain tensors.

Every parameter that can ever train is in the optimiser from the start; a parameter frozen
in the current phase has ``requires_grad=False`` and its ``.grad`` is set to ``None`` before
each step. ``torch.optim.AdamW`` only visits parameters whose grad is not None, so a frozen
parameter gets neither an Adam update nor weight decay and its optimiser state is not
created or advanced (tests check it stays bitwise equal).
"""
from __future__ import annotations

from typing import Any

import torch

from ..config import PARAM_GROUPS
from ..run_config import TrainConfig


def build_optimizer(model, cfg: TrainConfig, capable: set[str], fused: bool | None = None,
                    ) -> tuple[torch.optim.AdamW, dict[str, torch.nn.Parameter]]:
    """AdamW over the parameters in ``capable``; returns it and the name → parameter map it uses.

    ``fused`` (default: when the parameters are on a GPU) updates every parameter of a
    group in one kernel instead of a handful of kernels per parameter; its step counts
    live on the device. On CPUs the per-parameter loop is kept.
    """
    named: dict[str, torch.nn.Parameter] = {}
    lrs = cfg.learning_rates()
    groups = []
    for g in PARAM_GROUPS:
        params = [(n, p) for n, p in model.cascade_named_parameters() if n in capable and model.group_of(n) == g]
        if not params:
            continue
        named.update(params)
        groups.append({"params": [p for _, p in params], "names": [n for n, _ in params], "group": g,
                       "lr": lrs[g], "base_lr": lrs[g],
                       "weight_decay": getattr(cfg.weight_decay, g)})
    device = next((p.device for p in named.values()), torch.device("cpu"))
    if not groups:
        # Nothing can train (e.g. zero-shot); an optimiser over nothing keeps the loop uniform.
        dummy = torch.nn.Parameter(torch.zeros((), device=device), requires_grad=False)
        groups.append({"params": [dummy], "names": [], "group": "none", "lr": 0.0, "base_lr": 0.0,
                       "weight_decay": 0.0})
    if fused is None:
        fused = device.type == "cuda"
    kind = {"fused": True} if fused else {"foreach": False}
    opt = torch.optim.AdamW(groups, betas=tuple(cfg.betas), **kind)
    return opt, named


def set_lr(optimizer: torch.optim.Optimizer, factor: float) -> dict[str, float]:
    out = {}
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor
        out[group["group"]] = group["lr"]
    return out


def mask_frozen_grads(optimizer: torch.optim.Optimizer) -> None:
    """Drop any gradient on a parameter that does not train in this phase."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            if not p.requires_grad:
                p.grad = None


def optimizer_state_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Adam moments and step counts keyed ``optim.<param name>.<key>``, plus JSON-able extras."""
    tensors: dict[str, torch.Tensor] = {}
    for group in optimizer.param_groups:
        for name, p in zip(group["names"], group["params"]):
            state = optimizer.state.get(p)
            if not state:
                continue
            for key, value in state.items():
                if torch.is_tensor(value):
                    tensors[f"optim.{name}.{key}"] = value.detach().cpu().contiguous()
                else:
                    tensors[f"optim.{name}.{key}"] = torch.tensor(value)
    meta = {"groups": [{"group": g["group"], "base_lr": g["base_lr"], "weight_decay": g["weight_decay"],
                        "names": list(g["names"])} for g in optimizer.param_groups]}
    return tensors, meta


def load_optimizer_state(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    by_name = {}
    for group in optimizer.param_groups:
        for name, p in zip(group["names"], group["params"]):
            by_name[name] = p
    seen = set()
    for key, value in tensors.items():
        if not key.startswith("optim."):
            continue
        rest = key[len("optim."):]
        name, _, field = rest.rpartition(".")
        if name not in by_name:
            raise ValueError(f"optimiser state for unknown parameter {name!r}")
        p = by_name[name]
        state = optimizer.state.setdefault(p, {})
        # Moments live with the parameter; 'step' on the CPU, except for fused (or capturable)
        # AdamW, which keeps it on the parameter's device.
        if field == "step":
            on_device = optimizer.defaults.get("fused") or optimizer.defaults.get("capturable")
            state[field] = value.to(p.device).clone() if on_device else value.cpu().clone()
        else:
            state[field] = value.to(p.device, dtype=p.dtype).clone()
        seen.add(name)
    for name, p in by_name.items():
        if name not in seen:
            optimizer.state.pop(p, None)

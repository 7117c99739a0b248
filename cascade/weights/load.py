"""Putting a converted state dict into an open_clip model, with one-line errors on mismatch."""
from __future__ import annotations

import torch

from .errors import WeightsError


def non_persistent_buffers(model: torch.nn.Module) -> set[str]:
    names = set()
    for prefix, module in model.named_modules():
        for name in getattr(module, "_non_persistent_buffers_set", ()):
            names.add(f"{prefix}.{name}" if prefix else name)
    return names


def load_state(model: torch.nn.Module, state: dict[str, torch.Tensor], path: str) -> None:
    """Copy ``state`` (open_clip names, any float dtype) into ``model``; every tensor must fit."""
    state = {k: v for k, v in state.items() if k not in non_persistent_buffers(model)}
    own = model.state_dict()
    if "logit_scale" in state and state["logit_scale"].ndim != own["logit_scale"].ndim:
        state["logit_scale"] = state["logit_scale"].reshape(own["logit_scale"].shape)
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        parts = ([f"missing {', '.join(missing[:3])}{' …' if len(missing) > 3 else ''}"] if missing else []) + (
            [f"unexpected {', '.join(unexpected[:3])}{' …' if len(unexpected) > 3 else ''}"] if unexpected else [])
        raise WeightsError(f"pretrained: {path} does not fit the model: {'; '.join(parts)}")
    for key, value in state.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise WeightsError(f"pretrained: {path}: tensor {key} has shape {tuple(value.shape)}, the model expects "
                               f"{tuple(own[key].shape)}")
    model.load_state_dict(state, strict=True)

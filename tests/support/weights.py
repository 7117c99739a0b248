"""Weights files in the formats researchers bring, built from a state dict inside the test."""
from __future__ import annotations

import warnings
from pathlib import Path

import torch

# OpenAI's archives keep these ints beside the weights.
OPENAI_INTS = {"input_resolution": 64, "context_length": 77, "vocab_size": 49408}


class _Node(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _tree(state: dict[str, torch.Tensor], half: bool = False, special: dict | None = None) -> torch.nn.Module:
    """One module per dotted prefix (``visual.transformer.resblocks.0.attn``), parameters at the
    leaves; ``special`` maps a key to the module that holds it instead of a parameter."""
    root = _Node()
    for key, value in state.items():
        *parents, leaf = key.split(".")
        module = root
        for part in parents:
            if not hasattr(module, part):
                module.add_module(part, _Node())
            module = getattr(module, part)
        if special and key in special:
            module.add_module(leaf, special[key])
            continue
        value = value.detach().clone()
        if half and value.ndim >= 2:
            value = value.half()
        module.register_parameter(leaf, torch.nn.Parameter(value, requires_grad=False))
    return root


def _save(module: torch.nn.Module, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)   # torch.jit is deprecated; OpenAI's files are TorchScript
        torch.jit.save(torch.jit.script(module), str(path))
    return path


def openai_archive(state: dict[str, torch.Tensor], path: Path, half: bool = False) -> Path:
    """A TorchScript archive nesting ``state`` as OpenAI's ``clip`` model does, with the three ints
    as top-level buffers. ``half`` stores matrices in float16, as OpenAI's files do."""
    root = _tree(state, half)
    for name, number in OPENAI_INTS.items():
        root.register_buffer(name, torch.tensor(number))
    return _save(root, path)


class SelfRewriting(torch.nn.Module):
    """A module whose TorchScript ``__setstate__`` multiplies its stored weight by 7 on load."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.register_buffer("weight", weight.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight

    @torch.jit.export
    def __getstate__(self) -> tuple[torch.Tensor, bool]:
        return (self.weight, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[torch.Tensor, bool]) -> None:
        self.weight = state[0] * 7
        self.training = state[1]


def self_rewriting_archive(state: dict[str, torch.Tensor], path: Path) -> Path:
    """An OpenAI-layout archive of ``state`` whose ``visual.proj`` lives in a SelfRewriting module."""
    return _save(_tree(state, special={"visual.proj": SelfRewriting(state["visual.proj"])}), path)


def tiny_transformers_clip(folder: Path, hidden_act: str = "quick_gelu", seed: int = 0):
    """A small random transformers ``CLIPModel`` saved with ``save_pretrained``; returns the model."""
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(seed)
    cfg = CLIPConfig(
        text_config=dict(hidden_size=32, intermediate_size=80, num_attention_heads=4, num_hidden_layers=2,
                         hidden_act=hidden_act),
        vision_config=dict(hidden_size=48, intermediate_size=96, num_attention_heads=3, num_hidden_layers=3,
                           image_size=48, patch_size=16, hidden_act=hidden_act),
        projection_dim=24)
    model = CLIPModel(cfg).eval()
    model.save_pretrained(str(folder))
    return model

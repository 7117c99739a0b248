"""Hugging Face transformers ``CLIPModel`` checkpoints as open_clip state dicts and model configs.

A transformers checkpoint is a folder with ``config.json`` and ``model.safetensors`` (or
``pytorch_model.bin``, or shards with an index). Its parameter names differ from open_clip's and
attention keeps q, k and v apart; this module renames, fuses q/k/v into open_clip's ``in_proj``,
transposes both projections, and builds the open_clip model config from ``config.json`` and the
tensor shapes, so checkpoints of any size load. transformers itself is not needed.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from .errors import WeightsError
from .infer import state_signature

CONFIG_NAME = "config.json"
WEIGHT_NAMES = ("model.safetensors", "pytorch_model.bin")
INDEX_NAMES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
# transformers' defaults for the values its config.json may leave out.
TEXT_DEFAULTS = {"num_attention_heads": 8, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5}
VISION_DEFAULTS = {"num_attention_heads": 12, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5}
ACTIVATIONS = {"quick_gelu": True, "gelu": False}

_LAYER = re.compile(r"^(text_model|vision_model)\.encoder\.layers\.(\d+)\.(.+)$")
_BLOCK_NAMES = {
    "layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj",
    "self_attn.out_proj": "attn.out_proj",
}
_PLAIN_NAMES = {
    "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
    "text_model.embeddings.position_embedding.weight": "positional_embedding",
    "text_model.final_layer_norm.weight": "ln_final.weight",
    "text_model.final_layer_norm.bias": "ln_final.bias",
    "vision_model.embeddings.class_embedding": "visual.class_embedding",
    "vision_model.embeddings.patch_embedding.weight": "visual.conv1.weight",
    "vision_model.embeddings.position_embedding.weight": "visual.positional_embedding",
    "vision_model.pre_layrnorm.weight": "visual.ln_pre.weight",
    "vision_model.pre_layrnorm.bias": "visual.ln_pre.bias",
    "vision_model.post_layernorm.weight": "visual.ln_post.weight",
    "vision_model.post_layernorm.bias": "visual.ln_post.bias",
    "logit_scale": "logit_scale",
}
_IGNORED = ("text_model.embeddings.position_ids", "vision_model.embeddings.position_ids")


def config_path(path: str | Path) -> Path | None:
    """The transformers ``config.json`` of a folder, or beside a weights file; None when there is none."""
    p = Path(path)
    cfg = p / CONFIG_NAME if p.is_dir() else p.parent / CONFIG_NAME
    return cfg if cfg.is_file() else None


def read_config(path: str | Path) -> dict[str, Any] | None:
    """The parsed ``config.json`` when it describes a transformers CLIP model, else None."""
    cfg_path = config_path(path)
    if cfg_path is None:
        return None
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WeightsError(f"pretrained: {cfg_path} is not valid JSON ({exc})") from None
    if not isinstance(cfg, dict):
        return None
    if cfg.get("model_type") == "clip" or "CLIPModel" in (cfg.get("architectures") or []):
        return cfg
    return None


def weights_files(folder: Path) -> list[Path]:
    """The weights file(s) of a transformers folder: one file, or every shard an index names."""
    for name in WEIGHT_NAMES:
        if (folder / name).is_file():
            return [folder / name]
    for name in INDEX_NAMES:
        index = folder / name
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
                return [folder / f for f in sorted(set(weight_map.values()))]
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                raise WeightsError(f"pretrained: {index} is not a readable shard index ({exc})") from None
    raise WeightsError(f"pretrained: {folder} has a transformers {CONFIG_NAME} but no weights file "
                       f"({', '.join(WEIGHT_NAMES)})")


def _towers(cfg: dict[str, Any], path: Path) -> tuple[dict, dict]:
    text = {**TEXT_DEFAULTS, **(cfg.get("text_config") or {})}
    vision = {**VISION_DEFAULTS, **(cfg.get("vision_config") or {})}
    for tower, name in ((text, "text_config"), (vision, "vision_config")):
        if tower["hidden_act"] not in ACTIVATIONS:
            raise WeightsError(f"pretrained: {path}: {name}.hidden_act {tower['hidden_act']!r} is not one open_clip "
                               f"builds ({', '.join(ACTIVATIONS)})")
        if abs(float(tower["layer_norm_eps"]) - 1e-5) > 1e-12:
            raise WeightsError(f"pretrained: {path}: {name}.layer_norm_eps {tower['layer_norm_eps']} differs from "
                               "open_clip's 1e-5")
    if text["hidden_act"] != vision["hidden_act"]:
        raise WeightsError(f"pretrained: {path}: the text tower uses {text['hidden_act']} and the vision tower "
                           f"{vision['hidden_act']}; open_clip uses one activation for both")
    return text, vision


def quick_gelu(cfg: dict[str, Any], path: Path) -> bool:
    """Whether the checkpoint's towers use QuickGELU (``hidden_act``)."""
    text, _ = _towers(cfg, path)
    return ACTIVATIONS[text["hidden_act"]]


def model_config(cfg: dict[str, Any], state: dict[str, torch.Tensor], path: Path) -> dict[str, Any]:
    """The open_clip model config of a converted checkpoint: sizes from the tensors, heads and
    activation from ``config.json``."""
    text, vision = _towers(cfg, path)
    sig = state_signature(state)
    if sig is None:
        raise WeightsError(f"pretrained: {path} lacks tensors of a ViT CLIP (patch embedding, blocks, projections)")
    v_width, t_width = sig["vision_width"], sig["text_width"]
    v_heads, t_heads = int(vision["num_attention_heads"]), int(text["num_attention_heads"])
    if v_width % v_heads or t_width % t_heads:
        raise WeightsError(f"pretrained: {path}: widths {v_width}/{t_width} are not divisible by the "
                           f"head counts {v_heads}/{t_heads} of {CONFIG_NAME}")
    return {
        "embed_dim": sig["embed_dim"],
        "quick_gelu": ACTIVATIONS[text["hidden_act"]],
        "vision_cfg": {
            "image_size": sig["image_size"], "layers": sig["vision_layers"], "width": v_width,
            "head_width": v_width // v_heads, "patch_size": sig["patch_size"],
            "mlp_ratio": sig["vision_mlp"] / v_width,
        },
        "text_cfg": {
            "context_length": sig["context_length"], "vocab_size": sig["vocab_size"], "width": t_width,
            "heads": t_heads, "layers": sig["text_layers"], "mlp_ratio": sig["text_mlp"] / t_width,
        },
    }


def convert_state_dict(hf: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """transformers ``CLIPModel`` parameter names and layouts → open_clip ``CLIP``'s."""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, value in hf.items():
        if key in _IGNORED:
            continue
        if key in _PLAIN_NAMES:
            out[_PLAIN_NAMES[key]] = value
        elif key == "visual_projection.weight":
            out["visual.proj"] = value.t().contiguous()
        elif key == "text_projection.weight":
            out["text_projection"] = value.t().contiguous()
        elif (m := _LAYER.match(key)):
            tower, index, rest = m.groups()
            base = f"{'visual.' if tower == 'vision_model' else ''}transformer.resblocks.{index}."
            proj = re.match(r"self_attn\.([qkv])_proj\.(weight|bias)$", rest)
            if proj:
                qkv.setdefault((base, proj.group(2)), {})[proj.group(1)] = value
                continue
            module, _, leaf = rest.rpartition(".")
            if module not in _BLOCK_NAMES:
                raise WeightsError(f"pretrained: {path} has the tensor {key}, which open_clip's CLIP has no place for")
            out[f"{base}{_BLOCK_NAMES[module]}.{leaf}"] = value
        else:
            raise WeightsError(f"pretrained: {path} has the tensor {key}, which open_clip's CLIP has no place for")
    for (base, leaf), parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            lacking = sorted({"q", "k", "v"} - set(parts))
            raise WeightsError(f"pretrained: {path}: attention {base}{leaf} lacks {lacking}")
        out[f"{base}attn.in_proj_{leaf}"] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out


def read_config_quiet(path: str | Path) -> dict[str, Any] | None:
    """:func:`read_config`, with an unreadable ``config.json`` counted as none (for searching)."""
    try:
        return read_config(path)
    except WeightsError:
        return None

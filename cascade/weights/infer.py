"""Which open_clip architecture a state dict (or a model config) is."""
from __future__ import annotations

from typing import Any

import open_clip
import torch

from .configs import register_model_configs
from .errors import WeightsError

AUTO = "auto"
# Architectures recognised from tensor shapes alone, first match wins (the -quickgelu twins
# share shapes; QuickGELU is decided apart from the architecture).
KNOWN_ARCHITECTURES = ("ViT-B-32", "ViT-B-16", "ViT-L-14", "ViT-L-14-336", "cascade-tiny")
SIGNATURE_FIELDS = ("vision_width", "vision_layers", "patch_size", "image_size", "vision_mlp", "embed_dim",
                    "text_width", "text_layers", "text_mlp", "context_length", "vocab_size")


def _count(state: dict[str, torch.Tensor], prefix: str) -> int:
    return len({k[len(prefix):].split(".", 1)[0] for k in state if k.startswith(prefix)})


def state_signature(state: dict[str, torch.Tensor]) -> dict[str, int] | None:
    """The sizes a ViT CLIP state dict (open_clip names) fixes; None when it is not one."""
    try:
        conv = state["visual.conv1.weight"]
        grid = round((state["visual.positional_embedding"].shape[0] - 1) ** 0.5)
        return {
            "vision_width": int(conv.shape[0]),
            "vision_layers": _count(state, "visual.transformer.resblocks."),
            "patch_size": int(conv.shape[-1]),
            "image_size": int(conv.shape[-1]) * grid,
            "vision_mlp": int(state["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0]),
            "embed_dim": int(state["visual.proj"].shape[1]),
            "text_width": int(state["ln_final.weight"].shape[0]),
            "text_layers": _count(state, "transformer.resblocks."),
            "text_mlp": int(state["transformer.resblocks.0.mlp.c_fc.weight"].shape[0]),
            "context_length": int(state["positional_embedding"].shape[0]),
            "vocab_size": int(state["token_embedding.weight"].shape[0]),
        }
    except (KeyError, IndexError, AttributeError):
        return None


def config_signature(cfg: dict[str, Any]) -> dict[str, int] | None:
    """The same sizes from an open_clip model config; None for configs of other kinds (timm, ResNet)."""
    v, t = cfg.get("vision_cfg", {}), cfg.get("text_cfg", {})
    if not isinstance(v.get("layers", 12), int) or "timm_model_name" in v or "hf_model_name" in t:
        return None
    size = v.get("image_size", 224)
    size = size[0] if isinstance(size, (list, tuple)) else size
    v_width, t_width = int(v.get("width", 768)), int(t.get("width", 512))
    return {
        "vision_width": v_width, "vision_layers": int(v.get("layers", 12)), "patch_size": int(v.get("patch_size", 16)),
        "image_size": int(size), "vision_mlp": int(v_width * v.get("mlp_ratio", 4.0)),
        "embed_dim": int(cfg.get("embed_dim", 512)), "text_width": t_width, "text_layers": int(t.get("layers", 12)),
        "text_mlp": int(t_width * t.get("mlp_ratio", 4.0)), "context_length": int(t.get("context_length", 77)),
        "vocab_size": int(t.get("vocab_size", 49408)),
    }


def heads(cfg: dict[str, Any]) -> tuple[int, int]:
    """(vision heads, text heads) of an open_clip model config."""
    v, t = cfg.get("vision_cfg", {}), cfg.get("text_cfg", {})
    return int(v.get("width", 768)) // int(v.get("head_width", 64)), int(t.get("heads", 8))


def describe(sig: dict[str, int]) -> str:
    return (f"vision width {sig['vision_width']} x {sig['vision_layers']} blocks, patch {sig['patch_size']}, "
            f"{sig['image_size']} px, embed {sig['embed_dim']}, text width {sig['text_width']} x "
            f"{sig['text_layers']} blocks")


def differences(a: dict[str, int], b: dict[str, int]) -> list[str]:
    return [f"{k} {a[k]} vs {b[k]}" for k in SIGNATURE_FIELDS if a[k] != b[k]]


def architecture_of(state: dict[str, torch.Tensor], path: str, model_cfg: dict[str, Any] | None = None) -> str | None:
    """The known architecture the weights are, or None when only ``model_cfg`` (from a config
    beside them) describes them. Raises :class:`WeightsError` when nothing fits."""
    register_model_configs()
    sig = state_signature(state)
    if sig is None:
        raise WeightsError(f"pretrained: {path} is not a ViT CLIP state dict (no visual.conv1 / transformer "
                           "tensors); its shapes fit no architecture")
    for name in KNOWN_ARCHITECTURES:
        cfg = open_clip.get_model_config(name)
        if cfg is None or config_signature(cfg) != sig:
            continue
        if model_cfg is not None and heads(model_cfg) != heads(cfg):
            continue
        return name
    if model_cfg is not None:
        return None
    raise WeightsError(f"pretrained: {path} has shapes that fit no architecture cascade knows ({describe(sig)}); "
                       f"known: {', '.join(KNOWN_ARCHITECTURES)}. A config.json (transformers) or "
                       "open_clip_config.json beside it gives other sizes")


def check_architecture(model_name: str, state: dict[str, torch.Tensor], path: str,
                       model_cfg: dict[str, Any] | None = None) -> None:
    """Raise :class:`WeightsError` naming both when ``model_name`` is not the weights' architecture."""
    register_model_configs()
    cfg = open_clip.get_model_config(model_name)
    sig = state_signature(state)
    want = config_signature(cfg) if cfg else None
    if sig is None or want is None:
        return  # not a ViT CLIP layout: open_clip's own loading reports what does not fit
    if sig != want or (model_cfg is not None and heads(model_cfg) != heads(cfg)):
        try:
            found = architecture_of(state, path, model_cfg) or "a custom size"
        except WeightsError:
            found = "no known architecture"
        diff = differences(want, sig) or [f"heads {heads(cfg)} vs {heads(model_cfg)}"]
        more = " …" if len(diff) > 3 else ""
        raise WeightsError(f"pretrained: {path} holds {found} weights ({describe(sig)}), but model_name is "
                           f"{model_name!r}: {'; '.join(diff[:3])}{more}. Use model_name {AUTO} (CLI --model {AUTO})")

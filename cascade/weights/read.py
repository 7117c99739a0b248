"""One reader for every weights format cascade accepts, giving open_clip state dicts.

Formats: ``open_clip`` (a state dict as ``.safetensors``, or ``.pt``/``.pth``/``.bin`` read with
``weights_only=True``), ``torchscript`` (OpenAI's ``clip`` archives, read without running them)
and ``transformers`` (a ``CLIPModel`` folder, or its weights file with ``config.json`` beside it).
With ``meta=True`` tensors come on the meta device where the format allows it (shapes without
reading the data), which is what listing and architecture checks need.
"""
from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from . import hf
from .errors import WeightsError
from .torchscript import is_torchscript, read_torchscript

SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")
OPEN_CLIP_NAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
FORMATS = ("open_clip", "torchscript", "transformers")


@dataclass
class Weights:
    """A weights file's tensors (open_clip names) and what the file says about its model."""

    path: str                        # the file (or folder) given
    format: str                      # one of FORMATS
    state: dict[str, torch.Tensor] = field(repr=False)
    model_cfg: dict[str, Any] | None = None    # open_clip model config, when the source carries one
    quick_gelu: bool | None = None             # what the format says, None when it says nothing
    quick_gelu_source: str | None = None


def _one_line(exc: BaseException, limit: int = 160) -> str:
    """The first sentence of an exception from a reader library, for a one-line message."""
    text = (str(exc).strip().splitlines() or [""])[0].split(". ")[0]
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return f"{type(exc).__name__}: {text}".rstrip(": ")


def _safetensors(path: Path, meta: bool) -> dict[str, torch.Tensor]:
    try:
        with safe_open(str(path), framework="pt") as f:
            if not meta:
                return {k: f.get_tensor(k) for k in f.keys()}
            out = {}
            for k in f.keys():
                sl = f.get_slice(k)
                out[k] = torch.empty(sl.get_shape(), dtype=_SAFETENSORS_DTYPES.get(sl.get_dtype(), torch.float32),
                                     device="meta")
            return out
    except WeightsError:
        raise
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise WeightsError(f"pretrained: {path} is truncated or corrupt ({_one_line(exc)})") from None


_SAFETENSORS_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
                       "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
                       "U8": torch.uint8, "BOOL": torch.bool}


def _torch_file(path: Path, meta: bool) -> dict[str, torch.Tensor]:
    with open(path, "rb") as fh:
        zipped = fh.read(4) == b"PK\x03\x04"
    if zipped and not zipfile.is_zipfile(path):
        raise WeightsError(f"pretrained: {path} is truncated or corrupt (its zip archive has no central "
                           "directory: the file was cut short)")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=meta and zipfile.is_zipfile(path))
    except Exception as exc:  # noqa: BLE001 - torch reports bad files with many error types
        raise WeightsError(f"pretrained: {path} is truncated or corrupt, or not a plain state dict "
                           f"({_one_line(exc)})") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"pretrained: {path} does not hold a state dict (a mapping of names to tensors)")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def _tensors(path: Path, meta: bool) -> dict[str, torch.Tensor]:
    if path.suffix.lower() == ".safetensors":
        return _safetensors(path, meta)
    return _torch_file(path, meta)


def _transformers(path: Path, cfg: dict[str, Any], meta: bool) -> Weights:
    folder = path if path.is_dir() else path.parent
    files = hf.weights_files(folder) if path.is_dir() else [path]
    raw: dict[str, torch.Tensor] = {}
    for f in files:
        if not f.is_file():
            raise WeightsError(f"pretrained: {f} (a shard of {folder}) is missing")
        raw.update(_tensors(f, meta))
    state = hf.convert_state_dict(raw, path)
    model_cfg = hf.model_config(cfg, state, path)
    return Weights(str(path), "transformers", state, model_cfg, model_cfg["quick_gelu"], hf.CONFIG_NAME)


def open_clip_file(folder: Path) -> Path | None:
    """The weights file of an open_clip folder (Hugging Face open_clip repos), or None."""
    for name in OPEN_CLIP_NAMES:
        if (folder / name).is_file():
            return folder / name
    return None


def read_weights(path: str | os.PathLike, meta: bool = False) -> Weights:
    """Read a weights file or folder into open_clip names; :class:`WeightsError` says what is wrong."""
    p = Path(path)
    if not p.exists():
        raise WeightsError(f"pretrained: no such file or folder: {p}")
    cfg = hf.read_config(p)
    if p.is_dir():
        if cfg is not None:
            return _transformers(p, cfg, meta)
        inner = open_clip_file(p)
        if inner is None:
            raise WeightsError(f"pretrained: {p} is a folder without a transformers CLIP {hf.CONFIG_NAME} or an "
                               f"open_clip weights file ({', '.join(OPEN_CLIP_NAMES)})")
        p = inner
    suffix = p.suffix.lower()
    if suffix not in SUFFIXES:
        raise WeightsError(f"pretrained: {p} has suffix {suffix or '(none)'!r}; expected "
                           f"{', '.join(SUFFIXES)}, or a transformers folder")
    if suffix != ".safetensors" and is_torchscript(p):
        state = read_torchscript(p, meta=meta)
        return Weights(str(p), "torchscript", state, None, True, "torchscript")
    if cfg is not None and p.name in hf.WEIGHT_NAMES:
        return _transformers(p, cfg, meta)
    state = _tensors(p, meta)
    if any(k.startswith(("text_model.", "vision_model.")) for k in state):
        raise WeightsError(f"pretrained: {p} has transformers' parameter names but no transformers {hf.CONFIG_NAME} "
                           "beside it; pass the folder holding both")
    side = open_clip_sidecar(p)
    if side is None:
        return Weights(str(p), "open_clip", state)
    # A full model_cfg describes the architecture; a partial one only says quick_gelu.
    full = side if all(k in side for k in ("embed_dim", "vision_cfg", "text_cfg")) else None
    return Weights(str(p), "open_clip", state, full, bool(side.get("quick_gelu", False)), OPEN_CLIP_CONFIG)


def quick_gelu_of(path: str | os.PathLike) -> tuple[bool | None, str | None]:
    """What a weights file's format says about QuickGELU, read without loading tensors:
    OpenAI's TorchScript archives always use it; transformers checkpoints name it in
    ``config.json``; an ``open_clip_config.json`` beside a file gives ``model_cfg.quick_gelu``.
    ``(None, None)`` when nothing says."""
    p = Path(path)
    cfg = hf.read_config(p)
    if cfg is not None:
        return hf.quick_gelu(cfg, p), hf.CONFIG_NAME
    if p.is_file() and p.suffix.lower() != ".safetensors" and is_torchscript(p):
        return True, "torchscript"
    side = open_clip_sidecar(p if p.is_file() else (open_clip_file(p) or p / OPEN_CLIP_CONFIG))
    if side is not None:
        return bool(side.get("quick_gelu", False)), OPEN_CLIP_CONFIG
    return None, None


OPEN_CLIP_CONFIG = "open_clip_config.json"


def open_clip_sidecar(weights: Path) -> dict[str, Any] | None:
    """``model_cfg`` of the ``open_clip_config.json`` beside a weights file (Hugging Face open_clip
    repos ship one), or None when there is none."""
    side = weights.parent / OPEN_CLIP_CONFIG
    if not side.is_file():
        return None
    try:
        cfg = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WeightsError(f"pretrained: {side} is not valid JSON ({exc})") from None
    model_cfg = cfg.get("model_cfg") if isinstance(cfg, dict) else None
    if not isinstance(model_cfg, dict):
        raise WeightsError(f"pretrained: {side} has no model_cfg mapping")
    return model_cfg

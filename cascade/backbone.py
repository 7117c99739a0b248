"""Loading a frozen open_clip backbone, with a clear account of where its weights came from."""
from __future__ import annotations

import json
import os
import socket
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

import open_clip
import torch
from open_clip import pretrained as oc_pretrained

from .fileio import atomic_path

_CONFIG_DIR = Path(__file__).parent / "model_configs"
TINY_MODEL = "cascade-tiny"
_registered = False


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights could not be found locally nor downloaded."""


def register_model_configs() -> None:
    """Make the bundled configs (``cascade-tiny``) known to open_clip's factory."""
    global _registered
    if not _registered:
        open_clip.add_model_config(_CONFIG_DIR)
        _registered = True


@dataclass(frozen=True)
class BackboneInfo:
    name: str
    pretrained: str | None
    depth: int
    width: int
    embed_dim: int
    image_size: int
    patch_size: int
    num_patches: int
    random_weights: bool
    quick_gelu: bool                     # the activation the blocks really use (read off the model)
    seed: int | None = None
    # Where quick_gelu came from: setting, model_name (a -quickgelu config), tag,
    # open_clip_config.json (beside a weights file), assumed (a weights file with neither:
    # plain GELU was assumed) or default (random weights).
    quick_gelu_source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        source = "RANDOM weights (not pretrained)" if self.random_weights else f"weights {self.pretrained}"
        return f"{self.name} ({self.depth} blocks, width {self.width}) with {source}"


@dataclass
class Backbone:
    """A frozen open_clip model plus what is needed to use it."""

    model: torch.nn.Module
    preprocess: Callable
    tokenizer: Callable
    info: BackboneInfo

    @property
    def visual(self) -> torch.nn.Module:
        return self.model.visual

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def logit_scale(self) -> float:
        return float(self.model.logit_scale.detach().exp().item())


def weights_cache_dir(cache_dir: str | None = None) -> str:
    """Where open_clip keeps downloads (Hugging Face hub cache unless overridden)."""
    if cache_dir:
        return cache_dir
    hub = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME", os.path.expanduser("~/.cache/huggingface")), "hub"
    )
    return hub


def cached_weights_path(tag_cfg: dict, cache_dir: str | None) -> str | None:
    """Path of already-downloaded weights for a pretrained tag, or None."""
    hub_id = tag_cfg.get("hf_hub", "")
    if hub_id:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:  # pragma: no cover - open_clip depends on huggingface_hub
            try_to_load_from_cache = None
        if try_to_load_from_cache is not None:
            # 'org/model/' names a repo with open_clip's default file names;
            # 'org/model/file.bin' names the file too.
            repo, filename = os.path.split(hub_id)
            names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
            for name in names:
                hit = try_to_load_from_cache(repo_id=repo, filename=name, cache_dir=cache_dir)
                if isinstance(hit, str) and os.path.isfile(hit):
                    return hit
    url = tag_cfg.get("url", "")
    if url:
        target = os.path.join(cache_dir or os.path.expanduser("~/.cache/clip"), os.path.basename(urlparse(url).path))
        if os.path.isfile(target):
            return target
    return None


def download_host_reachable(tag_cfg: dict, timeout: float) -> tuple[bool, str]:
    """Time-boxed TCP probe of the host a tag downloads from, so offline fails fast."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0") and tag_cfg.get("hf_hub"):
        return False, "HF_HUB_OFFLINE is set"
    host = "huggingface.co" if tag_cfg.get("hf_hub") else urlparse(tag_cfg.get("url", "")).hostname
    endpoint = os.environ.get("HF_ENDPOINT")
    if endpoint and tag_cfg.get("hf_hub"):
        host = urlparse(endpoint).hostname or host
    if not host:
        return False, "no download source for this tag"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True, host
    except OSError as exc:
        return False, f"{host}:443 unreachable ({exc.__class__.__name__}: {exc})"


def _unavailable(name: str, tag: str, reason: str, cache_dir: str | None) -> WeightsUnavailableError:
    return WeightsUnavailableError(
        f"Pretrained weights {name!r} / {tag!r} are not available: {reason}.\n"
        f"  Cache searched: {weights_cache_dir(cache_dir)} (and ~/.cache/clip for URL downloads).\n"
        f"  Fix: connect to the internet once so open_clip can download them, or download the weights file "
        f"elsewhere and pass its path, e.g. pretrained='/path/to/open_clip_model.safetensors' "
        f"(CLI: --pretrained /path/to/file), or use pretrained=None for random weights."
    )


QUICK_GELU_SIDECAR = "open_clip_config.json"
_warned_assumed: set[str] = set()


def uses_quick_gelu(model: torch.nn.Module) -> bool:
    """Whether the vision tower's MLPs use QuickGELU (what OpenAI's CLIP weights were trained with)."""
    return any(type(m).__name__ == "QuickGELU" for m in model.visual.modules())


def _sidecar_quick_gelu(weights: str) -> bool | None:
    """``model_cfg.quick_gelu`` of the ``open_clip_config.json`` beside a weights file
    (Hugging Face open_clip repos ship one), or None when there is none."""
    path = Path(weights).parent / QUICK_GELU_SIDECAR
    if not path.is_file():
        return None
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"pretrained: {path} is not valid JSON ({exc})") from None
    model_cfg = cfg.get("model_cfg") if isinstance(cfg, dict) else None
    if not isinstance(model_cfg, dict):
        raise ValueError(f"pretrained: {path} has no model_cfg mapping")
    return bool(model_cfg.get("quick_gelu", False))


def resolve_quick_gelu(model_name: str, pretrained: str | os.PathLike | None,
                       quick_gelu: bool | None = None) -> tuple[bool, str]:
    """Whether a backbone needs QuickGELU, and where that answer comes from.

    In order: a ``*-quickgelu`` model name; an explicit ``quick_gelu``; random weights
    (plain GELU); an open_clip tag's own flag; the ``open_clip_config.json`` beside a weights
    file; otherwise plain GELU is *assumed* (a warning names the setting, once per file).
    Nothing is downloaded or built.
    """
    if model_name.endswith("-quickgelu"):
        if quick_gelu is False:
            raise ValueError(f"backbone.quick_gelu: false contradicts model_name {model_name!r}, whose config "
                             "uses QuickGELU; drop one of them")
        return True, "model_name"
    if quick_gelu is not None:
        return bool(quick_gelu), "setting"
    if pretrained is None or str(pretrained).lower() in ("", "none", "random"):
        return False, "default"
    p = str(pretrained)
    tag_cfg = oc_pretrained.get_pretrained_cfg(model_name, p)
    if tag_cfg:
        return bool(tag_cfg.get("quick_gelu", False)), "tag"
    if os.path.isfile(p):
        side = _sidecar_quick_gelu(p)
        if side is not None:
            return side, QUICK_GELU_SIDECAR
        key = os.path.abspath(p)
        if key not in _warned_assumed:
            _warned_assumed.add(key)
            print(f"warning: backbone.quick_gelu is not set for the weights file {p} and no {QUICK_GELU_SIDECAR} "
                  "lies beside it: assuming plain GELU. Weights trained by OpenAI need QuickGELU: set "
                  "backbone.quick_gelu: true (CLI --quick-gelu) or use a *-quickgelu model name; the run records "
                  "quick_gelu_source: assumed.", file=sys.stderr, flush=True)
        return False, "assumed"
    return False, "setting"


def _model_info(model: torch.nn.Module, name: str, pretrained: str | None, random_weights: bool,
                quick_gelu: bool, seed: int | None, quick_gelu_source: str | None = None) -> BackboneInfo:
    visual = model.visual
    patch = visual.patch_size[0] if isinstance(visual.patch_size, tuple) else int(visual.patch_size)
    image = visual.image_size[0] if isinstance(visual.image_size, tuple) else int(visual.image_size)
    grid = visual.grid_size
    return BackboneInfo(
        name=name,
        pretrained=pretrained,
        depth=len(visual.transformer.resblocks),
        width=int(visual.class_embedding.shape[0]),
        embed_dim=int(visual.proj.shape[1]),
        image_size=int(image),
        patch_size=int(patch),
        num_patches=int(grid[0] * grid[1]),
        random_weights=random_weights,
        quick_gelu=quick_gelu,
        seed=seed,
        quick_gelu_source=quick_gelu_source,
    )


def load_backbone(
    model_name: str = "ViT-B-32",
    pretrained: str | os.PathLike | None = "openai",
    device: str | torch.device = "cpu",
    *,
    cache_dir: str | None = None,
    seed: int = 0,
    network_timeout: float = 3.0,
    quick_gelu: bool | None = None,
) -> Backbone:
    """Build a frozen open_clip model with its preprocessing and tokenizer.

    ``pretrained`` is an open_clip tag (``"openai"``), a path to a weights file
    (``.safetensors``, or a ``.pt``/``.bin`` read with ``weights_only=True``), or
    ``None``/``"none"`` for random weights drawn from ``seed`` (flagged in ``info``).
    When a tag's weights are neither cached nor reachable this raises
    :class:`WeightsUnavailableError` within ``network_timeout`` seconds.
    ``quick_gelu`` (None: decide as :func:`resolve_quick_gelu` does) switches the MLP
    activation; ``info.quick_gelu`` records what the built model uses and
    ``info.quick_gelu_source`` where that came from.
    """
    register_model_configs()
    if model_name not in open_clip.list_models():
        raise ValueError(f"model_name: unknown open_clip model {model_name!r}; e.g. ViT-B-32, ViT-B-16, {TINY_MODEL}")
    if isinstance(pretrained, str) and pretrained.lower() in ("", "none", "random"):
        pretrained = None
    force_quick_gelu, gelu_source = resolve_quick_gelu(model_name, pretrained, quick_gelu)
    weights_path: str | None = None
    tag: str | None = None
    if pretrained is not None:
        p = str(pretrained)
        tag_cfg = oc_pretrained.get_pretrained_cfg(model_name, p)
        if tag_cfg:
            tag = p
            weights_path = cached_weights_path(tag_cfg, cache_dir)
            if weights_path is None:
                ok, why = download_host_reachable(tag_cfg, network_timeout)
                if not ok:
                    raise _unavailable(model_name, p, why, cache_dir)
                try:
                    weights_path = oc_pretrained.download_pretrained(tag_cfg, cache_dir=cache_dir)
                except Exception as exc:  # network errors come in many types
                    raise _unavailable(model_name, p, f"download failed ({exc})", cache_dir) from exc
        elif os.path.isfile(p):
            suffix = Path(p).suffix.lower()
            if suffix not in (".safetensors", ".pt", ".pth", ".bin"):
                raise ValueError(f"pretrained: {p} has suffix {suffix!r}; expected .safetensors, .pt, .pth or .bin")
            weights_path = p
        elif any(sep in p for sep in ("/", "\\")) or Path(p).suffix:
            raise _unavailable(model_name, p, f"no such file: {p}", cache_dir)
        else:
            tags = open_clip.list_pretrained_tags_by_model(model_name)
            raise ValueError(f"pretrained: {p!r} is neither a known tag for {model_name} ({tags}) nor an existing file")

    with torch.random.fork_rng(devices=[]):
        # Random weights must be reproducible: a run on random weights is only
        # re-loadable if the same backbone can be rebuilt from the recorded seed.
        torch.manual_seed(seed)
        model, _, preprocess = open_clip.create_model_and_transforms(
            model_name, pretrained=None, force_quick_gelu=force_quick_gelu, device="cpu"
        )
    if weights_path is not None:
        try:
            open_clip.load_checkpoint(model, weights_path, weights_only=True)
        except Exception as exc:
            raise ValueError(f"pretrained: could not load weights from {weights_path}: {exc}") from exc
    model.eval()
    for p_ in model.parameters():
        p_.requires_grad_(False)
    model.to(device)
    tokenizer = open_clip.get_tokenizer(model_name)
    info = _model_info(
        model, model_name, tag or (str(pretrained) if pretrained is not None else None),
        random_weights=pretrained is None, quick_gelu=uses_quick_gelu(model),
        seed=seed if pretrained is None else None, quick_gelu_source=gelu_source,
    )
    return Backbone(model=model, preprocess=preprocess, tokenizer=tokenizer, info=info)


def save_backbone_weights(backbone: Backbone, path: str | os.PathLike) -> Path:
    """Write the whole open_clip state dict as safetensors (a file ``load_backbone`` accepts)."""
    from safetensors.torch import save_file

    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in backbone.model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp))
    return path

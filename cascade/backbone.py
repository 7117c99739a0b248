"""Loading a frozen open_clip backbone, with a clear account of where its weights came from."""
from __future__ import annotations

import os
import socket
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

import open_clip
import torch
from huggingface_hub import try_to_load_from_cache
from open_clip import pretrained as oc_pretrained
from safetensors.torch import save_file

from .fileio import atomic_path
from .weights import AUTO, Weights, WeightsError, architecture_of, check_architecture, load_state, read_weights
from .weights import openai as openai_weights
from .weights.configs import TINY_MODEL, register_model_configs
from .weights.finder import hub_cache
from .weights.read import OPEN_CLIP_CONFIG, quick_gelu_of


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights could not be found locally nor downloaded."""


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
    return cache_dir or str(hub_cache())


def cached_weights_path(tag_cfg: dict, cache_dir: str | None) -> str | None:
    """Path of already-downloaded weights for a pretrained tag, or None."""
    hub_id = tag_cfg.get("hf_hub", "")
    if hub_id:
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
            _verify_once(target, url)
            return target
    return None


_verified: set[tuple[str, int, float, str]] = set()


def _verify_once(path: str, url: str) -> None:
    """Check a ``~/.cache/clip`` copy against the SHA-256 in its URL, once per process and file version."""
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime, url)
    if key not in _verified:
        openai_weights.verify(path, url)
        _verified.add(key)


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


QUICK_GELU_SIDECAR = OPEN_CLIP_CONFIG
_warned_assumed: set[str] = set()


def uses_quick_gelu(model: torch.nn.Module) -> bool:
    """Whether the vision tower's MLPs use QuickGELU (what OpenAI's CLIP weights were trained with)."""
    return any(type(m).__name__ == "QuickGELU" for m in model.visual.modules())


def resolve_quick_gelu(model_name: str, pretrained: str | os.PathLike | None,
                       quick_gelu: bool | None = None) -> tuple[bool, str]:
    """Whether a backbone needs QuickGELU, and where that answer comes from.

    In order: a ``*-quickgelu`` model name; an explicit ``quick_gelu``; random weights
    (plain GELU); an open_clip tag's own flag; what the weights' format says (OpenAI's
    TorchScript archives: QuickGELU; a transformers ``config.json``: its ``hidden_act``; the
    ``open_clip_config.json`` beside a weights file); otherwise plain GELU is *assumed* (a
    warning names the setting, once per file). Nothing is downloaded or built.
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
    if os.path.exists(p):
        found, source = quick_gelu_of(p)
        if found is not None:
            return found, source
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

    ``pretrained`` is an open_clip tag (``"openai"``), a weights file or folder, or
    ``None``/``"none"`` for random weights drawn from ``seed`` (flagged in ``info``). Weights
    files are open_clip state dicts (``.safetensors``, or ``.pt``/``.pth``/``.bin`` read with
    ``weights_only=True``), OpenAI's TorchScript ``.pt`` archives (read without running them)
    or Hugging Face transformers ``CLIPModel`` checkpoints (the folder, or its weights file
    with ``config.json`` beside it). ``model_name="auto"`` takes the architecture from the
    weights; a name that disagrees with them is an error naming both.
    When a tag's weights are neither cached nor reachable this raises
    :class:`WeightsUnavailableError` within ``network_timeout`` seconds; weights that cannot
    be read or do not fit raise :class:`cascade.weights.WeightsError`.
    ``quick_gelu`` (None: decide as :func:`resolve_quick_gelu` does) switches the MLP
    activation; ``info.quick_gelu`` records what the built model uses and
    ``info.quick_gelu_source`` where that came from.
    """
    register_model_configs()
    auto = model_name == AUTO
    if not auto and model_name not in open_clip.list_models():
        raise WeightsError(f"model_name: unknown open_clip model {model_name!r}; e.g. ViT-B-32, ViT-B-16, "
                           f"{TINY_MODEL}, or {AUTO} (the architecture of the weights file)")
    if isinstance(pretrained, str) and pretrained.lower() in ("", "none", "random"):
        pretrained = None
    if auto and pretrained is None:
        raise WeightsError(f"model_name: {AUTO} reads the architecture from a weights file or folder; random "
                           "weights (pretrained: none) need a model name such as ViT-B-32")
    weights_path: str | None = None
    tag: str | None = None
    if pretrained is not None:
        p = str(pretrained)
        tag_cfg = None if auto else oc_pretrained.get_pretrained_cfg(model_name, p)
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
        elif os.path.exists(p):
            weights_path = p
        elif any(sep in p for sep in ("/", "\\")) or Path(p).suffix:
            raise _unavailable(model_name, p, f"no such file: {p}", cache_dir)
        elif auto:
            raise WeightsError(f"pretrained: {p!r} is not a weights file or folder; model_name {AUTO} needs one to "
                               "read the architecture from (or name the model, e.g. ViT-B-32)")
        else:
            tags = open_clip.list_pretrained_tags_by_model(model_name)
            raise WeightsError(f"pretrained: {p!r} is neither a known tag for {model_name} ({tags}) nor an "
                               "existing file")

    name, model_cfg, weights = model_name, None, None
    if weights_path is not None:
        weights = read_weights(weights_path, meta=True)
        if auto:
            found = architecture_of(weights.state, weights_path, weights.model_cfg)
            name = found or AUTO
            model_cfg = None if found else weights.model_cfg
        else:
            check_architecture(model_name, weights.state, weights_path, weights.model_cfg)
    # After the weights were read: a file that cannot be used gets its error, not a QuickGELU warning.
    force_quick_gelu, gelu_source = resolve_quick_gelu(model_name, pretrained, quick_gelu)

    with torch.random.fork_rng(devices=[]):
        # Random weights must be reproducible: a run on random weights is only
        # re-loadable if the same backbone can be rebuilt from the recorded seed.
        torch.manual_seed(seed)
        model, preprocess, tokenizer = _create(name, model_cfg, force_quick_gelu)
    if weights is not None:
        _fill(model, weights)
    model.eval()
    for p_ in model.parameters():
        p_.requires_grad_(False)
    model.to(device)
    info = _model_info(
        model, name, tag or (str(pretrained) if pretrained is not None else None),
        random_weights=pretrained is None, quick_gelu=uses_quick_gelu(model),
        seed=seed if pretrained is None else None, quick_gelu_source=gelu_source,
    )
    return Backbone(model=model, preprocess=preprocess, tokenizer=tokenizer, info=info)


def _create(name: str, model_cfg: dict | None, force_quick_gelu: bool) -> tuple[torch.nn.Module, Callable, Callable]:
    """A randomly initialised model, its eval preprocessing and tokenizer: from a registered
    name, or from a model config that came with the weights (a size no registered name has)."""
    if model_cfg is None:
        model, _, preprocess = open_clip.create_model_and_transforms(
            name, pretrained=None, force_quick_gelu=force_quick_gelu, device="cpu")
        return model, preprocess, open_clip.get_tokenizer(name)
    cfg = {**model_cfg, "quick_gelu": bool(force_quick_gelu or model_cfg.get("quick_gelu", False))}
    model = open_clip.CLIP(**cfg)
    size = cfg["vision_cfg"]["image_size"]
    preprocess = open_clip.image_transform(size, is_train=False)
    return model, preprocess, open_clip.SimpleTokenizer(context_length=cfg["text_cfg"]["context_length"])


def _fill(model: torch.nn.Module, weights: Weights) -> None:
    """Load weights read with ``meta=True``: open_clip files through open_clip's own loader
    (which knows its older layouts), converted formats through :func:`load_state`."""
    if weights.format != "open_clip":
        load_state(model, read_weights(weights.path).state, weights.path)
        return
    try:
        open_clip.load_checkpoint(model, weights.path, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - open_clip and torch report misfits with many error types
        first = (str(exc).strip().splitlines() or [""])[0]
        raise WeightsError(f"pretrained: could not load weights from {weights.path}: {first}") from None


def save_backbone_weights(backbone: Backbone, path: str | os.PathLike) -> Path:
    """Write the whole open_clip state dict as safetensors (a file ``load_backbone`` accepts)."""
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in backbone.model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp))
    return path

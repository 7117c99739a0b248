"""The CLIP weights this machine already has, and the ``--pretrained`` value for each.

Searched: the Hugging Face hub cache (``HF_HUB_CACHE``, else ``HF_HOME/hub``, else
``~/.cache/huggingface/hub``: open_clip and transformers repos alike), OpenAI's ``clip``
package cache (``~/.cache/clip``) and the folders listed in ``CASCADE_WEIGHTS_PATH``
(separated like ``PATH``). Only headers and shapes are read, never whole files.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

from . import hf
from .errors import WeightsError
from .infer import AUTO, architecture_of
from .read import SUFFIXES, open_clip_file, read_weights

ENV_PATH = "CASCADE_WEIGHTS_PATH"
SCAN_DEPTH = 3   # folders below each CASCADE_WEIGHTS_PATH entry that are searched


@dataclass(frozen=True)
class FoundWeights:
    """One weights file (or transformers folder) and how to use it."""

    path: str
    location: str                 # hf-hub, clip-cache or CASCADE_WEIGHTS_PATH
    format: str | None            # open_clip, torchscript, transformers; None when unreadable
    architecture: str | None      # a known open_clip name, "custom" (sized by its config), None when unusable
    quick_gelu: bool | None
    bytes: int
    pretrained: str               # the exact --pretrained value
    model: str | None             # the --model value: the architecture, or auto
    error: str | None = None

    @property
    def usable(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def hub_cache(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("HF_HUB_CACHE"):
        return Path(env["HF_HUB_CACHE"]).expanduser()
    home = env.get("HF_HOME") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".cache", "huggingface")
    return Path(home).expanduser() / "hub"


def clip_cache(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(env.get("HOME") or os.path.expanduser("~")).expanduser() / ".cache" / "clip"


def search_paths(env: Mapping[str, str] | None = None) -> list[tuple[str, Path]]:
    """``(location, folder)`` pairs searched, in order."""
    env = os.environ if env is None else env
    extra = [Path(p).expanduser() for p in env.get(ENV_PATH, "").split(os.pathsep) if p.strip()]
    return [("hf-hub", hub_cache(env)), ("clip-cache", clip_cache(env))] + [(ENV_PATH, p) for p in extra]


def _candidates(folder: Path, depth: int) -> Iterator[Path]:
    """Transformers CLIP folders and weights files under ``folder``."""
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return
    if hf.read_config_quiet(folder) is not None:
        yield folder
        return
    inner = open_clip_file(folder)
    if inner is not None:
        yield inner
        return
    for entry in entries:
        if entry.is_file() and entry.suffix.lower() in SUFFIXES and not entry.name.endswith(".index.json"):
            yield entry
        elif entry.is_dir() and depth > 0 and not entry.name.startswith("."):
            yield from _candidates(entry, depth - 1)


def _hub_candidates(hub: Path) -> Iterator[Path]:
    """Each snapshot of each model repo in a Hugging Face hub cache."""
    try:
        repos = sorted(p for p in hub.iterdir() if p.name.startswith("models--"))
    except OSError:
        return
    for repo in repos:
        snapshots = repo / "snapshots"
        if snapshots.is_dir():
            for snap in sorted(snapshots.iterdir()):
                yield from _candidates(snap, 1)


def describe(path: Path, location: str) -> FoundWeights:
    """What a weights file or folder holds; never raises (an unusable file carries its error)."""
    try:
        size = sum(f.stat().st_size for f in path.iterdir() if f.is_file()) if path.is_dir() else path.stat().st_size
    except OSError:
        size = 0
    try:
        w = read_weights(path, meta=True)
        arch = architecture_of(w.state, str(path), w.model_cfg)
    except WeightsError as exc:
        return FoundWeights(str(path), location, None, None, None, size, str(path), None, str(exc))
    return FoundWeights(str(path), location, w.format, arch or "custom", w.quick_gelu, size, str(path),
                        arch or AUTO)


def find_weights(env: Mapping[str, str] | None = None) -> list[FoundWeights]:
    """Every CLIP weights file or transformers folder in the searched places."""
    seen: set[str] = set()
    found = []
    for location, folder in search_paths(env):
        paths = _hub_candidates(folder) if location == "hf-hub" else _candidates(folder, SCAN_DEPTH)
        for path in paths:
            key = os.path.realpath(path)
            if key in seen:
                continue
            seen.add(key)
            found.append(describe(path, location))
    return found

"""Which backbone the dashboard uses: real weights when available, else a demo backbone.

The check is time-boxed end to end (cache look-up, DNS, TCP probe) by running it in a
daemon thread joined with a timeout, so a stuck resolver can never hang the page; it
never raises. When the weights are not cached but their host answers, the download
runs in a background thread (one per process) while the dashboard stays in demo mode.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from open_clip import pretrained as oc_pretrained

from ..backbone import cached_weights_path, download_host_reachable, register_model_configs, weights_cache_dir
from ..weights import AUTO, WeightsError, architecture_of, check_architecture, read_weights
from ..weights.finder import FoundWeights
from .settings import DashboardSettings

State = Literal["cached", "file", "downloadable", "downloading", "unavailable", "disabled", "timeout", "error"]


@dataclass(frozen=True)
class WeightsStatus:
    model_name: str
    pretrained: str | None
    state: State
    detail: str = ""
    path: str | None = None
    seconds: float = 0.0

    @property
    def usable(self) -> bool:
        """Weights can be loaded right now without touching the network."""
        return self.state in ("cached", "file")


@dataclass(frozen=True)
class ModelChoice:
    """The backbone to build: ``pretrained=None`` means random weights (demo mode)."""

    model_name: str
    pretrained: str | None
    demo: bool
    status: WeightsStatus
    banner: str = ""
    seed: int = 0

    @property
    def label(self) -> str:
        weights = "random weights (demo)" if self.pretrained is None else f"{self.pretrained} weights"
        return f"{self.model_name} · {weights}"


def how_to_get_weights(model_name: str, tag: str | None) -> str:
    tag = tag or "openai"
    return (
        f"To use real weights, run once on a machine with internet access "
        f"(`python -c \"import cascade; cascade.load_backbone('{model_name}', '{tag}')\"`) so they land in "
        f"`{weights_cache_dir()}`, or pick weights you already have in the sidebar's **Weights** list (what "
        f"`cascade weights` finds: open_clip files, OpenAI's `.pt` archives, transformers folders) or type their "
        f"path there. `CASCADE_PRETRAINED` sets the default."
    )


def _probe(model_name: str, pretrained: str, timeout: float) -> WeightsStatus:
    """Cache look-up, then a TCP probe of the download host. May block (run in a thread)."""
    register_model_configs()
    if os.path.exists(pretrained):
        try:
            weights = read_weights(pretrained, meta=True)
            if model_name == AUTO:
                architecture_of(weights.state, pretrained, weights.model_cfg)
            else:
                check_architecture(model_name, weights.state, pretrained, weights.model_cfg)
        except WeightsError as exc:
            return WeightsStatus(model_name, pretrained, "error", str(exc))
        return WeightsStatus(model_name, pretrained, "file", f"weights {weights.format} {pretrained}", path=pretrained)
    if model_name == AUTO:
        return WeightsStatus(model_name, pretrained, "error", f"no such weights file or folder: {pretrained}")
    tag_cfg = oc_pretrained.get_pretrained_cfg(model_name, pretrained)
    if not tag_cfg:
        if any(sep in pretrained for sep in ("/", "\\")) or Path(pretrained).suffix:
            return WeightsStatus(model_name, pretrained, "unavailable", f"no such weights file: {pretrained}")
        return WeightsStatus(model_name, pretrained, "error", f"{pretrained!r} is not a pretrained tag of {model_name}")
    path = cached_weights_path(tag_cfg, None)
    if path:
        return WeightsStatus(model_name, pretrained, "cached", f"cached at {path}", path=path)
    ok, why = download_host_reachable(tag_cfg, timeout)
    if ok:
        return WeightsStatus(model_name, pretrained, "downloadable", f"not cached; {why} is reachable")
    return WeightsStatus(model_name, pretrained, "unavailable", f"not cached, and offline: {why}")


def check_weights(model_name: str, pretrained: str | None, timeout: float = 3.0) -> WeightsStatus:
    """Where ``model_name``/``pretrained`` weights stand, within ``timeout`` seconds; never raises."""
    start = time.perf_counter()
    if pretrained is None:
        return WeightsStatus(model_name, None, "disabled", "random weights requested (CASCADE_PRETRAINED=none)")
    box: dict[str, WeightsStatus] = {}

    def work() -> None:
        try:
            box["status"] = _probe(model_name, pretrained, max(0.1, timeout * 0.8))
        except Exception as exc:  # noqa: BLE001 - the check must never take the dashboard down
            box["status"] = WeightsStatus(model_name, pretrained, "error", f"{type(exc).__name__}: {exc}")

    thread = threading.Thread(target=work, name="cascade-weights-check", daemon=True)
    thread.start()
    thread.join(timeout)
    status = box.get("status") or WeightsStatus(model_name, pretrained, "timeout",
                                                 f"the weights check took longer than {timeout:g} s")
    return WeightsStatus(status.model_name, status.pretrained, status.state, status.detail, status.path,
                         seconds=time.perf_counter() - start)


@dataclass
class Downloader:
    """One background download of a pretrained tag per process."""

    model_name: str
    pretrained: str
    state: Literal["idle", "running", "done", "failed"] = "idle"
    error: str = ""
    path: str | None = None
    started: float = 0.0
    _thread: threading.Thread | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def start(self) -> None:
        with self._lock:
            if self.state in ("running", "done"):
                return
            self.state, self.error, self.started = "running", "", time.time()
            self._thread = threading.Thread(target=self._run, name="cascade-weights-download", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            tag_cfg = oc_pretrained.get_pretrained_cfg(self.model_name, self.pretrained)
            self.path = oc_pretrained.download_pretrained(tag_cfg)
            self.state = "done"
        except Exception as exc:  # noqa: BLE001 - reported on the page
            self.error = f"{type(exc).__name__}: {exc}"
            self.state = "failed"


def choose_model(settings: DashboardSettings, status: WeightsStatus | None = None,
                 demo_model: str | None = None, downloader: Downloader | None = None) -> ModelChoice:
    """Real weights when usable now; otherwise the demo backbone with a banner saying why."""
    if status is None:
        status = check_weights(settings.model_name, settings.pretrained, settings.weights_timeout)
    if status.usable:
        return ModelChoice(settings.model_name, settings.pretrained, demo=False, status=status)
    demo = demo_model or settings.demo_model
    if status.state == "disabled":
        why = "random weights were requested (`CASCADE_PRETRAINED=none`)"
    elif status.state in ("downloadable", "downloading"):
        state = downloader.state if downloader is not None else "idle"
        if state == "failed":
            why = f"downloading `{settings.pretrained}` weights failed ({downloader.error})"
        else:
            why = (f"the `{settings.pretrained}` weights for {settings.model_name} are downloading in the background; "
                   "reload the page when they are done")
    else:
        why = f"the `{settings.pretrained}` weights for {settings.model_name} are unavailable ({status.detail})"
    banner = (
        f"**Demo mode** — {why}. The dashboard runs on a **{demo} backbone with random weights**: "
        f"every page works, but predictions and metrics are meaningless. "
        + how_to_get_weights(settings.model_name, settings.pretrained)
    )
    return ModelChoice(demo, None, demo=True, status=status, banner=banner)


DEFAULT_WEIGHTS = "default"   # what CASCADE_MODEL / CASCADE_PRETRAINED say
TYPED_WEIGHTS = "typed"       # a path typed in the sidebar


def weights_options(settings: DashboardSettings, found: list[FoundWeights]) -> dict[str, str]:
    """Sidebar weights choices, key → label: the environment's default, each usable weights file
    found on this machine (keyed by its ``--pretrained`` value), and a typed path."""
    default = f"{settings.model_name} · {settings.pretrained or 'random weights'} (default)"
    options = {DEFAULT_WEIGHTS: default}
    for f in found:
        if f.usable:
            gelu = "QuickGELU" if f.quick_gelu else "GELU"
            options[f.pretrained] = f"{f.architecture} · {f.format} · {gelu} · {f.path}"
    options[TYPED_WEIGHTS] = "Type a path…"
    return options


def apply_weights_choice(settings: DashboardSettings, choice: str, typed: str,
                         found: list[FoundWeights]) -> DashboardSettings:
    """The settings with the sidebar's weights choice in place of ``CASCADE_MODEL`` / ``CASCADE_PRETRAINED``:
    a found file uses the architecture it holds; a typed path uses ``auto``."""
    if choice == TYPED_WEIGHTS:
        path = typed.strip()
        return replace(settings, model_name=AUTO, pretrained=os.path.expanduser(path)) if path else settings
    for f in found:
        if f.usable and f.pretrained == choice:
            return replace(settings, model_name=f.model or AUTO, pretrained=f.pretrained)
    return settings

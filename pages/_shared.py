"""Streamlit glue shared by ``app.py`` and the pages: cached resources, sidebar, context.

Every piece of logic lives in :mod:`cascade.dashboard` and (through :mod:`pages._analysis`)
:mod:`analysis`; this module only holds things with ``st.cache_resource`` (process-wide:
models, data, the job registry), the sidebar that chooses model, data and runs folder and
the demo banner (both drawn once per run by ``app.py``), and :func:`context`, where every
page reads the session's choices.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import streamlit as st

from cascade import load_backbone
from cascade.dashboard.datasets import (SOURCE_LABELS, LoadedData, default_emotion6_root, load_data,
                                        make_data_config)
from cascade.dashboard.inspect import content_index
from cascade.dashboard.jobs import JobRegistry
from cascade.dashboard.models import checkpoint_backbone, fresh_model, load_run_checkpoint
from cascade.dashboard.settings import DEMO_MODELS, DashboardSettings, configure_torch_threads
from cascade.dashboard.sources import UNTRAINED
from cascade.dashboard.weights import (DEFAULT_WEIGHTS, TYPED_WEIGHTS, Downloader, ModelChoice, WeightsStatus,
                                       apply_weights_choice, check_weights, choose_model, weights_options)
from cascade.data import DataConfig
from cascade.runfolder import training_checkpoints
from cascade.weights.finder import FoundWeights, find_weights
from pages._analysis import checkpoint_drift, checkpoint_features, sigma_bundle, untrained_features, zero_prompt_model

CTX_KEY = "_cascade_ctx"
# Sidebar choices mirrored in the URL (session key -> query parameter), so a reload or a
# shared link opens with the same data, backbone and runs folder.
SIDEBAR_PARAMS = {"sb_demo_model": "backbone", "sb_data_kind": "data", "sb_data_path": "path",
                  "sb_synthetic_size": "images", "sb_runs_dir": "runs"}
configure_torch_threads()  # once per server process (this module is imported once)


# ---- process-wide resources --------------------------------------------------------------
@st.cache_resource(show_spinner=False)
def job_registry() -> JobRegistry:
    return JobRegistry()


@st.cache_resource(show_spinner=False, ttl=300)
def weights_status(model_name: str, pretrained: str | None, timeout: float) -> WeightsStatus:
    return check_weights(model_name, pretrained, timeout)


@st.cache_data(show_spinner=False, ttl=60)
def found_weights() -> list[FoundWeights]:
    return find_weights()


@st.cache_resource(show_spinner=False)
def downloader(model_name: str, pretrained: str) -> Downloader:
    return Downloader(model_name, pretrained)


@st.cache_resource(show_spinner="Loading the backbone…", max_entries=4)
def get_backbone(name: str, pretrained: str | None, seed: int, device: str, quick_gelu: bool | None = None,
                 frozen_dtype: str = "fp32"):  # noqa: ARG001 - frozen_dtype: one backbone per blocks' dtype
    """A loaded backbone, shared by the models built on it. A run trained with bf16 blocks
    converts its backbone's blocks when loaded, so it gets its own (``frozen_dtype`` keys it)."""
    logging.getLogger().setLevel(logging.ERROR)
    return load_backbone(name, pretrained, device=device, seed=seed, network_timeout=3.0, quick_gelu=quick_gelu)


@st.cache_resource(show_spinner="Building the model (class texts are encoded once, then cached on disk)…",
                   max_entries=8)
def get_fresh_model(name: str, pretrained: str | None, seed: int, device: str, classnames: tuple[str, ...],
                    preset: str):
    backbone = get_backbone(name, pretrained, seed, device)
    return fresh_model(backbone, list(classnames), preset=preset, seed=seed)


@st.cache_resource(show_spinner="Loading the checkpoint…", max_entries=8)
def get_checkpoint_run(path: str, mtime: float, device: str):  # noqa: ARG001 - mtime: reload on change
    """A run's checkpoint as :func:`cascade.runfolder.load_run` loads it (the run's frozen dtype applied)."""
    spec, frozen_dtype = checkpoint_backbone(path)
    backbone = get_backbone(spec.name, spec.pretrained, spec.seed, device, spec.quick_gelu, frozen_dtype)
    return load_run_checkpoint(path, backbone)


def get_checkpoint_model(path: str, mtime: float, device: str):
    return get_checkpoint_run(path, mtime, device).model


@st.cache_resource(show_spinner="Scanning the data…", max_entries=6)
def get_data(config_json: str) -> LoadedData:
    return load_data(DataConfig.model_validate_json(config_json))


@st.cache_resource(show_spinner="Indexing the data set's image files…", max_entries=4)
def get_content_index(config_json: str):
    return content_index(get_data(config_json).index)


FEATURES_SPINNER = "Extracting per-block features once (then cached on disk)…"


@st.cache_resource(show_spinner=FEATURES_SPINNER, max_entries=12)
def get_checkpoint_features(path: str, mtime: float, split: str, which: str, device: str):
    """All-block features of a checkpoint's model (``which="run"``) or of frozen CLIP (``"frozen"``)."""
    return checkpoint_features(get_checkpoint_run(path, mtime, device), split, which, device)


@st.cache_resource(show_spinner=FEATURES_SPINNER, max_entries=12)
def get_untrained_features(name: str, pretrained: str | None, seed: int, device: str, data_json: str, split: str,
                           which: str):
    data = get_data(data_json)
    model = get_fresh_model(name, pretrained, seed, device, tuple(data.classnames), "b32-4stage")
    return untrained_features(model if which == "run" else zero_prompt_model(model), data, split, all_blocks=True)


@st.cache_resource(show_spinner="Preparing the σ sweep…", max_entries=6)
def get_sigma_bundle(source: str, mtime: float, split: str, model_key: tuple, data_json: str, device: str):
    if source == UNTRAINED:
        name, pretrained, seed = model_key
        data = get_data(data_json)
        model = get_fresh_model(name, pretrained, seed, device, tuple(data.classnames), "b32-4stage")
        fs = get_untrained_features(name, pretrained, seed, device, data_json, split, "run")
        return sigma_bundle(model, fs, label=f"untrained b32-4stage on {name}", checkpoint=None, split=split)
    model = get_checkpoint_model(source, mtime, device)
    fs = get_checkpoint_features(source, mtime, split, "run", device)
    p = Path(source)
    return sigma_bundle(model, fs, label=f"{p.parent.parent.name} · {p.stem}", checkpoint=p, split=split)


@st.cache_resource(show_spinner="Computing drift over the run's checkpoints (features are cached on disk)…",
                   max_entries=4)
def get_checkpoint_drift(run_dir: str, stamp: tuple, split: str, device: str):  # noqa: ARG001 - stamp: reload
    return checkpoint_drift(run_dir, split, device)


# ---- the per-session context (chosen in the sidebar) ---------------------------------------
@dataclass
class Context:
    settings: DashboardSettings
    choice: ModelChoice
    runs_dir: Path
    data_config: Any | None          # cascade.data.DataConfig
    data_error: str | None

    @property
    def device(self) -> str:
        return self.settings.device

    def data(self) -> LoadedData | None:
        """The sidebar's data set (scanned once per process), or None after showing the error."""
        if self.data_config is None:
            st.error(f"Data: {self.data_error}")
            return None
        try:
            return get_data(self.data_config.model_dump_json())
        except Exception as exc:  # noqa: BLE001 - DataError and friends: shown, never a crash
            st.error(f"Data could not be loaded: {exc}")
            return None

    def backbone(self):
        c = self.choice
        return get_backbone(c.model_name, c.pretrained, c.seed, self.device)

    def zero_shot_model(self, classnames: list[str], preset: str = "zeroshot"):
        c = self.choice
        return get_fresh_model(c.model_name, c.pretrained, c.seed, self.device, tuple(classnames), preset)

    def _model_key(self) -> tuple:
        return (self.choice.model_name, self.choice.pretrained, self.choice.seed)

    def _data_json(self) -> str:
        if self.data_config is None:
            raise ValueError(f"data: {self.data_error}")
        return self.data_config.model_dump_json()

    def sigma_bundle(self, source: str | os.PathLike, split: str):
        """A σ-tuner bundle for a checkpoint path, or for ``"untrained"`` (sidebar data)."""
        if str(source) == UNTRAINED:
            return get_sigma_bundle(UNTRAINED, 0.0, split, self._model_key(), self._data_json(), self.device)
        p = Path(source)
        return get_sigma_bundle(str(p), p.stat().st_mtime, split, (), "", self.device)

    def features(self, source: str | os.PathLike, split: str, which: str = "run"):
        """All-block features of a source (checkpoint path or ``"untrained"``) or of its frozen CLIP."""
        if str(source) == UNTRAINED:
            name, pretrained, seed = self._model_key()
            return get_untrained_features(name, pretrained, seed, self.device, self._data_json(), split, which)
        p = Path(source)
        return get_checkpoint_features(str(p), p.stat().st_mtime, split, which, self.device)

    def source_model(self, source: str | os.PathLike):
        """The model of a source: a checkpoint's, or the untrained b32-4stage cascade on the sidebar data."""
        if str(source) == UNTRAINED:
            data = get_data(self._data_json())
            return self.zero_shot_model(data.classnames, "b32-4stage")
        return self.checkpoint_model(source)

    def checkpoint_drift(self, run_dir: str | os.PathLike, split: str):
        stamp = tuple((p.name, p.stat().st_mtime) for p, _ in training_checkpoints(run_dir))
        return get_checkpoint_drift(str(run_dir), stamp, split, self.device)

    def checkpoint_model(self, path: str | os.PathLike):
        p = Path(path)
        return get_checkpoint_model(str(p), p.stat().st_mtime, self.device)


def _leave_legacy_pages_mode() -> None:
    """Make sure ``app.py``'s ``st.navigation`` is in charge.

    Streamlit (still in 1.67: ``PagesManager.uses_pages_directory``, read by the script
    runner) treats an app with a ``pages/`` folder beside it as a legacy multipage app until
    ``st.navigation`` is first called in the server process. So the very first request a
    fresh server gets for a deep link such as ``/overview`` runs ``pages/overview.py`` on its
    own, without ``app.py`` (no sidebar, no context), with a navigation listing every file in
    ``pages/``. Streamlit offers no setting for this and the folder keeps its name (the
    layout the users asked for), so the flag is switched off here, once, and the run
    restarts: the rerun starts from ``app.py``. The flag is an internal; if it is gone,
    there is nothing to switch off.
    """
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:  # pragma: no cover - internal layout changed: nothing to fix
        return
    if getattr(PagesManager, "uses_pages_directory", False) and not st.session_state.get("_left_v1_pages"):
        st.session_state["_left_v1_pages"] = True
        PagesManager.uses_pages_directory = False
        st.rerun()


def context() -> Context:
    """The session's context (model, data, runs folder), chosen in the sidebar ``app.py`` draws.

    Every page starts here. ``app.py`` draws the sidebar and the demo banner once per run,
    before the page runs, and stores the context; a page never draws them itself.
    """
    _leave_legacy_pages_mode()
    ctx = st.session_state.get(CTX_KEY)
    if ctx is None:  # a page file run on its own, not through app.py
        st.error("Start the dashboard with `streamlit run app.py`: the pages run inside it.")
        st.stop()
    return ctx


def render_sidebar() -> Context:
    """Model status, data source and runs folder; returns (and stores) the session's context.

    Drawn by ``app.py`` on every run, whichever page is open."""
    ss = st.session_state
    found = found_weights()
    settings = DashboardSettings.from_env()
    weight_options = weights_options(settings, found)
    ss.setdefault("sb_weights", DEFAULT_WEIGHTS)
    ss.setdefault("sb_weights_path", "")
    if ss["sb_weights"] not in weight_options:   # a file that is gone since it was picked
        ss["sb_weights"] = DEFAULT_WEIGHTS
    settings = apply_weights_choice(settings, ss["sb_weights"], ss["sb_weights_path"], found)
    status = weights_status(settings.model_name, settings.pretrained, settings.weights_timeout)
    dl = None
    if status.state == "downloadable" and settings.pretrained:
        dl = downloader(settings.model_name, settings.pretrained)
        if dl.state == "idle":  # once per process; a failure is reported, not retried on every rerun
            dl.start()
        if dl.state == "done":
            weights_status.clear()
            status = check_weights(settings.model_name, settings.pretrained, settings.weights_timeout)
    demo_default = settings.demo_model if settings.demo_model in DEMO_MODELS else DEMO_MODELS[0]
    # The chosen values live under "sb_*"; the widgets use "w_sb_*" keys that are re-seeded
    # from them on every run and copy back only when the user changes them, so the choices
    # live in the session, whatever happens to the widgets' own state. A new session (a
    # reload) starts from the URL's query parameters.
    defaults = {"sb_demo_model": demo_default, "sb_data_kind": "synthetic", "sb_data_path": "",
                "sb_synthetic_size": settings.synthetic_size, "sb_runs_dir": str(settings.runs_dir)}
    for name, default in defaults.items():
        if name not in ss:
            ss[name] = _from_query(name, default)

    def bound(kind, label: str, name: str, *args, **kwargs):
        widget_key = f"w_{name}"
        ss[widget_key] = ss[name]
        return kind(label, *args, key=widget_key, on_change=_store, args=(widget_key, name), **kwargs)

    sb = st.sidebar
    sb.subheader("Model")
    bound(sb.selectbox, "Weights", "sb_weights", list(weight_options), format_func=weight_options.get,
          help="CLIP weights found on this machine (as `cascade weights` lists them), or a typed path. "
               "The default comes from CASCADE_MODEL / CASCADE_PRETRAINED.")
    if ss["sb_weights"] == TYPED_WEIGHTS:
        bound(sb.text_input, "Weights path", "sb_weights_path",
              placeholder="~/.cache/clip/ViT-B-32.pt, a .safetensors file or a transformers folder")
    if status.usable:
        sb.success(f"{settings.model_name} · `{settings.pretrained}` weights", icon=":material/check_circle:")
    else:
        if status.state == "error" and settings.pretrained:
            sb.error(status.detail, icon=":material/error:")
        sb.warning("Demo mode: random weights", icon=":material/science:")
        bound(sb.selectbox, "Demo backbone", "sb_demo_model", DEMO_MODELS,
              help="ViT-B-32: real size (slower on CPU). cascade-tiny: 12 blocks of width 64, "
                   "64-px images — fast. Default from CASCADE_DEMO_MODEL.")
    sb.caption(f"Weights check: {status.state} ({status.seconds * 1000:.0f} ms)")
    sb.subheader("Data")
    bound(sb.selectbox, "Source", "sb_data_kind", list(SOURCE_LABELS), format_func=SOURCE_LABELS.get)
    kind = ss["sb_data_kind"]
    if kind == "synthetic":
        bound(sb.number_input, "Synthetic images", "sb_synthetic_size", min_value=24, max_value=20000, step=100)
    else:
        if kind == "emotion6" and not ss["sb_data_path"]:
            ss["sb_data_path"] = default_emotion6_root()
        placeholder = {"manifest": "path/to/manifest.csv",
                       "webdataset": "path/to/train-{000000..000009}.tar"}.get(kind, "path/to/folder")
        bound(sb.text_input, "Path", "sb_data_path", placeholder=placeholder)
    sb.subheader("Runs")
    bound(sb.text_input, "Runs folder", "sb_runs_dir", help="Folder of run folders (CASCADE_RUNS_DIR)")
    active = job_registry().active()
    if active:
        sb.caption("Training now: " + ", ".join(f"`{j.name}`" for j in active))

    demo_model = ss["sb_demo_model"] if ss["sb_demo_model"] in DEMO_MODELS else demo_default
    choice = choose_model(settings, status, demo_model=demo_model, downloader=dl)
    data_config, data_error = None, None
    try:
        data_config = make_data_config(ss["sb_data_kind"], ss["sb_data_path"],
                                       synthetic_size=int(ss["sb_synthetic_size"]))
    except Exception as exc:  # noqa: BLE001 - shown on the pages that need data
        data_error = str(exc)
    _to_query(defaults)
    runs_dir = Path(os.path.expanduser(str(ss["sb_runs_dir"]).strip() or "runs"))
    ctx = Context(settings=settings, choice=choice, runs_dir=runs_dir, data_config=data_config,
                  data_error=data_error)
    ss[CTX_KEY] = ctx
    return ctx


def _store(widget_key: str, name: str) -> None:
    st.session_state[name] = st.session_state[widget_key]


def _from_query(name: str, default: Any) -> Any:
    """The URL's value of a sidebar choice when it is one the sidebar could have set, else ``default``."""
    raw = st.query_params.get(SIDEBAR_PARAMS[name])
    if raw is None:
        return default
    if name == "sb_demo_model":
        return raw if raw in DEMO_MODELS else default
    if name == "sb_data_kind":
        return raw if raw in SOURCE_LABELS else default
    if name == "sb_synthetic_size":
        try:
            return min(20000, max(24, int(raw)))
        except ValueError:
            return default
    return raw


def _to_query(defaults: dict[str, Any]) -> None:
    """Mirror the sidebar's choices that differ from the defaults in the URL (and only those)."""
    qp, ss = st.query_params, st.session_state
    for name, param in SIDEBAR_PARAMS.items():
        value = str(ss[name])
        if value != str(defaults[name]):
            if qp.get(param) != value:
                qp[param] = value
        elif param in qp:
            del qp[param]


def follow_job(render: Callable[[], None], alive: Callable[[], bool], every: float = 1.0) -> None:
    """Draw ``render()`` now and again every ``every`` seconds while ``alive()``; once it turns
    false, one full rerun draws the page's final state (tables, results) without a reload.

    Train and Compare follow their background jobs with it; call it after the code that
    may start a job, so a job started in this script run is followed at once.
    """
    live = alive()

    @st.fragment(run_every=every if live else None)
    def followed() -> None:
        render()
        if live and not alive():
            st.rerun(scope="app")

    followed()


DEMO_SHORT = "Demo mode: random weights — predictions and metrics say nothing about CLIP"


def demo_banner(ctx: Context, page: str) -> None:
    """The demo-mode notice: in full on the first page a session shows (``page``: the open
    page's id), until "Got it" is pressed or another page is opened; collapsed to one line
    after that."""
    if not ctx.choice.demo:
        return
    ss = st.session_state
    first = ss.setdefault("demo_banner_page", page)
    if not ss.get("demo_banner_read") and first == page:
        box = st.warning(ctx.choice.banner, icon=":material/science:")
        if st.button("Got it", key="demo_banner_ok", help="Collapse this notice for the rest of the session"):
            ss["demo_banner_read"] = True
            box.empty()
            st.rerun()
        return
    ss["demo_banner_read"] = True
    with st.expander(DEMO_SHORT, icon=":material/science:"):
        st.markdown(ctx.choice.banner)

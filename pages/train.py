"""Train: a form for a small run, Start / Stop, live progress, loss and val curves.

Training runs in a worker process owned by the process-wide job registry; this page only
starts it and reads the run folder's ``metrics.jsonl``. Reloading or leaving the page
neither stops nor duplicates the run (the URL's ``?run=`` re-attaches to it).
"""
from __future__ import annotations

import uuid

import pandas as pd
import streamlit as st

from cascade.dashboard.datasets import SOURCE_LABELS, make_data_config
from cascade.dashboard.jobs import JobError
from cascade.dashboard.progress import read_progress
from cascade.dashboard.runs import RunNameError, list_runs, safe_run_dir
from cascade.dashboard.trainform import TRAIN_METHODS, TRAIN_PRESETS, TrainRequest, build_run_config, default_run_name
from pages._shared import context, job_registry

ctx = context()
reg = job_registry()
ss = st.session_state
ss.setdefault("train_session", uuid.uuid4().hex[:8])
st.title("Train")
choice = ctx.choice
st.caption(f"Backbone for new runs: **{choice.label}**. Runs are written to `{ctx.runs_dir}` exactly as "
           "`cascade train` writes them.")
if choice.demo and choice.model_name == "ViT-B-32":
    st.info("ViT-B-32 trains slowly on a CPU; pick the `cascade-tiny` demo backbone in the sidebar for a run "
            "that finishes in seconds.", icon=":material/speed:")

defaults = TrainRequest()
with st.form("train_form"):
    st.subheader("New run")
    c1, c2, c3 = st.columns(3)
    name_key = f"train_run_name_{ss.setdefault('train_started', 0)}"
    ss.setdefault(name_key, default_run_name())
    name = c1.text_input("Run name", key=name_key,
                         help="Letters, digits, '.', '_' and '-'; anything else becomes '-'.")
    method = c2.selectbox("Method", TRAIN_METHODS, index=0)
    preset = c3.selectbox("Preset", [*TRAIN_PRESETS, "custom"], index=0)
    custom = st.text_input("Custom stages (when preset is custom)", value="1-4,5-8,9-11,12")

    st.markdown("**Data**")
    d1, d2, d3 = st.columns([2, 3, 1])
    kinds = list(SOURCE_LABELS)
    data_kind = d1.selectbox("Data source", kinds, index=kinds.index(ss.get("sb_data_kind", "synthetic")),
                             format_func=SOURCE_LABELS.get)
    data_path = d2.text_input("Data path (not for synthetic)", value=ss.get("sb_data_path", ""))
    synthetic_size = d3.number_input("Synthetic images", 24, 20000, int(ss.get("sb_synthetic_size", 600)), step=60)

    st.markdown("**Prompts and NGA**")
    p1, p2, p3 = st.columns(3)
    tokens = p1.number_input("Prompt tokens per stage", 0, 64, defaults.prompt_tokens)
    sigma_init = p2.number_input("σ init", 0.01, 100.0, defaults.sigma_init, format="%.3f")
    sigma_learnable = p3.checkbox("σ learnable", value=defaults.sigma_learnable)

    st.markdown("**Loss and schedule**")
    l1, l2, e1, e2, e3 = st.columns(5)
    lambda_dist = l1.number_input("λ_dist", 0.0, 100.0, defaults.lambda_dist, format="%.3f")
    alpha = l2.number_input("α (consistency)", 0.0, 100.0, defaults.alpha, format="%.3f")
    ep_w = e1.number_input("Epochs: warm-up", 0, 100, defaults.epochs_warmup)
    ep_u = e2.number_input("Epochs: unfreeze", 0, 100, defaults.epochs_unfreeze)
    ep_g = e3.number_input("Epochs: global", 0, 100, defaults.epochs_global)

    st.markdown("**Learning rates and batches**")
    r1, r2, r3, r4, r5 = st.columns(5)
    lr_prompts = r1.number_input("lr prompts", 0.0, 1.0, defaults.lr_prompts, step=1e-4, format="%.1e")
    lr_nga = r2.number_input("lr σ (NGA)", 0.0, 1.0, defaults.lr_nga, step=1e-4, format="%.1e")
    lr_fusion = r3.number_input("lr λ (fusion)", 0.0, 1.0, defaults.lr_fusion, step=1e-4, format="%.1e")
    lr_heads = r4.number_input("lr heads", 0.0, 1.0, defaults.lr_heads, step=1e-4, format="%.1e")
    lr_classifier = r5.number_input("lr classifier", 0.0, 1.0, defaults.lr_classifier, step=1e-4,
                                    format="%.1e")
    b1, b2, _ = st.columns([1, 1, 3])
    batch_size = b1.number_input("Batch size", 1, 1024, defaults.batch_size)
    seed = b2.number_input("Seed", 0, 2**31 - 1, defaults.seed)
    start = st.form_submit_button("Start training", type="primary", icon=":material/play_arrow:")

if start:
    try:
        data_config = make_data_config(data_kind, data_path, synthetic_size=int(synthetic_size))
        req = TrainRequest(
            name=name, method=method, preset=custom if preset == "custom" else preset, prompt_tokens=int(tokens),
            sigma_init=float(sigma_init), sigma_learnable=bool(sigma_learnable), lambda_dist=float(lambda_dist),
            alpha=float(alpha), epochs_warmup=int(ep_w), epochs_unfreeze=int(ep_u), epochs_global=int(ep_g),
            lr_prompts=float(lr_prompts), lr_nga=float(lr_nga), lr_fusion=float(lr_fusion),
            lr_heads=float(lr_heads), lr_classifier=float(lr_classifier), batch_size=int(batch_size),
            seed=int(seed))
        cfg = build_run_config(req, model_name=choice.model_name, pretrained=choice.pretrained,
                               backbone_seed=choice.seed, data_config=data_config, runs_dir=str(ctx.runs_dir),
                               device=ctx.device)
        job = reg.start(cfg, ctx.runs_dir, cfg.run.name, owner=ss["train_session"])
    except (JobError, RunNameError, ValueError) as exc:
        st.error(f"Could not start: {exc}")
    else:
        ss["train_follow"] = job.name
        ss["train_started"] += 1  # the next form gets a fresh default name
        st.query_params["run"] = job.name
        st.success(f"Started `{job.name}` (worker pid {job.pid}).")

# ---- which run to follow -----------------------------------------------------------------
st.subheader("Progress")
candidates = [j.name for j in reg.active()]
candidates += [r.name for r in list_runs(ctx.runs_dir)[:20] if r.name not in candidates]
follow = ss.get("train_follow") or st.query_params.get("run")
if follow and follow not in candidates:
    candidates.insert(0, follow)
if not candidates:
    st.info("No run yet: fill in the form and press **Start training**.")
    st.stop()
index = candidates.index(follow) if follow in candidates else 0
picked = st.selectbox("Run", candidates, index=index, key=f"train_pick_{follow}")
if picked != follow:
    ss["train_follow"] = picked
    st.query_params["run"] = picked

try:
    run_dir = safe_run_dir(ctx.runs_dir, picked)
except RunNameError as exc:
    st.error(str(exc))
    st.stop()
job = reg.get(run_dir.name)
live = job is not None and job.alive


@st.fragment(run_every=1.0 if live else None)
def monitor() -> None:
    job = reg.get(run_dir.name)
    p = read_progress(run_dir)
    state = job.state if job is not None else (p.state.state if p.done else "not running")
    label = {"running": "running", "stopping": "stopping…", "finished": "finished", "stopped": "stopped",
             "failed": "FAILED", "killed": "killed", "not running": "not running (no worker in this dashboard)"}[state]
    st.progress(p.fraction, text=f"`{run_dir.name}` — {label} — {p.fraction:.0%} of the planned steps")
    st.markdown(f"Current: {p.describe()}")
    if job is not None and job.alive:
        c1, c2, _ = st.columns([1, 1, 4])
        if c1.button("Stop", icon=":material/stop:", key=f"stop_{run_dir.name}",
                     help="Stop after the current step; the last checkpoint and eval.json are still written."):
            reg.stop(run_dir.name)
        if job.stop_requested and c2.button("Kill now", key=f"kill_{run_dir.name}"):
            reg.stop(run_dir.name, force=True)
    if state == "failed" and job is not None:
        st.error("Training failed — the end of the worker's log:")
        st.code(job.log_tail(25) or "(empty log)")
    if p.random_weights:
        st.caption("Random backbone weights: the numbers say nothing about CLIP.")
    left, right = st.columns(2)
    with left:
        st.markdown("**Training loss**")
        if p.loss:
            df = pd.DataFrame(p.loss).pivot_table(index="step", columns="term", values="value")
            st.line_chart(df, height=280, x_label="step", y_label="loss")
        else:
            st.caption("waiting for the first step…")
    with right:
        st.markdown("**Validation (fused)**")
        if p.val:
            df = pd.DataFrame(p.val)
            df = df[df["stage"] == "fused"].pivot_table(index="epoch", columns="metric", values="value")
            st.line_chart(df, height=280, x_label="epoch", y_label="value")
        else:
            st.caption("after the first epoch…")
    if p.done and p.test:
        fused = (p.test or {}).get("fused") or {}
        if p.partial:
            st.warning(f"Partial run ({p.state.label()}): these test metrics describe a run that did not reach its "
                       "last epoch.", icon=":material/warning:")
        cols = st.columns(4)
        for col, m in zip(cols, ("accuracy", "macro_f1", "uar", "kl")):
            value = fused.get(m)
            col.metric(f"test {m}" + (" (partial)" if p.partial else ""),
                       f"{value:.4f}" if isinstance(value, (int, float)) else "n/a")
    if live and (job is None or not job.alive):
        st.rerun(scope="app")  # the worker ended: one full rerun switches to the static view


monitor()

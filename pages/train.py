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
from cascade.dashboard.jobs import STATE_LABELS, JobError
from cascade.dashboard.runs import RunNameError, finished_first, list_runs, safe_run_dir
from cascade.dashboard.trainform import (CASCADE_FAMILY, CLASSIFIER_INITS, DESCRIPTION_TYPES, FIELD_HELP,
                                        SUPERVISIONS, TRAIN_METHODS, TRAIN_PRESETS, TrainRequest, build_run_config,
                                        default_run_name, save_descriptions_upload, visible_fields)
from cascade.metrics import display_name
from cascade.runfolder import read_progress, run_classnames
from analysis.run_figures import sigma_lambda_figure, training_curves
from pages._exports import chart
from pages._shared import context, follow_job, job_registry

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
HELP = FIELD_HELP


def form_error(message: str) -> None:
    """Every problem with the form shows the same way: one red box naming the field."""
    st.error(message, icon=":material/error:")


st.subheader("New run")
# What these three choose decides which fields below apply, so they sit outside the form
# (widgets inside a form only report on submit).
c1, c2, c3 = st.columns(3)
method = c1.selectbox("Method", TRAIN_METHODS, index=0, key="train_method", help=HELP["method"])
preset = c2.selectbox("Preset", [*TRAIN_PRESETS, "custom"], index=0, key="train_preset", help=HELP["preset"],
                      disabled=method not in CASCADE_FAMILY)
kinds = list(SOURCE_LABELS)
data_kind = c3.selectbox("Data source", kinds, index=kinds.index(ss.get("sb_data_kind", "synthetic")),
                         format_func=SOURCE_LABELS.get, key="train_data_kind", help=HELP["data_kind"])
s1, s2, _ = st.columns(3)
classifier_init = s1.selectbox("Stage 1: classifier from", CLASSIFIER_INITS, index=0, key="train_classifier_init",
                               help=HELP["classifier_init"], disabled=method == "linear-probe")
custom = ss.setdefault("train_custom_stages", "1-4,5-8,9-11,12")
supervision = s2.selectbox("Stage 2: supervision", SUPERVISIONS, index=0, key="train_supervision",
                           help=HELP["supervision"], disabled=method in ("zeroshot", "linear-probe"))
show = visible_fields(method, preset, data_kind, custom, classifier_init=classifier_init, supervision=supervision)
if method not in CASCADE_FAMILY:
    st.caption(f"`{method}` uses its own stages and prompt tokens; fields that do not apply to it are hidden.")

values = {}
with st.form("train_form"):
    f1, f2 = st.columns(2)
    name_key = f"train_run_name_{ss.setdefault('train_started', 0)}"
    ss.setdefault(name_key, default_run_name())
    name = f1.text_input("Run name", key=name_key, help=HELP["name"])
    if "custom_stages" in show:
        custom = f2.text_input("Custom stages", key="train_custom_stages", help=HELP["custom_stages"])
    if "data_path" in show:
        values["data_path"] = f2.text_input("Data path", value=ss.get("sb_data_path", ""), help=HELP["data_path"])
    else:
        values["synthetic_size"] = f2.number_input("Synthetic images", 24, 20000,
                                                   int(ss.get("sb_synthetic_size", 600)), step=60,
                                                   help=HELP["synthetic_size"])

    if {"prompt_tokens", "sigma_init"} & show:
        st.markdown("**Prompts and NGA**")
        p1, p2, p3 = st.columns(3)
        if "prompt_tokens" in show:
            values["prompt_tokens"] = p1.number_input("Prompt tokens per stage", 0, 64, defaults.prompt_tokens,
                                                      help=HELP["prompt_tokens"])
        if "sigma_init" in show:
            values["sigma_init"] = p2.number_input("σ init", 0.01, 100.0, defaults.sigma_init, format="%.3f",
                                                   help=HELP["sigma_init"])
            values["sigma_learnable"] = p3.checkbox("σ learnable", value=defaults.sigma_learnable,
                                                    help=HELP["sigma_learnable"])
    if "lambda_dist" in show:
        st.markdown("**Loss and schedule**")
        l1, l2, e1, e2, e3 = st.columns(5)
        values["lambda_dist"] = l1.number_input("λ_dist", 0.0, 100.0, defaults.lambda_dist, format="%.3f",
                                                help=HELP["lambda_dist"])
        values["alpha"] = l2.number_input("α (consistency)", 0.0, 100.0, defaults.alpha, format="%.3f",
                                          help=HELP["alpha"])
        values["epochs_warmup"] = e1.number_input("Epochs: warm-up", 0, 100, defaults.epochs_warmup,
                                                  help=HELP["epochs_warmup"])
        values["epochs_unfreeze"] = e2.number_input("Epochs: unfreeze", 0, 100, defaults.epochs_unfreeze,
                                                    help=HELP["epochs_unfreeze"])
        values["epochs_global"] = e3.number_input("Epochs: global", 0, 100, defaults.epochs_global,
                                                  help=HELP["epochs_global"])
        st.markdown("**Learning rates**")
        groups = [("lr_prompts", "lr prompts"), ("lr_nga", "lr σ (NGA)"), ("lr_fusion", "lr λ (fusion)"),
                  ("lr_heads", "lr heads"), ("lr_classifier", "lr classifier")]
        groups = [g for g in groups if g[0] in show]
        for col, (key, label) in zip(st.columns(5), groups):
            values[key] = col.number_input(label, 0.0, 1.0, getattr(defaults, key), step=1e-4, format="%.1e",
                                           help=HELP[key])
    upload = None
    if {"descriptions", "shots"} & show:
        st.markdown("**Stage 1: classifier**")
        d1, d2 = st.columns(2)
        if "descriptions" in show:
            values["descriptions"] = d1.text_input("Descriptions file (empty: shipped sentences)", "",
                                                   help=HELP["descriptions"])
            upload = d2.file_uploader("…or upload one", type=DESCRIPTION_TYPES, help=HELP["descriptions_upload"])
        if "shots" in show:
            values["shots"] = d1.number_input("Labelled images per class", 1, 10000, defaults.shots,
                                              help=HELP["shots"])
    if "pseudo_threshold" in show:
        st.markdown("**Stage 2: label-free**")
        values["pseudo_threshold"] = st.columns(3)[0].number_input(
            "Pseudo-label confidence threshold", 0.0, 0.99, defaults.pseudo_threshold, format="%.2f",
            help=HELP["pseudo_threshold"])
    st.markdown("**Batches and what is kept**")
    b1, b2, b3, b4 = st.columns([1, 1, 1, 2])
    batch_size = b1.number_input("Batch size", 1, 1024, defaults.batch_size, help=HELP["batch_size"])
    seed = b2.number_input("Seed", 0, 2**31 - 1, defaults.seed, help=HELP["seed"])
    if "drift_every_k_steps" in show:
        values["drift_every_k_steps"] = b3.number_input("Drift every K steps", 0, 100000,
                                                        defaults.drift_every_k_steps, help=HELP["drift_every_k_steps"])
        values["keep_epoch_checkpoints"] = b4.checkbox("Keep a checkpoint per epoch",
                                                       value=defaults.keep_epoch_checkpoints,
                                                       help=HELP["keep_epoch_checkpoints"])
    start = st.form_submit_button("Start training", type="primary", icon=":material/play_arrow:")

if start:
    try:
        data_config = make_data_config(data_kind, values.get("data_path", ""),
                                       synthetic_size=int(values.get("synthetic_size", 600)))
        fields = {k: v for k, v in values.items() if k not in ("data_path", "synthetic_size")}
        if upload is not None:
            fields["descriptions"] = str(save_descriptions_upload(upload.name, upload.getvalue(),
                                                                  ctx.runs_dir / ".descriptions"))
        req = TrainRequest(name=name, method=method, preset=custom if preset == "custom" else preset,
                           batch_size=int(batch_size), seed=int(seed), classifier_init=classifier_init,
                           supervision=supervision if "supervision" in show else "labels", **fields)
        cfg = build_run_config(req, model_name=choice.model_name, pretrained=choice.pretrained,
                               backbone_seed=choice.seed, data_config=data_config, runs_dir=str(ctx.runs_dir),
                               device=ctx.device)
        job = reg.start(cfg, ctx.runs_dir, cfg.run.name, owner=ss["train_session"])
    except (JobError, RunNameError, ValueError) as exc:
        form_error(f"Not started: {exc}")
    else:
        ss["train_follow"] = job.name
        ss["train_started"] += 1  # the next form gets a fresh default name
        st.query_params["run"] = job.name
        st.success(f"Started `{job.name}` (worker pid {job.pid}).")

# ---- which run to follow -----------------------------------------------------------------
st.subheader("Progress")
candidates = [j.name for j in reg.active() if j.kind == "train"]
labels = {name: f"{name} (training now)" for name in candidates}
for r in finished_first(list_runs(ctx.runs_dir)[:20]):   # runs in the folder: finished first, partial ones say so
    if r.name not in labels:
        candidates.append(r.name)
        labels[r.name] = r.display_name
follow = ss.get("train_follow") or st.query_params.get("run")
if follow and follow not in candidates:
    candidates.insert(0, follow)
if not candidates:
    st.info("No run yet: fill in the form and press **Start training**.")
    st.stop()
index = candidates.index(follow) if follow in candidates else 0
picked = st.selectbox("Run", candidates, index=index, key=f"train_pick_{follow}",
                      format_func=lambda n: labels.get(n, n))
if picked != follow:
    ss["train_follow"] = picked
    st.query_params["run"] = picked

try:
    run_dir = safe_run_dir(ctx.runs_dir, picked)
except RunNameError as exc:
    st.error(str(exc))
    st.stop()


def job_alive() -> bool:
    job = reg.get(run_dir.name)
    return job is not None and job.alive


def monitor() -> None:
    job = reg.get(run_dir.name)
    p = read_progress(run_dir)
    state = job.state if job is not None else (p.state.state if p.done else "not running")
    label = {**STATE_LABELS, "killed": "killed", "not running": "not running (no worker in this dashboard)"}[state]
    if state == "running" and p.activity in ("validating", "testing"):
        label = "validating…" if p.activity == "validating" else "testing…"
    st.progress(p.fraction, text=f"`{run_dir.name}` — {label} — {p.fraction:.0%} of the planned steps")
    stopping = job is not None and job.alive and bool(job.stop_requested)
    st.markdown(f"Current: {p.describe(stopping)}")
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
    if not (p.loss or p.val):
        st.caption("Curves appear after the first logged step." if p.started else "waiting for the first step…")
    else:
        stem = f"training-{run_dir.name}"
        data = pd.concat([pd.DataFrame(p.loss).assign(kind="loss"), pd.DataFrame(p.val).assign(kind="val")],
                         ignore_index=True)
        classes = run_classnames(run_dir)
        chart(lambda paper: training_curves(p.loss, p.val, p.phases, num_classes=len(classes) if classes else None,
                                            paper=paper), f"train_curves_{run_dir.name}",
              stem, data=data, title=f"{run_dir.name}: training loss and val metrics")
        st.caption("Dashed lines: phase boundaries. Each val metric has its own axis; KL is lower-is-better.")
    if p.sigma:
        sl = pd.concat([pd.DataFrame(p.sigma).assign(parameter="sigma"),
                        pd.DataFrame(p.fusion).assign(parameter="lambda")], ignore_index=True)
        chart(lambda paper: sigma_lambda_figure(p.sigma, p.fusion, p.phases, paper=paper),
              f"train_sigma_{run_dir.name}", f"sigma-lambda-{run_dir.name}", data=sl,
              title=f"{run_dir.name}: NGA σ and fusion λ")
    if p.done and p.test:
        fused = (p.test or {}).get("fused") or {}
        if p.partial:
            st.warning(f"Partial run ({p.state.label()}): these test metrics describe a run that did not reach its "
                       "last epoch.", icon=":material/warning:")
        cols = st.columns(4)
        for col, m in zip(cols, ("accuracy", "macro_f1", "uar", "kl")):
            value = fused.get(m)
            col.metric(f"test {display_name(m)}" + (" (partial)" if p.partial else ""),
                       f"{value:.4f}" if isinstance(value, (int, float)) else "n/a",
                       help="n/a: a distribution metric on data with labels only" if m == "kl" else None)


follow_job(monitor, job_alive)

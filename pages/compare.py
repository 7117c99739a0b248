"""Compare: the runs table (metrics first, each run's state), ablation tables with LaTeX/CSV
downloads, ablations started here as background jobs, and per-stage metrics."""
from __future__ import annotations

import uuid

import pandas as pd
import streamlit as st

from analysis.run_figures import stage_bars
from cascade.dashboard.jobs import STATE_LABELS, JobError
from cascade.runfolder import CONFIG, read_ablation_progress
from cascade.dashboard.runs import (RunNameError, ablation_table, list_ablations, list_runs, runs_table,
                                    stage_table)
from cascade.train.ablate import parse_methods
from pages._exports import chart, table
from pages._shared import context, job_registry

ctx = context()
reg = job_registry()
ss = st.session_state
ss.setdefault("compare_session", uuid.uuid4().hex[:8])
st.title("Compare")
st.caption(f"Runs folder: `{ctx.runs_dir}`. Click a column header to sort. Test metrics are of the checkpoint "
           "selected on the validation split; n/a: a distribution metric on data with labels only.")

runs = list_runs(ctx.runs_dir)
ablations = list_ablations(ctx.runs_dir)

# ---- runs, full width ------------------------------------------------------------------------
st.subheader("Runs")
if runs:
    df = pd.DataFrame(runs_table(runs))
    flagged = [r.name for r in runs if r.tuned_on_test]
    if flagged:
        st.warning("σ of some checkpoints was tuned on the **test** split (column “σ tuned on test”): their test "
                   "numbers are not a fair estimate. " + ", ".join(f"`{n}`" for n in flagged),
                   icon=":material/warning:")
    table(df, "compare_runs", "runs", caption="Runs: fused test and val metrics (val-selected checkpoint)")
else:
    st.info("No runs in this folder yet.")

# ---- ablations -------------------------------------------------------------------------------
st.subheader("Ablations")
if ablations:
    ab_name = st.selectbox("Ablation", [a.name for a in ablations])
    ab = next(a for a in ablations if a.name == ab_name)
    if ab.random_weights:
        st.caption("Random backbone weights: the numbers say nothing about CLIP.")
    summary = pd.DataFrame(ablation_table(ab))
    seeds = int(summary["seeds"].max()) if "seeds" in summary and len(summary) else 0
    table(summary, "compare_ablation", f"ablation-{ab.name}", caption=f"Ablation {ab.name}",
          notes=[f"Test split; mean ± sample std over up to {seeds} seed(s). Best value in bold. "
                 f"Significance: `cascade report --ablation {ab.path}` writes significance.csv and marks the table."])
    with st.expander("Every method × seed"):
        table(pd.DataFrame(ab.rows), "compare_ablation_rows", f"ablation-{ab.name}-rows",
              caption=f"Ablation {ab.name}: every method and seed")
else:
    st.info("No ablations yet: start one below, or `cascade ablate --config … --out runs/ablate-<name>`.")


@st.fragment(run_every=2.0 if any(j.kind == "ablation" and j.alive for j in reg.jobs()) else None)
def ablation_jobs() -> None:
    jobs = [j for j in reg.jobs() if j.kind == "ablation"]
    for job in jobs:
        prog = read_ablation_progress(job.run_dir, job.plan["methods"], job.plan["seeds"])
        state = STATE_LABELS[job.state]
        st.progress(prog.fraction, text=f"`{job.name}` — {state} — {prog.describe()}")
        if job.alive:
            if st.button("Stop", key=f"stop_ab_{job.name}", icon=":material/stop:",
                         help="Stop the current run after its step; no further runs start."):
                reg.stop(job.name)
        elif job.state == "failed":
            st.error("The ablation failed — the end of its log:", icon=":material/error:")
            st.code(job.log_tail(20) or "(empty log)")


with st.expander("Start an ablation", icon=":material/play_arrow:", expanded=not ablations):
    bases = [r for r in runs if (r.path / CONFIG).is_file()]
    if not bases:
        st.caption("An ablation starts from a run's configuration: train a run first (Train page).")
    else:
        with st.form("ablation_form"):
            a1, a2, a3 = st.columns([2, 3, 1])
            base_name = a1.selectbox("Base configuration", [r.name for r in bases],
                                     help="Every method × seed is trained on this run's data, backbone, schedule "
                                          "and learning rates, on one shared split.")
            from cascade.methods import METHODS
            methods = a2.multiselect("Methods", list(METHODS), default=["zeroshot", "cascade", "cascade-no-nga"],
                                     help="Baselines and ablations, as `cascade ablate --methods`.")
            n_seeds = a3.number_input("Seeds", 1, 20, 2, help="train.seed, +1, +2, … of the base configuration")
            ab_name_in = st.text_input("Ablation name", value=f"ablate-{pd.Timestamp.now():%Y%m%d-%H%M%S}",
                                       help="Folder under the runs folder; results.json, results.md and runs/ go "
                                            "there, as `cascade ablate --out` writes them.")
            go = st.form_submit_button("Start ablation", type="primary", icon=":material/play_arrow:")
        if go:
            try:
                from cascade.run_config import load_run_config

                base = next(r for r in bases if r.name == base_name)
                cfg = load_run_config(base.path / CONFIG)
                job = reg.start_ablation(cfg, ctx.runs_dir, ab_name_in, parse_methods(methods), int(n_seeds),
                                         owner=ss["compare_session"])
            except (JobError, RunNameError, ValueError) as exc:
                st.error(f"Not started: {exc}", icon=":material/error:")
            else:
                st.success(f"Started `{job.name}`: {len(job.plan['methods'])} method(s) × {job.plan['seeds']} "
                           f"seed(s) (worker pid {job.pid}).")
    ablation_jobs()

# ---- per-stage metrics -----------------------------------------------------------------------
st.subheader("Per-stage metrics (test split)")
pool = {r.name: r for r in runs}
for ab in ablations:
    for r in ab.runs:
        pool[f"{ab.name}/{r.name}"] = r
complete = [name for name, r in pool.items() if r.test]
if not complete:
    st.info("Per-stage metrics appear once a run has been evaluated (its eval.json exists).")
else:
    picked = st.multiselect("Runs", complete, default=complete[: min(3, len(complete))])
    rows = []
    for name in picked:
        label = name if not pool[name].partial else f"{name} (partial: {pool[name].state_label})"
        for row in stage_table(pool[name]):
            rows.append({**row, "run": label})
    if rows:
        df = pd.DataFrame(rows)
        table(df, "compare_stages", "per-stage-metrics", caption="Per-stage test metrics")
        chart(lambda paper: stage_bars(df, metric="accuracy", group="run", paper=paper), "compare_stage_chart",
              "per-stage-accuracy", data=df[["run", "stage", "accuracy"]], title="Test accuracy per stage")

"""Compare: the runs table (metrics first, each run's state), ablation tables with LaTeX/CSV
downloads, ablations started here as background jobs, and per-stage metrics."""
from __future__ import annotations

import uuid

import pandas as pd
import streamlit as st

from analysis.run_figures import stage_bars
from cascade.dashboard.jobs import STATE_LABELS, JobError
from cascade.dashboard.runs import (RunNameError, ablation_table, finished_first, list_ablations, list_runs,
                                    paper_runs_table, runs_table, stage_table)
from cascade.runfolder import CONFIG, read_ablation_progress, run_classnames
from cascade.train.ablate import parse_methods
from pages._exports import chart, table
from pages._shared import context, follow_job, job_registry

ctx = context()
reg = job_registry()
ss = st.session_state
ss.setdefault("compare_session", uuid.uuid4().hex[:8])
st.title("Compare")
st.caption(f"Runs folder: `{ctx.runs_dir}`. Click a column header to sort. The column “test checkpoint” says which "
           "checkpoint each run's test metrics are of: for a finished run the epoch selected on the validation split; "
           "a partial run's are marked so, and never count as best in the exports. n/a: a distribution metric on "
           "data with labels only.")

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
    paper_rows, paper_notes = paper_runs_table(runs)
    table(df, "compare_runs", "runs", caption="Runs: fused test metrics", notes=paper_notes,
          paper=pd.DataFrame(paper_rows), partial=[r.partial for r in runs])
else:
    st.info("No runs in this folder yet.")

# ---- ablations -------------------------------------------------------------------------------
st.subheader("Ablations")
ablation_jobs = [j for j in reg.jobs() if j.kind == "ablation"]
if ablations:
    names = [a.name for a in ablations]
    latest = next((j.name for j in reversed(ablation_jobs) if j.name in names), names[0])
    ab_name = st.selectbox("Ablation", names, index=names.index(latest))
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
elif any(j.alive for j in ablation_jobs):
    st.info("No finished ablation yet: the one running below appears here when it ends.")
else:
    st.info("No ablations yet: start one below, or `cascade ablate --config … --out runs/ablate-<name>`.")


def show_ablation_jobs() -> None:
    for job in [j for j in reg.jobs() if j.kind == "ablation"]:
        prog = read_ablation_progress(job.run_dir, job.plan["methods"], job.plan["seeds"])
        state = STATE_LABELS[job.state]
        stopping = job.alive and bool(job.stop_requested)
        st.progress(prog.fraction, text=f"`{job.name}` — {state} — {prog.describe(stopping)}")
        if job.alive:
            if st.button("Stop", key=f"stop_ab_{job.name}", icon=":material/stop:",
                         help="Stop the current run after its step; no further runs start."):
                reg.stop(job.name)
        elif job.state == "failed":
            st.error("The ablation failed — the end of its log:", icon=":material/error:")
            st.code(job.log_tail(20) or "(empty log)")


def ablation_running() -> bool:
    return any(j.kind == "ablation" and j.alive for j in reg.jobs())


with st.expander("Start an ablation", icon=":material/play_arrow:", expanded=not ablations):
    bases = finished_first([r for r in runs if (r.path / CONFIG).is_file()])
    if not bases:
        st.caption("An ablation starts from a run's configuration: train a run first (Train page).")
    else:
        with st.form("ablation_form"):
            a1, a2, a3 = st.columns([2, 3, 1])
            base_name = a1.selectbox("Base configuration", [r.name for r in bases],
                                     format_func=lambda n: next(r.display_name for r in bases if r.name == n),
                                     help="Every method × seed is trained on this run's data, backbone, schedule "
                                          "and learning rates, on one shared split.")
            from cascade.methods import METHODS
            methods = a2.multiselect("Methods", list(METHODS), default=["zeroshot", "cascade", "cascade-no-nga"],
                                     help="Baselines and ablations, as `cascade ablate --methods`.")
            n_seeds = a3.number_input("Seeds", 1, 20, 2, help="train.seed, +1, +2, … of the base configuration")
            # The default name is fixed once per form (a key in the session): a default that
            # changed on every rerun would make a new widget each time and drop what was typed.
            name_key = f"ablation_name_{ss.setdefault('ablations_started', 0)}"
            ss.setdefault(name_key, f"ablate-{pd.Timestamp.now():%Y%m%d-%H%M%S}")
            ab_name_in = st.text_input("Ablation name", key=name_key,
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
                ss["ablations_started"] += 1   # the next form gets a fresh default name
                st.success(f"Started `{job.name}`: {len(job.plan['methods'])} method(s) × {job.plan['seeds']} "
                           f"seed(s) (worker pid {job.pid}).")
follow_job(show_ablation_jobs, ablation_running, every=2.0)

# ---- per-stage metrics -----------------------------------------------------------------------
st.subheader("Per-stage metrics (test split)")
pool = {r.name: r for r in runs}
for ab in ablations:
    for r in ab.runs:
        pool[f"{ab.name}/{r.name}"] = r
complete = [name for name, r in pool.items() if r.test and not r.partial] + \
    [name for name, r in pool.items() if r.test and r.partial]
if not complete:
    st.info("Per-stage metrics appear once a run has been evaluated (its eval.json exists).")
else:
    finished = [n for n in complete if not pool[n].partial]
    picked = st.multiselect("Runs", complete, default=(finished or complete)[: min(3, len(finished or complete))],
                            format_func=lambda n: n if not pool[n].partial else f"{n} ({pool[n].partial_tag})")
    rows = []
    for name in picked:
        label = name if not pool[name].partial else f"{name} ({pool[name].partial_tag})"
        for row in stage_table(pool[name]):
            rows.append({**row, "run": label})
    if rows:
        df = pd.DataFrame(rows)
        table(df, "compare_stages", "per-stage-metrics", caption="Per-stage test metrics")
        class_counts = {len(names) for name in picked if (names := run_classnames(pool[name].path))}
        chance = class_counts.pop() if len(class_counts) == 1 else None   # one chance level only when the runs agree
        chart(lambda paper: stage_bars(df, metric="accuracy", group="run", num_classes=chance, paper=paper),
              "compare_stage_chart",
              "per-stage-accuracy", data=df[["run", "stage", "accuracy"]], title="Test accuracy per stage")

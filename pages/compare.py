"""Compare: run and ablation tables side by side, sortable, with per-stage metrics."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from cascade.dashboard.runs import ablation_table, list_ablations, list_runs, runs_table, stage_table
from pages._shared import context

ctx = context()
st.title("Compare")
st.caption(f"Runs folder: `{ctx.runs_dir}`. Click a column header to sort. Test metrics are of the checkpoint "
           "selected on the validation split.")

runs = list_runs(ctx.runs_dir)
ablations = list_ablations(ctx.runs_dir)

left, right = st.columns(2)
with left:
    st.subheader("Runs")
    if runs:
        df = pd.DataFrame(runs_table(runs))
        cols = {c: st.column_config.NumberColumn(format="%.4f") for c in df.columns
                if c.startswith(("val ", "test ")) and df[c].dtype.kind == "f"}
        st.dataframe(df, hide_index=True, width="stretch", column_config=cols, key="compare_runs")
    else:
        st.info("No runs in this folder yet.")
with right:
    st.subheader("Ablations")
    if ablations:
        ab_name = st.selectbox("Ablation", [a.name for a in ablations])
        ab = next(a for a in ablations if a.name == ab_name)
        if ab.random_weights:
            st.caption("Random backbone weights: the numbers say nothing about CLIP.")
        table = pd.DataFrame(ablation_table(ab))
        cols = {c: st.column_config.NumberColumn(format="%.4f") for c in table.columns if table[c].dtype.kind == "f"}
        st.dataframe(table, hide_index=True, width="stretch", column_config=cols, key="compare_ablation")
        with st.expander("Every method × seed"):
            st.dataframe(pd.DataFrame(ab.rows), hide_index=True, width="stretch")
    else:
        st.info("No ablations yet: `cascade ablate --config … --out runs/ablate-<name>` writes one here.")

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
        cols = {c: st.column_config.NumberColumn(format="%.4f") for c in df.columns if df[c].dtype.kind == "f"}
        st.dataframe(df, hide_index=True, width="stretch", column_config=cols, key="compare_stages")
        acc = df.pivot_table(index="stage", columns="run", values="accuracy", sort=False)
        st.bar_chart(acc, stack=False, height=300, y_label="test accuracy", sort=False)

"""σ tuner: a log-scale σ slider per stage; metrics recomputed exactly from cached features."""
from __future__ import annotations

import time

import numpy as np
import streamlit as st

from analysis.figures import PALETTE, nga_weight_figure, sigma_sweep_figure
from analysis.sigma import nga_limits, nga_weight_curves
from cascade.dashboard.runs import checkpoint_choices, describe_checkpoint, list_runs
from cascade.dashboard.sources import UNTRAINED, nearest, slider_values, source_id
from cascade.metrics import display_name
from pages._analysis import save_sigma_checkpoint
from pages._exports import chart
from pages._shared import context

ctx = context()
ss = st.session_state
st.title("σ tuner")
st.caption("σ acts after the blocks, so with a model's per-block features cached, the metrics for any σ are "
           "recomputed **exactly** (heads and classifier fixed) — no approximation, no forward pass.")

UNTRAINED_LABEL = "Untrained cascade b32-4stage (current backbone, sidebar data)"
choices = checkpoint_choices(list_runs(ctx.runs_dir))
options = {label: str(path) for label, path in choices}
if ctx.data_config is not None:
    options[UNTRAINED_LABEL] = UNTRAINED
c1, c2 = st.columns([3, 1])
label = c1.selectbox("Model", list(options), help="A run's checkpoint (best, last, or one saved here; finished runs "
                                                  "first), or an untrained model when no run exists yet.")
split = c2.radio("Split", ["val", "test"], horizontal=True, help="Tune on val; test only to report.")
if label is None:
    st.info("No run and no usable data set: train a run or fix the data source in the sidebar.")
    st.stop()
source = options[label]
try:
    bundle = ctx.sigma_bundle(source, split)
except Exception as exc:  # noqa: BLE001 - reported, never a crash
    st.error(f"Could not prepare features: {exc}")
    st.stop()

sid = source_id(f"{source}|{split}")
learned = bundle.learned
n_stages = len(learned)
st.caption(f"{bundle.label}: {bundle.num_samples:,} {split} images, features cached; "
           f"set-up {bundle.setup_seconds * 1000:.0f} ms.")
if source != UNTRAINED:
    st.caption(f"Checkpoint: {describe_checkpoint(source)}.")


def reset() -> None:
    for s in range(n_stages):
        if f"sigma_{sid}_{s}" in ss:
            ss[f"sigma_{sid}_{s}"] = learned[s]


st.subheader("σ per stage")
cols = st.columns(n_stages)
sigmas = []
for s, col in enumerate(cols):
    key = f"sigma_{sid}_{s}"
    blocks = bundle.stage_blocks[s]
    what = f"blocks {blocks[0]}-{blocks[-1]}" if len(blocks) > 1 else f"block {blocks[0]}"
    if len(blocks) == 1 or bundle.model.config.nga == "last":
        # one block (weight 1) or nga "last": σ changes nothing, so it gets no slider
        sigmas.append(float(learned[s]))
        col.markdown(f"**σ stage {s + 1}** ({what})")
        col.caption("no effect: " + ("a one-block stage's weight is 1 for every σ" if len(blocks) == 1
                                     else "this model takes each stage's last block (nga: last)"))
        continue
    values = slider_values(learned[s])
    if key not in ss or ss[key] not in values:
        ss[key] = nearest(values, learned[s])
    with col:
        sigmas.append(float(st.select_slider(f"σ stage {s + 1} ({what})", options=values, key=key,
                                             format_func=lambda v: f"{v:.3g}",
                                             help=f"learned σ = {learned[s]:.4g}; log scale 0.05 … 20")))
st.button("Reset to learned σ", on_click=reset, icon=":material/restart_alt:")

row, ms = bundle.evaluate(sigmas)
base = bundle.learned_metrics()

st.subheader("Metrics at the chosen σ")
m = st.columns(5)
for col, (name, fmt, better) in zip(m, [("accuracy", "{:.4f}", "normal"), ("macro_f1", "{:.4f}", "normal"),
                                        ("uar", "{:.4f}", "normal"), ("kl", "{:.4f}", "inverse"),
                                        ("intersection", "{:.4f}", "normal")]):
    value = row.get(name)
    if value is None or value != value:  # NaN: no distributions
        col.metric(display_name(name), "n/a")
        continue
    diff = value - base[name]
    col.metric(display_name(name), fmt.format(value), f"{diff:+.4f} vs learned" if abs(diff) >= 5e-5 else None,
               delta_color=better)
stage_cols = st.columns(n_stages)
for s, col in enumerate(stage_cols):
    col.metric(display_name(f"stage{s + 1}.accuracy"), f"{row[f'stage{s + 1}.accuracy']:.4f}")
st.caption(f"Recomputed exactly from the cached features of {bundle.num_samples:,} images in **{ms:.1f} ms**.")
ss["sigma_last_ms"] = ms

st.subheader("NGA weights")
curves = nga_weight_curves(bundle.model, [learned, sigmas], labels=["learned σ", "chosen σ"])
chart(lambda paper: nga_weight_figure(curves, nga_limits(bundle.model), highlight="chosen σ", paper=paper),
      "sigma_nga", "nga-weights-chosen-sigma", data=curves, title="NGA weights at the learned and the chosen σ")

st.subheader("Sweeps")
metric = st.selectbox("Metric", ["accuracy", "macro_f1", "uar", "kl", "intersection"], key="sigma_sweep_metric",
                      format_func=display_name)
with st.spinner("Sweeping σ…"):
    df = bundle.sweep()


def sweep_figure(paper):
    fig = sigma_sweep_figure(df, metric, learned_sigma=learned, num_classes=len(bundle.model.classnames),
                             paper=paper)
    for s, value in enumerate(sigmas):  # the chosen σ: a marker on its stage's curve
        part = df[df["stage"] == s + 1].sort_values("sigma")
        if part.empty or part[metric].isna().all():
            continue
        y = float(np.interp(np.log(value), np.log(part["sigma"].to_numpy()), part[metric].to_numpy()))
        fig.add_scatter(x=[value], y=[y], mode="markers", name="chosen σ" if s == 0 else f"chosen σ{s + 1}",
                        legendgroup="chosen", showlegend=s == 0, hovertext=f"chosen σ{s + 1} = {value:.3g}",
                        marker=dict(symbol="diamond", size=11 if not paper else 6, color=PALETTE[s % len(PALETTE)],
                                    line=dict(color="white", width=1)))
    return fig


chart(sweep_figure, "sigma_sweep", f"sigma-sweep-{metric}", data=df,
      title=f"{display_name(metric)} against σ ({split})")
st.caption("Each stage's σ varied over 0.05 … 20 with the others at their learned values (solid), and all "
           "stages together (dashed). Dotted lines: the learned σ; diamonds: the chosen σ.")

st.subheader("Save")
if bundle.checkpoint is None:
    st.info("An untrained model has no checkpoint to save; train a run first.")
else:
    c1, c2 = st.columns([3, 1])
    ss.setdefault("sigma_save_name", f"sigma-{time.strftime('%Y%m%d-%H%M%S')}")
    name = c1.text_input("New checkpoint name", key="sigma_save_name",
                         help=f"Written next to {bundle.checkpoint.name}; the original is never changed.")
    c2.write("")
    confirmed = True
    if split == "test":
        st.warning("This σ was chosen on the **test** split. A checkpoint saved with it is a model selected on test "
                   "data: its test metrics are optimistic and must not be reported as held-out results. Tune on "
                   "val instead.", icon=":material/warning:")
        confirmed = st.checkbox("Save anyway, marked `sigma_tuned_on: test` (Compare flags it)",
                                key="sigma_save_test_ok")
    if c2.button("Save as new checkpoint", icon=":material/save:", type="primary", disabled=not confirmed):
        try:
            out = save_sigma_checkpoint(bundle.checkpoint, sigmas, name, tuned_on=split, allow_test=confirmed)
        except Exception as exc:  # noqa: BLE001
            st.error(f"Not saved: {exc}")
        else:
            st.success(f"Saved `{out}` with σ = {', '.join(f'{v:.4g}' for v in sigmas)} (tuned on {split}).")

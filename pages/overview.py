"""Overview: model and weights status, the data set, the runs with their key metrics."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from analysis.run_figures import value_bars
from cascade.dashboard.datasets import sample_images, summarize
from cascade.dashboard.runs import list_runs, paper_runs_table, runs_table
from pages._exports import chart, table
from pages._shared import context

ctx = context()
st.title("Overview")

# ---- model ---------------------------------------------------------------------------------
st.header("Model", divider="gray")
choice = ctx.choice
col1, col2 = st.columns([2, 3])
with col1:
    backbone = ctx.backbone()
    info = backbone.info
    st.metric("Backbone", info.name)
    st.write(f"**Weights:** {'random (demo)' if info.random_weights else info.pretrained}")
    st.write(f"**Blocks:** {info.depth} · **width:** {info.width} · **embedding:** {info.embed_dim} · "
             f"**image:** {info.image_size} px, patch {info.patch_size}")
    st.write(f"**Device:** {ctx.device}")
with col2:
    status = choice.status
    st.write(f"**Weights check** for `{status.model_name}` / `{status.pretrained or 'none'}`: **{status.state}** "
             f"in {status.seconds * 1000:.0f} ms")
    if status.detail:
        st.caption(status.detail)
    if choice.demo:
        st.info("Switch the demo backbone in the sidebar: `cascade-tiny` is fast on CPU, `ViT-B-32` has the "
                "real size. Set `CASCADE_DEMO_MODEL` to choose the default.", icon=":material/info:")

# ---- data ----------------------------------------------------------------------------------
st.header("Data", divider="gray")
data = ctx.data()
if data is not None:
    s = summarize(data)
    c1, c2, c3, c4 = st.columns([1, 1, 2, 1])   # the split's three counts need the room
    c1.metric("Images", f"{s.num_items:,}")
    c2.metric("Classes", len(s.classnames))
    c3.metric("Split train / val / test", " / ".join(str(s.split_sizes.get(k, 0)) for k in ("train", "val", "test")))
    c4.metric("Distributions", "yes" if s.has_distributions else "labels only")
    st.caption(f"Source: `{s.source}` ({s.format})")
    left, right = st.columns(2)
    with left:
        st.subheader("Class counts")
        counts = pd.DataFrame({"class": list(s.counts), "images": list(s.counts.values())})
        chart(lambda paper: value_bars(s.counts, value_title="images", horizontal=True, paper=paper),
              "ov_counts", "class-counts", data=counts, title="Images per class", height=280)
    with right:
        st.subheader("An example distribution")
        if s.example_distribution:
            st.caption(f"`{s.example_key}` — label **{s.example_label}**")
            dist = pd.DataFrame({"class": list(s.example_distribution),
                                 "probability": list(s.example_distribution.values())})
            chart(lambda paper: value_bars(s.example_distribution, value_title="probability",
                                           highlight=s.example_label, probability=True, paper=paper),
                  "ov_dist", "example-distribution", data=dist, title=f"Emotion distribution of {s.example_key}",
                  height=280)
    samples = sample_images(data, per_class=1)
    if samples:
        st.subheader("One image per class")
        cols = st.columns(len(samples))
        for col, (label, img) in zip(cols, samples):
            col.image(img, caption=label, width="stretch")
    if s.num_bad:
        with st.expander(f"{s.num_bad} unusable item(s) skipped"):
            st.code("\n".join(s.bad))
    for w in s.warnings:
        st.warning(w)

# ---- runs ----------------------------------------------------------------------------------
st.header("Runs", divider="gray")
st.caption(f"Runs folder: `{ctx.runs_dir}`")
runs = list_runs(ctx.runs_dir)
if not runs:
    st.info("No runs yet. Start one on the **Train** page, or with `cascade train --config …`.")
else:
    paper_rows, paper_notes = paper_runs_table(runs)
    table(pd.DataFrame(runs_table(runs)), "ov_runs", "runs", caption="Runs: fused test metrics", notes=paper_notes,
          paper=pd.DataFrame(paper_rows), partial=[r.partial for r in runs])
    st.caption("“test checkpoint”: which checkpoint each run's test metrics are of, and how it was chosen.")

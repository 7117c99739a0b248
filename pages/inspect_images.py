"""Inspect: upload images and see every stage's emotion probabilities, the fused prediction,
the predicted distribution, the NGA and fusion weights used, and where each stage looks."""
from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from analysis.figures import stage_prediction_bars
from cascade.dashboard.charts import distribution_bar, weights_figure
from cascade.dashboard.inspect import ground_truth, predict, prediction_provenance, prediction_rows
from cascade.dashboard.runs import checkpoint_choices, describe_checkpoint, list_runs
from cascade.dashboard.uploads import ALLOWED_EXTENSIONS, MAX_FILES, MAX_UPLOAD_MB, validate_uploads
from cascade.data import EMOTION6_CLASSES
from pages import _explain
from pages._exports import chart, download
from pages._shared import context, get_content_index

ctx = context()
st.title("Inspect")
st.caption("Upload JPEG, PNG or WebP images (at most "
           f"{MAX_UPLOAD_MB} MB each, {MAX_FILES} at a time); anything else is rejected with a message.")

ZERO_SHOT, UNTRAINED = "Zero-shot CLIP (current backbone)", "Untrained cascade b32-4stage (current backbone)"
choices = checkpoint_choices(list_runs(ctx.runs_dir))
labels = [label for label, _ in choices] + [UNTRAINED, ZERO_SHOT]
source = st.selectbox("Model", labels, help="A run's checkpoint (finished runs first, newest first), or the current "
                                            "backbone: an "
                                            "untrained 4-stage cascade, or zero-shot CLIP (one stage).")

model = None
try:
    if source in (ZERO_SHOT, UNTRAINED):
        data = ctx.data() if ctx.data_config is not None else None
        classnames = data.classnames if data is not None else list(EMOTION6_CLASSES)
        model = ctx.zero_shot_model(classnames, "zeroshot" if source == ZERO_SHOT else "b32-4stage")
    else:
        model = ctx.checkpoint_model(dict(choices)[source])
except Exception as exc:  # noqa: BLE001 - a bad checkpoint is reported, never a crash
    st.error(f"Could not load the model: {exc}")
if model is not None:
    info = model.backbone_info
    st.caption(f"{info.name} · {'random weights' if info.random_weights else info.pretrained} · "
               f"stages {model.config.stages} · classes: {', '.join(model.classnames)}")
    if source not in (ZERO_SHOT, UNTRAINED):
        st.caption(f"Checkpoint: {describe_checkpoint(dict(choices)[source])}.")

uploads = st.file_uploader("Images", accept_multiple_files=True, key="inspect_upload",
                           max_upload_size=MAX_UPLOAD_MB,
                           help="Accepted: " + ", ".join(ALLOWED_EXTENSIONS))
files = [(f.name, f.getvalue()) for f in (uploads or [])]
images, problems = validate_uploads(files)
for p in problems:
    st.error(p.message(), icon=":material/block:")
if not files:
    st.info("Drop one or more images above to see per-stage predictions.")
if model is None or not images:
    st.stop()

with st.spinner("Predicting…"):
    preds = predict(model, [(im.name, im.image) for im in images])
st.caption(f"Model time: {1000 * preds[0].seconds:.0f} ms per image (batch of {len(preds)}) on {ctx.device}.")

# An upload that is one of the sidebar data set's images (same bytes) shows its ground truth.
data = ctx.data() if ctx.data_config is not None else None
truths: list = [None] * len(preds)
if data is not None and list(data.classnames) == list(model.classnames):
    lookup = get_content_index(ctx.data_config.model_dump_json())
    raw = dict(files)
    truths = [ground_truth(data.index, lookup, raw.get(im.name, b"")) for im in images]

checkpoint = None if source in (ZERO_SHOT, UNTRAINED) else dict(choices)[source]
provenance = prediction_provenance(model, checkpoint, source)
rows = prediction_rows(preds, truths, provenance)
stem = "predictions-" + "-".join(str(v) for v in (provenance["run"], provenance["checkpoint"]) if v) \
    if provenance["run"] else "predictions-" + ("zero-shot" if source == ZERO_SHOT else "untrained")
c1, c2, _ = st.columns([1, 1, 2])
download("Predictions CSV", pd.DataFrame(rows).to_csv(index=False), f"{stem}.csv", "inspect_preds", c1)
download("Predictions JSON", json.dumps({"provenance": provenance, "predictions": rows}, indent=2),
         f"{stem}.json", "inspect_preds", c2)
if provenance["random_weights"]:
    st.caption("Random backbone weights: the files say so (`random_weights: true`); these predictions say "
               "nothing about CLIP.")
zero_shot = source == ZERO_SHOT
explanations = _explain.controls(model, source, images, files)
for i, (im, pred, truth) in enumerate(zip(images, preds, truths)):
    st.divider()
    st.subheader(pred.name)
    c1, c2 = st.columns([1, 3])
    with c1:
        st.image(im.image, caption=f"{im.size[0]}×{im.size[1]} {im.format}", width="stretch")
        st.metric("Fused prediction", pred.predicted, f"{pred.confidence:.1%}", delta_color="off", delta_arrow="off")
        if truth is not None:
            st.caption(f"In the data set as `{truth['key']}` ({truth['split'] or 'no'} split): "
                       f"label **{truth['label']}**" + ("" if truth["has_distribution"] else
                                                         " (labels only: the distribution is one-hot)"))
        st.markdown("**Predicted distribution**" + (" and ground truth" if truth is not None else ""))
        dist = pd.DataFrame({"class": pred.classnames, "predicted": pred.fused,
                             **({"ground truth": truth["distribution"]} if truth is not None else {})})
        chart(distribution_bar(pred, truth=truth["distribution"] if truth is not None else None,
                               height=260 if truth is not None else 220),
              f"dist_{i}", f"distribution-{pred.name}", data=dist, title=f"Predicted distribution: {pred.name}",
              per_row=2)
    with c2:
        st.markdown("**Per-stage emotion probabilities**")

        def stage_figure(paper, pred=pred):
            fig = stage_prediction_bars(pred.stages, pred.classnames, fused=pred.fused, names=pred.stage_names,
                                        paper=paper)
            if not paper:
                fig.update_layout(height=330, margin=dict(l=10, r=10, t=10, b=10),
                                  legend=dict(orientation="h", y=1.12))
            return fig

        per_stage = pd.DataFrame(pred.stages, columns=pred.classnames, index=pred.stage_names)
        per_stage.loc["fused"] = pred.fused
        chart(stage_figure, f"stages_{i}", f"stage-probabilities-{pred.name}",
              data=per_stage.rename_axis("stage").reset_index(), title=f"Per-stage probabilities: {pred.name}")
        if zero_shot:
            st.caption("Zero-shot CLIP has one stage and no learned σ or λ: there are no weights to show.")
        else:
            st.markdown("**Weights used**")
            weights = pd.DataFrame([{"stage": s + 1, "block": b, "nga_weight": float(w), "sigma": float(pred.sigma[s]),
                                     "fusion_lambda": None if pred.fusion_weights is None else
                                     float(pred.fusion_weights[s])}
                                    for s, (bl, ws) in enumerate(zip(pred.stage_blocks, pred.nga_weights))
                                    for b, w in zip(bl, ws)])
            chart(weights_figure(pred), f"weights_{i}", f"weights-{pred.name}", data=weights,
                  title="NGA and fusion weights")
    _explain.row(explanations, i)
_explain.downloads(explanations)

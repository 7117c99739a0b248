"""Inspect: upload images and see every stage's emotion probabilities, the fused prediction,
the predicted distribution, and the NGA and fusion weights used."""
from __future__ import annotations

import streamlit as st

from analysis.figures import stage_prediction_bars
from cascade.dashboard.charts import distribution_bar, weights_figure
from cascade.dashboard.inspect import predict
from cascade.dashboard.runs import checkpoint_choices, list_runs
from cascade.dashboard.uploads import ALLOWED_EXTENSIONS, MAX_FILES, MAX_UPLOAD_MB, validate_uploads
from cascade.data import EMOTION6_CLASSES
from pages._shared import context

ctx = context()
st.title("Inspect")
st.caption("Upload JPEG, PNG or WebP images (at most "
           f"{MAX_UPLOAD_MB} MB each, {MAX_FILES} at a time); anything else is rejected with a message.")

ZERO_SHOT, UNTRAINED = "Zero-shot CLIP (current backbone)", "Untrained cascade b32-4stage (current backbone)"
choices = checkpoint_choices(list_runs(ctx.runs_dir))
labels = [label for label, _ in choices] + [UNTRAINED, ZERO_SHOT]
source = st.selectbox("Model", labels, help="A run's checkpoint (newest first), or the current backbone: an "
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
for i, (im, pred) in enumerate(zip(images, preds)):
    st.divider()
    st.subheader(pred.name)
    c1, c2 = st.columns([1, 3])
    with c1:
        st.image(im.image, caption=f"{im.size[0]}×{im.size[1]} {im.format}", width="stretch")
        st.metric("Fused prediction", pred.predicted, f"{pred.confidence:.1%}", delta_color="off", delta_arrow="off")
        st.markdown("**Predicted distribution**")
        st.plotly_chart(distribution_bar(pred), key=f"dist_{i}", width="stretch")
    with c2:
        st.markdown("**Per-stage emotion probabilities**")
        fig = stage_prediction_bars(pred.stages, pred.classnames, fused=pred.fused, names=pred.stage_names)
        fig.update_layout(height=330, margin=dict(l=10, r=10, t=10, b=10), legend=dict(orientation="h", y=1.12))
        st.plotly_chart(fig, key=f"stages_{i}", width="stretch")
        st.markdown("**Weights used**")
        st.plotly_chart(weights_figure(pred), key=f"weights_{i}", width="stretch")

"""CKA: layer-wise alignment of a model with itself, with frozen CLIP, and across checkpoints;
heatmaps, drift curves and downloads (PDF, SVG, PNG, CSV, NPZ) from the analysis export."""
from __future__ import annotations

import streamlit as st

from analysis.drift import block_drift, cross_model_cka, stage_drift, stage_vs_frozen_matrix, within_model_cka
from analysis.drift import drift_from_logs
from analysis.features import frozen_final_embedding
from analysis.figures import cka_heatmap, drift_curves
from cascade.dashboard.runs import list_runs
from cascade.dashboard.sources import UNTRAINED
from cascade.runfolder import checkpoint_path
from pages._analysis import matrix_file_bytes
from pages._exports import chart
from pages._shared import context

ctx = context()
st.title("CKA")
st.caption("Linear CKA accumulated as unbiased HSIC over minibatches (Nguyen et al. 2021): 1 means two "
           "representations agree up to rotation and scale; drift = 1 − CKA. White lines mark stage boundaries.")

MODES = {"within": "Within a model (block × block)", "frozen": "Frozen vs prompted (drift per block and stage)",
         "checkpoints": "Across checkpoints (drift over training)"}
UNTRAINED_LABEL = "Untrained cascade b32-4stage (current backbone, sidebar data)"

runs = [r for r in list_runs(ctx.runs_dir) if r.checkpoints]
c1, c2, c3 = st.columns([2, 3, 1])
mode = c1.radio("Mode", list(MODES), format_func=MODES.get)
split = c3.radio("Split", ["val", "test", "train"], help="The images the features are computed on.")
zrange = "fixed" if c3.toggle("0–1 colours", value=False, key="cka_fixed",
                              help="Off (default): the colours span the matrix's own range, so values that all "
                                   "lie between 0.9 and 1 still show their structure. On: 0–1, comparable across "
                                   "heatmaps.") else "auto"
run_labels = [r.name for r in runs] + ([UNTRAINED_LABEL] if ctx.data_config is not None else [])
if mode == "checkpoints":
    if not runs:
        st.info("Drift across checkpoints needs a run folder: train a run first.")
        st.stop()
    picked = [c2.selectbox("Run", [r.name for r in runs])]
else:
    if not run_labels:
        st.info("No run with a checkpoint and no usable data set.")
        st.stop()
    picked = c2.multiselect("Run(s)", run_labels, default=run_labels[:1], max_selections=3)
if not picked:
    st.info("Choose at least one run.")
    st.stop()


def source_of(label: str) -> str:
    if label == UNTRAINED_LABEL:
        return UNTRAINED
    run = next(r for r in runs if r.name == label)
    return str(run.checkpoint("best") or checkpoint_path(run.path, run.checkpoints[0]))


def show(build, key: str, stem: str, result) -> None:
    """``build(paper)``, a heat map of the CKA ``result``, on screen with the shared downloads
    (PDF, SVG, PNG, the matrix as CSV and NPZ)."""
    chart(build, key, stem, data=matrix_file_bytes(result.matrix, result.rows, result.cols, "csv"),
          height=min(760, max(360, 34 * len(result.rows) + 140)),
          extra={"npz": matrix_file_bytes(result.matrix, result.rows, result.cols, "npz")},
          title=stem.replace("-", " "))


def long_frame(curves: dict, x: str):
    """{series: (xs, ys)} as a long table for the CSV download."""
    import pandas as pd

    return pd.DataFrame([{"series": name, x: a, "drift": b} for name, (xs, ys) in curves.items()
                         for a, b in zip(xs, ys)])


def matrix_result(df, row: str, col: str, value: str):
    """A CKAResult-like object from a long DataFrame (for the checkpoint × block heatmap)."""
    from analysis.drift import CKAResult

    table = df.pivot_table(index=row, columns=col, values=value, sort=False)
    return CKAResult(table.to_numpy(), [str(r) for r in table.index], [str(c) for c in table.columns])


try:
    if mode == "within":
        for i, label in enumerate(picked):
            src = source_of(label)
            res = within_model_cka(ctx.features(src, split, "run"), model=ctx.source_model(src))
            st.subheader(label)
            show(lambda paper, res=res: cka_heatmap(res, zrange=zrange, paper=paper), f"within{i}",
                 f"cka-within-{split}-{i}", res)
    elif mode == "frozen":
        block_curves, stage_curves = {}, {}
        for i, label in enumerate(picked):
            src = source_of(label)
            model = ctx.source_model(src)
            fs_run, fs_frozen = ctx.features(src, split, "run"), ctx.features(src, split, "frozen")
            st.subheader(label)
            res = cross_model_cka(fs_run, fs_frozen, model=model)
            show(lambda paper, res=res: cka_heatmap(res, x_title="frozen CLIP block", y_title="prompted block",
                                                    zrange=zrange, paper=paper),
                 f"cross{i}", f"cka-prompted-vs-frozen-{split}-{i}", res)
            st.markdown("Each stage's $Z_s$ against frozen CLIP's blocks and its final embedding")
            res2 = stage_vs_frozen_matrix(fs_run, model, fs_frozen)
            show(lambda paper, res2=res2: cka_heatmap(res2, x_title="frozen CLIP", y_title="stage", zrange=zrange,
                                                      paper=paper),
                 f"stages{i}", f"cka-stages-vs-frozen-{split}-{i}", res2)
            bd = block_drift(fs_run, fs_frozen)
            block_curves[label] = (bd["block"].tolist(), bd["drift"].tolist())
            sd = stage_drift(fs_run, model, frozen_final_embedding(fs_frozen, model))
            stage_curves[label] = (sd["stage"].tolist(), sd["drift"].tolist())
        st.subheader("Drift per block (prompted vs frozen)")
        chart(lambda paper: drift_curves(block_curves, x="block", paper=paper), "drift_blocks",
              f"drift-per-block-{split}", data=long_frame(block_curves, "block"), title="Drift per block")
        st.subheader("Drift per stage (Z_s vs frozen final embedding)")
        chart(lambda paper: drift_curves(stage_curves, x="stage", paper=paper), "drift_stages",
              f"drift-per-stage-{split}", data=long_frame(stage_curves, "stage"), title="Drift per stage")
    else:
        run = next(r for r in runs if r.name == picked[0])
        logged = drift_from_logs(run.path)
        if not logged.empty:
            df, x = logged, "global_step"
            st.caption("From the drift the trainer logged on its probe images (`train.drift`), in training order.")
        else:
            df = ctx.checkpoint_drift(run.path, split)
            df = df.sort_values(["global_step", "checkpoint"], kind="stable", na_position="last")
            x = "global_step" if df["global_step"].notna().all() else "checkpoint"
            n = df["checkpoint"].nunique()
            st.caption(f"No drift was logged during training (`train.drift.every_k_steps: 0`): measured on the "
                       f"{split} split at the run's {n} checkpoint(s), ordered by step. "
                       "`train.keep_epoch_checkpoints: true` keeps one per epoch.")
        st.subheader(f"{run.name}: stage drift over training")
        stages = df[df["kind"] == "stage"]
        chart(lambda paper: drift_curves(stages, x=x, kind=None, paper=paper), "ck_stage",
              f"drift-over-training-{run.name}", data=df, title=f"{run.name}: stage drift over training")
        blocks = df[df["kind"] == "block"]
        if not blocks.empty:
            st.subheader("CKA(prompted block, frozen block) over training")
            row = "global_step" if x == "global_step" else "checkpoint"
            res = matrix_result(blocks.sort_values(row, kind="stable"), row, "index", "cka")
            show(lambda paper: cka_heatmap(res, x_title="block", y_title="step" if row == "global_step" else row,
                                           zrange=zrange, paper=paper), "ck_blocks",
                 f"cka-blocks-over-training-{run.name}", res)
except Exception as exc:  # noqa: BLE001 - e.g. an empty or tiny split: a message, never a crash
    st.error(f"CKA could not be computed: {exc}")

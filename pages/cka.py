"""CKA: layer-wise alignment of a model with itself, with frozen CLIP, and across checkpoints;
heatmaps, drift curves and downloads (PDF, SVG, PNG, CSV, NPZ) from the analysis export."""
from __future__ import annotations

import streamlit as st

from analysis.drift import (CKAResult, block_drift, cross_model_cka, drift_from_logs, stage_drift,
                            stage_vs_frozen_matrix, within_model_cka)
from analysis.features import frozen_final_embedding
from analysis.figures import cka_heatmap, drift_curves
from cascade.dashboard.runs import describe_checkpoint, finished_first, list_runs
from cascade.run_config import sanitize_run_name
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

ZRANGES = {"robust": "2nd–98th percentile", "auto": "min–max", "fixed": "0–1"}

runs = finished_first([r for r in list_runs(ctx.runs_dir) if r.checkpoints])   # the default: a finished run
c1, c2, c3 = st.columns([2, 1, 1])
mode = c1.radio("Mode", list(MODES), format_func=MODES.get)
split = c2.radio("Split", ["val", "test", "train"], help="The images the features are computed on.")
zrange = c3.radio("Colour range", list(ZRANGES), format_func=ZRANGES.get, key="cka_zrange",
                  help="2nd–98th percentile (default): the colours span the bulk of the values, so matrices whose "
                       "values all lie between 0.98 and 1 still show their structure and the diagonal's 1s do not "
                       "set the top. min–max: the matrix's full range. 0–1: comparable across heatmaps. The colour "
                       "bar's title states the span.")
run_labels = [r.display_name for r in runs] + ([UNTRAINED_LABEL] if ctx.data_config is not None else [])
if mode == "checkpoints":
    if not runs:
        st.info("Drift across checkpoints needs a run folder: train a run first.")
        st.stop()
    picked = [st.selectbox("Run", [r.display_name for r in runs])]
else:
    if not run_labels:
        st.info("No run with a checkpoint and no usable data set.")
        st.stop()
    # the full width: three long run names stay readable as chips
    picked = st.multiselect("Run(s)", run_labels, default=run_labels[:1], max_selections=3)
if not picked:
    st.info("Choose at least one run.")
    st.stop()


def source_of(label: str) -> str:
    if label == UNTRAINED_LABEL:
        return UNTRAINED
    run = next(r for r in runs if r.display_name == label)
    return str(run.checkpoint("best") or checkpoint_path(run.path, run.checkpoints[0]))


for label in picked:
    if label != UNTRAINED_LABEL and mode != "checkpoints":
        st.caption(f"{describe_checkpoint(source_of(label))}.")


def short(label: str) -> str:
    """A source's name for titles and files: the run name, or "untrained" for the untrained model."""
    if label == UNTRAINED_LABEL:
        return "untrained-b32-4stage"
    return next(r.name for r in runs if r.display_name == label)


def file_stem(*parts: str) -> str:
    """A file name from its parts (a run name, what the matrix is, the split): safe characters only."""
    return "-".join(sanitize_run_name(str(p)) for p in parts if p)


def show(build, key: str, stem: str, result, title: str) -> None:
    """``build(paper)``, a heat map of the CKA ``result``, on screen with the shared downloads
    (PDF, SVG, PNG, the matrix as CSV and NPZ), named ``stem`` and titled ``title``."""
    chart(build, key, stem, data=matrix_file_bytes(result.matrix, result.rows, result.cols, "csv"),
          height=min(760, max(360, 34 * len(result.rows) + 140)),
          extra={"npz": matrix_file_bytes(result.matrix, result.rows, result.cols, "npz")},
          title=title)


def long_frame(curves: dict, x: str):
    """{series: (xs, ys)} as a long table for the CSV download."""
    import pandas as pd

    return pd.DataFrame([{"series": name, x: a, "drift": b} for name, (xs, ys) in curves.items()
                         for a, b in zip(xs, ys)])


def matrix_result(df, row: str, col: str, value: str):
    """A CKAResult-like object from a long DataFrame (for the checkpoint × block heatmap)."""

    table = df.pivot_table(index=row, columns=col, values=value, sort=False)
    return CKAResult(table.to_numpy(), [str(r) for r in table.index], [str(c) for c in table.columns])


try:
    if mode == "within":
        for i, label in enumerate(picked):
            src = source_of(label)
            res = within_model_cka(ctx.features(src, split, "run"), model=ctx.source_model(src))
            st.subheader(label)
            show(lambda paper, res=res: cka_heatmap(res, zrange=zrange, paper=paper), f"within{i}",
                 file_stem("cka-within", short(label), split), res, f"CKA within {short(label)} ({split})")
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
                 f"cross{i}", file_stem("cka-prompted-vs-frozen", short(label), split), res,
                 f"CKA prompted vs frozen: {short(label)} ({split})")
            st.markdown("Each stage's $Z_s$ against frozen CLIP's blocks and its final embedding")
            res2 = stage_vs_frozen_matrix(fs_run, model, fs_frozen)
            show(lambda paper, res2=res2: cka_heatmap(res2, x_title="frozen CLIP", y_title="stage", zrange=zrange,
                                                      paper=paper),
                 f"stages{i}", file_stem("cka-stages-vs-frozen", short(label), split), res2,
                 f"CKA stages vs frozen: {short(label)} ({split})")
            bd = block_drift(fs_run, fs_frozen)
            block_curves[label] = (bd["block"].tolist(), bd["drift"].tolist())
            sd = stage_drift(fs_run, model, frozen_final_embedding(fs_frozen, model))
            stage_curves[label] = (sd["stage"].tolist(), sd["drift"].tolist())
        st.subheader("Drift per block (prompted vs frozen)")
        names = ", ".join(short(label) for label in picked)
        chart(lambda paper: drift_curves(block_curves, x="block", paper=paper), "drift_blocks",
              file_stem("drift-per-block", *map(short, picked), split), data=long_frame(block_curves, "block"),
              title=f"Drift per block: {names} ({split})")
        st.subheader("Drift per stage (Z_s vs frozen final embedding)")
        chart(lambda paper: drift_curves(stage_curves, x="stage", paper=paper), "drift_stages",
              file_stem("drift-per-stage", *map(short, picked), split), data=long_frame(stage_curves, "stage"),
              title=f"Drift per stage: {names} ({split})")
    else:
        run = next(r for r in runs if r.display_name == picked[0])
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
        point_labels = "checkpoint" if "checkpoint" in stages else None
        chart(lambda paper: drift_curves(stages, x=x, kind=None, labels=point_labels, paper=paper), "ck_stage",
              f"drift-over-training-{run.name}", data=df, title=f"{run.name}: stage drift over training")
        blocks = df[df["kind"] == "block"]
        if not blocks.empty:
            st.subheader("CKA(prompted block, frozen block) over training")
            row = "global_step" if x == "global_step" else "checkpoint"
            res = matrix_result(blocks.sort_values(row, kind="stable"), row, "index", "cka")
            show(lambda paper: cka_heatmap(res, x_title="block", y_title="step" if row == "global_step" else row,
                                           zrange=zrange, paper=paper), "ck_blocks",
                 file_stem("cka-blocks-over-training", run.name, split), res,
                 f"CKA per block over training: {run.name} ({split})")
except Exception as exc:  # noqa: BLE001 - e.g. an empty or tiny split: a message, never a crash
    st.error(f"CKA could not be computed: {exc}")

"""NGA curves: weights against block for each stage, at the learned σ and chosen σ values,
with the two limits (σ→0: last block only; σ→∞: plain mean)."""
from __future__ import annotations

import streamlit as st
from pydantic import ValidationError

from analysis.figures import nga_weight_figure
from analysis.sigma import nga_limits, nga_weight_curves, parse_sigma_grid
from analysis.style import format_sig
from cascade.checkpoint import read_meta
from cascade.config import CascadeConfig
from cascade.dashboard.runs import checkpoint_choices, describe_checkpoint, list_runs
from cascade.run_config import format_validation_error
from pages._exports import chart, table
from pages._shared import context

ctx = context()


def readable_error(exc: Exception) -> str:
    """One line naming the field, for a config error whether it comes from pydantic or from cascade."""
    if isinstance(exc, ValidationError):
        return format_validation_error(exc)
    return str(exc).split("\n    For further information")[0]


st.title("NGA curves")
st.latex(r"w_l = \frac{g_l}{\sum_k g_k},\qquad g_l = \exp\!\Big(-\frac{(d-l+1)^2}{2\sigma_s^2}\Big),"
         r"\qquad l = 1..d")

choices = checkpoint_choices(list_runs(ctx.runs_dir))
presets = ["b32-4stage", "b16-3stage", "custom stages"]
options = [label for label, _ in choices] + [f"preset: {p}" for p in presets]
c1, c2 = st.columns([2, 2])
picked = c1.selectbox("Stages and learned σ from", options)
extra = c2.text_input("σ values to compare", value="0.5, 1, 2, 4",
                      help="Comma-separated, or lo:hi:n for n log-spaced values.")

mode = "normalized"
try:
    if picked.startswith("preset: "):
        preset = picked.removeprefix("preset: ")
        if preset == "custom stages":
            preset = st.text_input("Stages (1-based blocks)", value="1-4,5-8,9-11,12")
        cfg = CascadeConfig.from_preset(preset)
        learned = cfg.sigmas()
        learned_label = "σ init"
    else:
        meta = read_meta(dict(choices)[picked])
        cfg = CascadeConfig.model_validate(meta["config"])
        learned = [float(v) for v in meta.get("sigma") or cfg.sigmas()]
        learned_label = "learned σ"
    mode = cfg.nga
    blocks = [list(range(lo, hi + 1)) for lo, hi in cfg.stage_ranges()]
    values = [float(v) for v in parse_sigma_grid(extra)] if extra.strip() else []
except Exception as exc:  # noqa: BLE001 - bad input is a message, never a crash
    st.error(readable_error(exc), icon=":material/error:")
    st.stop()

if len(values) > 12:
    st.warning("Showing the first 12 σ values.")
    values = values[:12]
learned_name = f"{learned_label} (" + ", ".join(format_sig(v, 3) for v in learned) + ")"
curves = nga_weight_curves(blocks, [learned] + values, mode=mode,
                           labels=[learned_name] + [f"σ={format_sig(v, 3)}" for v in values])
limits = nga_limits(blocks) if mode == "normalized" else None
st.caption(f"Stages {cfg.stages} · NGA mode `{mode}`"
           + (" (weights are raw Gaussian values, not normalised)" if mode == "free" else "")
           + ("" if picked.startswith("preset: ") else f" · σ from {describe_checkpoint(dict(choices)[picked])}"))


def figure(paper):
    fig = nga_weight_figure(curves, limits, highlight=learned_name, paper="double" if paper else False)
    if not paper:
        fig.update_layout(height=380, legend=dict(orientation="h", y=-0.3))
    return fig


chart(figure, "nga_fig", "nga-curves", data=curves, title="NGA weight per block")
st.caption(f"Wide pale grey: the {learned_label}, drawn under the others so a compared σ equal to it stays "
           "visible; one colour per compared σ, light to dark as σ grows. Dashed grey: σ→0, the last block of the "
           "stage only. Dotted grey: σ→∞, the plain mean of its blocks.")
with st.expander("Weights as a table"):
    wide = curves.pivot_table(index=["stage", "block"], columns="curve", values="weight", sort=False).reset_index()
    wide.columns = [str(c) for c in wide.columns]
    table(wide, "nga_table", "nga-weights", caption="NGA weights per stage and block", digits=4, significant=True)
    st.caption("Weights to 4 significant digits: the far blocks of a small σ get weights like 1.604e-28, "
               "not 0.")

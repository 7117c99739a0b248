"""The Inspect page's explanation maps: controls, one row of overlays per image, downloads.

A view only: the maps, the overlays and the files come from :mod:`pages._analysis`
(over :mod:`analysis.explain` and :mod:`analysis.explain_figure`). The maps are computed once per model, class choice
and set of uploads (kept in the session), so moving the opacity slider only re-blends.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import streamlit as st

from pages._analysis import colour_scale_image, explain_images, explanation_files, overlay_row
from pages._exports import download

TITLE = "Where each stage looks: explanation maps per stage and fused"
HELP = ("Gradient-weighted attention rollout (Chefer et al. 2021) of each stage's score and of the fused one, "
        "through the blocks up to the end of the stage; each map normalised to [0, 1]. p: the probability that "
        "output gives the explained class; prompts: the share of relevance on prompt tokens rather than patches.")


@dataclass
class Explanations:
    explained: Any          # analysis.explain.Explained
    opacity: float


def controls(model, source: str, images, files: list[tuple[str, bytes]]) -> Explanations | None:
    """The toggle, class picker and opacity slider; the maps of every uploaded image, or None."""
    if not st.toggle("Where each stage looks (explanation maps)", value=True, help=HELP):
        return None
    c1, c2 = st.columns(2)
    pick = c1.selectbox("Explain", ["predicted", *model.classnames], format_func=lambda c: f"explain: {c}")
    opacity = c2.slider("Heat-map opacity", 0.0, 1.0, 0.5, 0.05)
    key = (source, id(model), pick, tuple((name, hashlib.sha1(data).hexdigest()) for name, data in files))
    cache = st.session_state.setdefault("inspect_explained", {})
    if key not in cache:
        try:
            with st.spinner("Explaining every stage…"):
                cache.clear()
                cache[key] = explain_images(model, [(im.name, im.image) for im in images],
                                            None if pick == "predicted" else pick)
        except Exception as exc:  # noqa: BLE001 - e.g. a backbone without plain attention blocks
            st.error(f"Explanation maps could not be computed: {exc}")
            return None
    return Explanations(cache[key], opacity)


def row(state: Explanations | None, i: int) -> None:
    """Image ``i`` as the model saw it, then each stage's map and the fused one over it."""
    if state is None:
        return
    st.markdown("**Where each stage looks**")
    cells = overlay_row(state.explained, i, state.opacity)
    for col, (rgb, caption) in zip(st.columns(len(cells)), cells):
        col.image(rgb, caption=caption, width="stretch")
    c1, c2, c3 = st.columns([1, 4, 1], vertical_alignment="center")
    c1.markdown("<div style='text-align:right'>relevance 0</div>", unsafe_allow_html=True)
    c2.image(colour_scale_image(), width="stretch")
    c3.markdown("1 (each map normalised)")


def downloads(state: Explanations | None) -> None:
    """The grid of all images as a paper figure (double column) and the maps as NPZ."""
    if state is None:
        return
    st.divider()
    st.markdown("**Explanation maps of all images**: the grid figure (double column) and the maps (NPZ)")
    ex, opacity = state.explained, state.opacity
    for col, fmt in zip(st.columns(4), ("pdf", "svg", "png", "npz")):
        data = lambda fmt=fmt: explanation_files(ex, fmt, opacity=opacity, title=TITLE)  # noqa: E731
        download(fmt.upper(), data, f"explanations.{fmt}", "explanations", col)

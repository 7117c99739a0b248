"""The cascade dashboard: ``streamlit run app.py``.

Navigation, the sidebar (model, data, runs folder) and the demo-mode banner, drawn here
once per run before the open page runs. Every page is a thin view in ``pages/`` over
:mod:`cascade.dashboard` and (through ``pages/_analysis.py``) :mod:`analysis`, and reads
the sidebar's choices with ``pages._shared.context()``.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:  # `pages._shared` and the packages, however the app is started
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from pages._shared import demo_banner, render_sidebar  # noqa: E402

# A local file: a ":material/..." icon would make the browser fetch the favicon from a font host.
st.set_page_config(page_title="cascade · CLIP emotion prompts", page_icon=str(ROOT / "assets" / "favicon.png"),
                   layout="wide")

PAGES = [
    st.Page("pages/overview.py", title="Overview", icon=":material/dashboard:", url_path="overview",
            default=True),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:", url_path="train"),
    st.Page("pages/sigma_tuner.py", title="σ tuner", icon=":material/tune:", url_path="sigma_tuner"),
    st.Page("pages/nga_curves.py", title="NGA curves", icon=":material/show_chart:", url_path="nga_curves"),
    st.Page("pages/cka.py", title="CKA", icon=":material/grid_on:", url_path="cka"),
    st.Page("pages/inspect_images.py", title="Inspect", icon=":material/image_search:",
            url_path="inspect_images"),
    st.Page("pages/compare.py", title="Compare", icon=":material/table_chart:", url_path="compare"),
]

page = st.navigation(PAGES, position="sidebar", expanded=True)
demo_banner(render_sidebar(), page.url_path)
page.run()

"""The sidebar's weights picker: found files and typed paths replace CASCADE_MODEL / CASCADE_PRETRAINED."""
from __future__ import annotations

from pathlib import Path

import pytest
from safetensors.torch import save_file

from cascade.dashboard.settings import DashboardSettings
from cascade.dashboard.weights import (DEFAULT_WEIGHTS, TYPED_WEIGHTS, apply_weights_choice, check_weights,
                                       weights_options)
from cascade.weights.finder import find_weights

from support.weights import openai_archive

from .conftest import APP


@pytest.fixture(scope="module")
def machine(tiny_backbone, tmp_path_factory):
    """A HOME with the tiny model as an OpenAI archive in ~/.cache/clip, an empty hub cache and a bad file."""
    root = tmp_path_factory.mktemp("machine")
    clip = root / "home" / ".cache" / "clip"
    clip.mkdir(parents=True)
    state = {k: v.contiguous() for k, v in tiny_backbone.model.state_dict().items()}
    openai_archive(state, clip / "tiny.pt")
    (root / "hub").mkdir()
    save_file(state, str(root / "tiny.safetensors"))
    (root / "cut.safetensors").write_bytes((root / "tiny.safetensors").read_bytes()[:500])
    env = {"HOME": str(root / "home"), "HF_HUB_CACHE": str(root / "hub"), "CASCADE_WEIGHTS_PATH": ""}
    return {"root": root, "archive": clip / "tiny.pt", "env": env}


def test_options_and_choices(machine):
    found = find_weights(machine["env"])
    settings = DashboardSettings(runs_dir=Path("runs"), model_name="ViT-B-32", pretrained="openai")
    options = weights_options(settings, found)
    archive = str(machine["archive"])
    assert list(options) == [DEFAULT_WEIGHTS, archive, TYPED_WEIGHTS]
    assert "cascade-tiny · torchscript · QuickGELU" in options[archive]
    assert apply_weights_choice(settings, DEFAULT_WEIGHTS, "", found) == settings
    picked = apply_weights_choice(settings, archive, "", found)
    assert (picked.model_name, picked.pretrained) == ("cascade-tiny", archive)
    typed = apply_weights_choice(settings, TYPED_WEIGHTS, str(machine["root"] / "tiny.safetensors"), found)
    assert (typed.model_name, typed.pretrained) == ("auto", str(machine["root"] / "tiny.safetensors"))
    assert apply_weights_choice(settings, TYPED_WEIGHTS, "  ", found) == settings
    assert apply_weights_choice(settings, "/gone.pt", "", found) == settings


def test_weights_check_reads_the_file(machine):
    good = check_weights("auto", str(machine["archive"]))
    assert good.state == "file" and good.usable
    bad = check_weights("auto", str(machine["root"] / "cut.safetensors"))
    assert bad.state == "error" and "cut.safetensors is truncated or corrupt" in bad.detail
    wrong = check_weights("ViT-B-32", str(machine["archive"]))
    assert wrong.state == "error" and "cascade-tiny" in wrong.detail and "ViT-B-32" in wrong.detail


def test_sidebar_picks_a_found_archive(machine, dashboard_env, monkeypatch):
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    for k, v in machine["env"].items():
        monkeypatch.setenv(k, v)
    st.cache_data.clear()   # the found-weights list of an earlier test's machine
    at = AppTest.from_file(str(APP), default_timeout=180).run()
    assert not at.exception, [e.value for e in at.exception]
    picker = next(s for s in at.sidebar.selectbox if s.label == "Weights")
    assert picker.value == DEFAULT_WEIGHTS
    picker.set_value(str(machine["archive"])).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("cascade-tiny" in s.value and "tiny.pt" in s.value for s in at.sidebar.success)
    assert {m.label: m.value for m in at.metric}["Backbone"] == "cascade-tiny"
    assert not any("Demo mode" in w.value for w in at.warning)
    # AppTest runs a multipage app's main script (which draws the sidebar) for a session's first
    # two runs only, so each further step starts a fresh session
    at = AppTest.from_file(str(APP), default_timeout=180).run()
    picker = next(s for s in at.sidebar.selectbox if s.label == "Weights")
    picker.set_value(TYPED_WEIGHTS).run()
    assert at.sidebar.text_input(key="w_sb_weights_path").value == ""
    at = AppTest.from_file(str(APP), default_timeout=180)
    at.session_state["sb_weights"] = TYPED_WEIGHTS
    at.run()
    at.sidebar.text_input(key="w_sb_weights_path").set_value(str(machine["root"] / "cut.safetensors")).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("cut.safetensors is truncated or corrupt" in e.value for e in at.sidebar.error)
    assert any("Demo mode" in w.value for w in at.warning)

"""Every dashboard page under ``streamlit.testing.v1.AppTest``, in demo mode (cascade-tiny)."""
from __future__ import annotations

import time

import pytest
from streamlit.testing.v1 import AppTest

from cascade.runfolder import read_progress

from .conftest import APP, PAGES, TITLES, png_bytes, write_ablation

TIMEOUT = 180


def open_page(page: str) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    if page != "pages/overview.py":
        at.switch_page(page).run()
    return at


def assert_clean(at: AppTest) -> None:
    assert not at.exception, "\n".join(str(e.value) + "\n" + "\n".join(e.stack_trace) for e in at.exception)


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_in_demo_mode(page, dashboard_env, runs_dir):
    at = open_page(page)
    assert_clean(at)
    assert [t.value for t in at.title] == [TITLES[page]]
    assert any("Demo mode" in w.value for w in at.warning), "the demo banner is missing"
    assert not at.error, [e.value for e in at.error]


def test_overview_shows_model_data_and_runs(dashboard_env, runs_dir):
    at = open_page("pages/overview.py")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Backbone"] == "cascade-tiny" and metrics["Classes"] == "6"
    assert metrics["Images"] == "120"
    frames = at.dataframe
    assert frames and "tiny" in frames[-1].value["run"].tolist()


def test_sigma_slider_changes_the_metric(dashboard_env, runs_dir):
    at = open_page("pages/sigma_tuner.py")
    assert_clean(at)
    assert "tiny" in at.selectbox[0].value

    def shown() -> dict[str, str]:
        return {m.label: m.value for m in at.metric}

    before = shown()
    assert {"accuracy", "KL ↓"} <= set(before)     # the metric registry's display names
    changed = False
    for stage in range(len(at.select_slider)):
        slider = at.select_slider[stage]
        for target in (slider.options[0], slider.options[-1]):
            slider.set_value(float(target)).run()
            assert_clean(at)
            if shown() != before:
                changed = True
                break
        if changed:
            break
    assert changed, "moving a σ slider did not change any shown metric"
    assert any("Recomputed exactly" in c.value for c in at.caption)


def test_sigma_save_as_new_checkpoint(dashboard_env, runs_dir):
    at = open_page("pages/sigma_tuner.py")
    at.select_slider[0].set_value(float(at.select_slider[0].options[-1])).run()
    next(t for t in at.text_input if t.label == "New checkpoint name").set_value("../my sigma").run()  # sanitised: stays inside the run's checkpoints
    next(b for b in at.button if b.label == "Save as new checkpoint").click().run()
    assert_clean(at)
    assert at.success, [e.value for e in at.error]
    saved = runs_dir / "tiny" / "checkpoints" / "my-sigma.safetensors"
    assert saved.is_file() and saved.with_suffix(".json").is_file(), at.success[0].value
    from cascade.checkpoint import read_meta
    assert read_meta(saved)["sigma"][0] == pytest.approx(20.0, rel=1e-5)


def test_upload_gives_per_stage_bars(dashboard_env, runs_dir):
    at = open_page("pages/inspect_images.py")
    at.file_uploader[0].set_value([("red.png", png_bytes(), "image/png"),
                                   ("blue.webp", png_bytes((30, 30, 200), fmt="WEBP"), "image/webp"),
                                   ("notes.txt", b"hello", "text/plain"),
                                   ("broken.jpg", b"\xff\xd8\xff\xe0 not really", "image/jpeg")]).run()
    assert_clean(at)
    errors = " ".join(e.value for e in at.error)
    assert "notes.txt" in errors and "not accepted" in errors
    assert "broken.jpg" in errors and "could not be read" in errors
    assert [s.value for s in at.main.subheader] == ["red.png", "blue.webp"]
    charts = at.get("plotly_chart")
    assert len(charts) == 6  # distribution, per-stage bars, weights — per image
    spec = charts[1].proto.spec
    for s in range(1, 5):
        assert f"stage {s}" in spec
    assert "fused" in spec
    assert {m.label for m in at.metric} == {"Fused prediction"}


@pytest.mark.parametrize("source,charts", [("Untrained cascade b32-4stage (current backbone)", 3),
                                           ("Zero-shot CLIP (current backbone)", 2)])
def test_inspect_without_a_run(source, charts, dashboard_env, runs_dir):
    at = open_page("pages/inspect_images.py")
    assert at.selectbox[0].value == "tiny · best"
    at.selectbox[0].set_value(source).run()
    at.file_uploader[0].set_value(("face.png", png_bytes((240, 200, 40)), "image/png")).run()
    assert_clean(at)
    assert not at.error
    assert len(at.get("plotly_chart")) == charts      # zero-shot: no weights panel (nothing learned to show)


def test_nga_page_parses_sigma_values(dashboard_env, runs_dir):
    at = open_page("pages/nga_curves.py")
    box = next(t for t in at.text_input if t.label == "σ values to compare")
    box.set_value("0.1:10:5").run()
    assert_clean(at)
    assert not at.error
    next(t for t in at.text_input if t.label == "σ values to compare").set_value("-1, zero").run()
    assert_clean(at)
    assert at.error  # a message, not a crash


@pytest.mark.parametrize("mode", ["within", "frozen", "checkpoints"])
def test_cka_modes(mode, dashboard_env, runs_dir):
    at = open_page("pages/cka.py")
    at.radio[0].set_value(mode).run()
    assert_clean(at)
    assert not at.error, [e.value for e in at.error]
    assert at.get("plotly_chart")
    labels = {b.label for b in at.get("download_button")}
    assert {"PDF", "SVG", "PNG", "CSV", "NPZ"} <= labels


def test_compare_lists_ablations(dashboard_env, runs_dir):
    write_ablation(runs_dir / "ablate-demo")
    at = open_page("pages/compare.py")
    assert_clean(at)
    assert at.selectbox[0].value == "ablate-demo"
    assert len(at.dataframe) >= 3  # runs, ablation summary, per-stage table
    summary = at.dataframe[1].value
    assert float(summary.set_index("method").loc["cascade", "accuracy"]) == pytest.approx(0.615)
    assert summary.set_index("method").loc["cascade", "chebyshev"] == "n/a"    # not in the results: never 0
    labels = [b.label for b in at.get("download_button")]
    assert labels.count("LaTeX") >= 3 and labels.count("CSV") >= 3


def start_from_form(at: AppTest, name: str, *, warmup: int = 1, unfreeze: int = 0, global_: int = 1) -> None:
    next(w for w in at.text_input if w.label == "Run name").set_value(name)
    numbers = {w.label: w for w in at.number_input}
    numbers["Synthetic images"].set_value(48)
    numbers["Prompt tokens per stage"].set_value(2)
    numbers["Epochs: warm-up"].set_value(warmup)
    numbers["Epochs: unfreeze"].set_value(unfreeze)
    numbers["Epochs: global"].set_value(global_)
    numbers["Batch size"].set_value(16)
    next(b for b in at.button if b.label == "Start training").click().run()
    assert_clean(at)


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


@pytest.mark.slow
def test_train_page_two_sessions_start_stop_and_finish(dashboard_env, runs_dir, tmp_path, monkeypatch):
    """Two browser sessions start two runs at once; one is stopped, the other runs to the end.

    Each session follows its own run, a rerun (as a reload) neither stops nor duplicates a
    run, and every run leaves the CLI's run folder.
    """
    from pages._shared import job_registry

    train_runs = tmp_path / "train-runs"
    monkeypatch.setenv("CASCADE_RUNS_DIR", str(train_runs))
    a, b = open_page("pages/train.py"), open_page("pages/train.py")
    start_from_form(a, "from the page")
    assert any("Started `from-the-page`" in s.value for s in a.success), [e.value for e in a.error]
    assert a.query_params.get("run") == "from-the-page"
    start_from_form(b, "long run", warmup=1, unfreeze=0, global_=50)
    assert any("Started `long-run`" in s.value for s in b.success), [e.value for e in b.error]

    reg = job_registry()
    job_a, job_b = reg.get("from-the-page"), reg.get("long-run")
    assert job_a is not None and job_b is not None and job_a.pid != job_b.pid
    # Each session shows its own run.
    assert a.selectbox(key="train_pick_from-the-page").value == "from-the-page"
    assert b.selectbox(key="train_pick_long-run").value == "long-run"
    # Reruns (a reload) neither stop nor duplicate anything; the same name cannot start twice.
    a.run()
    b.run()
    names = [j.name for j in reg.jobs()]
    assert names.count("from-the-page") == 1 and names.count("long-run") == 1
    start_from_form(b, "long run")
    assert any("already" in e.value for e in b.error)

    # Stop the long run from its page once it is training.
    wait_for(lambda: read_progress(job_b.run_dir).global_step >= 1 or not job_b.alive, 150, "the long run's first step")
    b.run()
    next(x for x in b.button if x.label == "Stop").click().run()
    assert_clean(b)
    wait_for(lambda: not job_b.alive, 150, "the long run to stop")
    assert job_b.state == "stopped", job_b.log_tail(40)
    assert (job_b.run_dir / "checkpoints" / "last.safetensors").is_file()

    wait_for(lambda: not job_a.alive, 150, "the short run to finish")
    assert job_a.state == "finished", job_a.log_tail(40)
    run = train_runs / "from-the-page"
    for name in ("config.yaml", "metrics.jsonl", "eval.json", "splits.json", "train.log",
                 "checkpoints/best.safetensors", "checkpoints/last.safetensors"):
        assert (run / name).is_file(), name
    a.run()
    assert_clean(a)
    assert any(m.label == "test accuracy" for m in a.metric)
    assert "finished" in a.get("progress")[0].proto.text


def test_inspect_explanation_maps(dashboard_env, runs_dir):
    at = open_page("pages/inspect_images.py")
    at.file_uploader[0].set_value([("red.png", png_bytes(), "image/png"),
                                   ("blue.webp", png_bytes((30, 30, 200), fmt="WEBP"), "image/webp")]).run()
    assert_clean(at)
    assert not at.error, [e.value for e in at.error]
    assert sum("Where each stage looks" in m.value for m in at.markdown) == 2

    def captions():
        return [c for img in at.get("image") for c in img.captions if c]

    shown = captions()
    assert sum(c.startswith("stage ") for c in shown) == 2 * 4 and sum(c.startswith("fused") for c in shown) == 2
    assert any("prompts" in c and "p(" in c for c in shown)
    picker = next(s for s in at.selectbox if s.label == "Explain")
    assert picker.options[0] == "explain: predicted"
    picker.set_value("joy").run()
    assert_clean(at)
    assert all("p(joy)" in c for c in captions() if c.startswith(("stage ", "fused")))
    next(s for s in at.slider if s.label == "Heat-map opacity").set_value(0.9).run()
    assert_clean(at)
    assert {"PDF", "SVG", "PNG", "NPZ"} <= {b.label for b in at.get("download_button")}
    at.toggle[0].set_value(False).run()
    assert_clean(at)
    assert not any("Where each stage looks" in m.value for m in at.markdown)


def _options(widget) -> list[str]:
    return [str(o) for o in widget.options]


def test_no_page_defaults_to_a_stopped_run_and_every_option_naming_it_says_so(dashboard_env, mixed_runs_dir):
    """The finished run ``tiny`` and the newer stopped run ``cut``: every picker opens on ``tiny``
    and every option that names ``cut`` says it stopped (partial)."""
    import json

    state = json.loads((mixed_runs_dir / "cut" / "state.json").read_text())
    assert state["state"] == "stopped"
    pickers = {"pages/sigma_tuner.py": lambda at: [at.selectbox[0]],
               "pages/nga_curves.py": lambda at: [at.selectbox[0]],
               "pages/inspect_images.py": lambda at: [at.selectbox[0]],
               "pages/cka.py": lambda at: [at.multiselect[0]],
               "pages/compare.py": lambda at: [m for m in at.multiselect if m.label == "Runs"]
               + [s for s in at.selectbox if s.label == "Base configuration"]}
    for page, widgets in pickers.items():
        at = open_page(page)
        assert_clean(at)
        found = widgets(at)
        assert found, page
        for w in found:
            value = w.value if isinstance(w.value, list) else [w.value]
            assert value and not any("cut" in str(v) for v in value), (page, w.label, value)
            assert any("tiny" in str(v) for v in value), (page, w.label, value)
            cut = [o for o in _options(w) if "cut" in o]
            assert cut, (page, w.label, _options(w))
            assert all("stopped" in o and "partial" in o for o in cut), (page, w.label, cut)
    # the runs tables say it too, and the paper export marks it and never bolds it
    at = open_page("pages/compare.py")
    runs = at.dataframe[0].value
    assert list(runs.columns[:4]) == ["run", "status", "data", "backbone"]
    status = dict(zip(runs["run"], runs["status"]))
    assert status["tiny"] == "finished" and "stopped at epoch 2" in status["cut"] and "partial" in status["cut"]
    checkpoint = dict(zip(runs["run"], runs["test checkpoint"]))
    assert "selected on val" in checkpoint["tiny"] and "partial" in checkpoint["cut"]
    # the CKA page's checkpoints mode labels it as well
    at = open_page("pages/cka.py")
    at.radio[0].set_value("checkpoints").run()
    assert_clean(at)
    assert "cut" not in at.selectbox[0].value
    assert all("partial" in o for o in _options(at.selectbox[0]) if "cut" in o)


def test_the_sidebar_lives_in_the_address_so_a_reload_keeps_it(dashboard_env, runs_dir):
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.run()
    assert_clean(at)
    size = next(n for n in at.sidebar.number_input if n.label == "Synthetic images")
    size.set_value(48).run()
    assert at.query_params.get("images") in ("48", ["48"])
    # a reload is a new session opened on the same address
    again = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    again.query_params["images"] = "48"
    again.query_params["data"] = "not-a-source"          # refused: the default stays
    again.run()
    assert_clean(again)
    assert next(n for n in again.sidebar.number_input if n.label == "Synthetic images").value == 48
    assert next(s for s in again.sidebar.selectbox if s.label == "Source").value == "synthetic"

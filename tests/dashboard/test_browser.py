"""The dashboard in a real browser: `streamlit run app.py` driven by headless Chromium.

Skipped when /usr/bin/chromium (Debian's package) is absent; CI installs it. Screenshots
of every page land in tests/_artifacts/ (git-ignored) for a person to look at.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from cascade.metrics import display_name
from support.files import check_csv, check_latex, check_pdf, check_png, check_svg

from .conftest import REPO, demo_env, png_bytes, write_ablation

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO / "tests" / "_artifacts"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} not installed (apt-get install chromium)"),
]

# url path, heading. The first request to the fresh server is a deep link on purpose: with a
# pages/ folder Streamlit starts in its legacy multipage mode, which the app must leave.
PAGES = [("train", "Train"), ("", "Overview"), ("sigma_tuner", "σ tuner"), ("nga_curves", "NGA curves"),
         ("cka", "CKA"), ("inspect_images", "Inspect"), ("compare", "Compare")]


NAV = [("", "Overview"), ("train", "Train"), ("sigma_tuner", "σ tuner"), ("nga_curves", "NGA curves"),
       ("cka", "CKA"), ("inspect_images", "Inspect"), ("compare", "Compare")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(dashboard_root, trained_runs, tmp_path_factory):
    """`streamlit run app.py` on a free port, demo mode on cascade-tiny, runs in tmp; always terminated."""
    runs = tmp_path_factory.mktemp("browser") / "runs"
    shutil.copytree(trained_runs, runs, ignore=shutil.ignore_patterns("features"))
    write_ablation(runs / "ablate-demo")
    port = _free_port()
    env = dict(os.environ)
    env.update(demo_env(dashboard_root, 2))
    env["CASCADE_RUNS_DIR"] = str(runs)
    log = open(tmp_path_factory.mktemp("browser-log") / "streamlit.log", "w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
         "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://localhost:{port}"
    try:
        deadline = time.time() + 120
        while True:
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(f"streamlit exited with {proc.returncode}:\n{log.read()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if time.time() > deadline:
                pytest.fail("streamlit did not start serving within 120 s")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        try:
            yield b
        finally:
            b.close()


def _settle(page, timeout_s: float = 90.0) -> None:
    """Wait until the script run finished: no 'Running' status and no spinner for a moment."""
    deadline = time.time() + timeout_s
    quiet_since = None
    while time.time() < deadline:
        busy = page.locator('[data-testid="stStatusWidget"]').count() > 0 or \
            page.locator('[data-testid="stSpinner"]').count() > 0
        if busy:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.time()
        elif time.time() - quiet_since > 1.0:
            return
        time.sleep(0.2)
    raise AssertionError("the page kept running")


def _charts_drawn(page, timeout_s: float = 30.0) -> None:
    """Wait until every plotly and vega chart on the page has drawn (they render after the run)."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        plotly = page.locator(".js-plotly-plot").count()
        plotly_done = page.locator(".js-plotly-plot .main-svg").count()
        vega = page.locator('[data-testid="stVegaLiteChart"]').count()
        vega_done = page.locator('[data-testid="stVegaLiteChart"] canvas, [data-testid="stVegaLiteChart"] svg').count()
        if plotly_done >= plotly and vega_done >= vega:
            time.sleep(0.5)
            return
        time.sleep(0.25)


def _open(page, server: str, path: str, heading: str, charts: bool = False) -> None:
    """Go to a page and wait until its heading shows and its script has finished."""
    page.goto(f"{server}/{path}")
    page.get_by_role("heading", name=heading, exact=True).first.wait_for()
    _settle(page)
    if charts:
        _charts_drawn(page)


def _no_exception(page, where: str) -> None:
    assert page.get_by_text("Page not found").count() == 0, f"{where}: Streamlit's 'Page not found' dialog"
    n = page.locator('[data-testid="stException"]').count()
    assert n == 0, f"{where}: {n} Streamlit exception box(es): " + page.locator(
        '[data-testid="stException"]').first.inner_text()[:2000]


def _metric(page, label: str) -> str:
    """The value of the metric tile named like ``label`` (a metric key: the page shows its display name)."""
    name = page.get_by_text(display_name(label), exact=True)
    box = page.locator('[data-testid="stMetric"]').filter(has=name).first
    return box.locator('[data-testid="stMetricValue"]').inner_text()


def test_every_page_in_a_real_browser(server, browser, tmp_path):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1400, "height": 2400}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(90_000)
    try:
        for path, heading in PAGES:
            _open(page, server, path, heading, charts=True)
            _no_exception(page, path)
            assert page.get_by_text("Demo mode", exact=False).count() > 0, f"{path}: no demo banner"
            assert page.get_by_text("Runs folder").count() > 0, f"{path}: the sidebar is missing"
            nav = [t.split("\n")[-1] for t in page.locator('[data-testid="stSidebarNavLink"]').all_inner_texts()]
            assert nav == [h for _, h in NAV], f"{path}: sidebar navigation is {nav}"
            page.screenshot(path=str(ARTIFACTS / f"page-{path or 'overview'}.png"), full_page=True)

        # CKA: downloads come from the analysis export (PDF through kaleido + Chromium, NPZ without pickle).
        _open(page, server, "cka", "CKA")
        for label, magic in (("PDF", b"%PDF"), ("NPZ", b"PK")):
            with page.expect_download(timeout=90_000) as info:
                page.get_by_role("button", name=label).first.click()
            data = Path(info.value.path()).read_bytes()
            assert data.startswith(magic), f"{label} download starts with {data[:8]!r}"
        _no_exception(page, "cka downloads")

        # Inspect: a real upload through the file input, plus a file that must be rejected.
        good, bad = tmp_path / "smile.png", tmp_path / "notes.txt"
        good.write_bytes(png_bytes((250, 210, 40), (160, 120)))
        bad.write_text("not an image")
        _open(page, server, "inspect_images", "Inspect")
        page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files([str(good), str(bad)])
        page.get_by_role("heading", name="smile.png").wait_for()
        _settle(page)
        _charts_drawn(page)
        _no_exception(page, "inspect after upload")
        assert page.get_by_text("Per-stage emotion probabilities").count() == 1
        assert page.locator(".js-plotly-plot").count() >= 3
        assert page.get_by_text("notes.txt", exact=False).count() > 0
        assert page.get_by_text("not accepted", exact=False).count() > 0
        page.screenshot(path=str(ARTIFACTS / "page-inspect-upload.png"), full_page=True)

        # σ tuner: keyboard arrows on a slider change the exactly-recomputed metrics.
        _open(page, server, "sigma_tuner", "σ tuner")
        before = (_metric(page, "accuracy"), _metric(page, "kl"))
        slider = page.locator('[data-testid="stSlider"] input[type="range"]').first
        slider.focus()
        for _ in range(12):
            page.keyboard.press("ArrowRight")
        deadline = time.time() + 60
        after = before
        while time.time() < deadline and after == before:
            time.sleep(0.5)
            _settle(page)
            after = (_metric(page, "accuracy"), _metric(page, "kl"))
        _charts_drawn(page)
        _no_exception(page, "sigma after slider")
        assert after != before, f"metrics did not change: {before} -> {after}"
        page.screenshot(path=str(ARTIFACTS / "page-sigma-moved.png"), full_page=True)
    finally:
        context.close()


def _check_download(name: str, data: bytes, where: str) -> None:
    import io
    import json

    import numpy as np

    ext = name.rsplit(".", 1)[-1].lower()
    label = f"{where}: {name}"
    if ext == "pdf":
        check_pdf(data, label)
    elif ext == "png":
        check_png(data, label)
    elif ext == "svg":
        check_svg(data, label)
    elif ext == "csv":
        check_csv(data, label)
    elif ext == "tex":
        check_latex(data.decode("utf-8"), label)
    elif ext == "md":
        text = data.decode("utf-8")
        assert text.count("|") >= 4 and "nan" not in text, f"{label}: not a Markdown table"
    elif ext == "json":
        assert json.loads(data), f"{label}: empty JSON"
    elif ext == "npz":
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            if name.startswith("explanations"):   # the Inspect page's explanation maps
                assert z["maps"].ndim == 4 and z["maps"].shape[1] == len(z["image_names"]), label
            else:
                assert "matrix" in z.files, label
    else:
        raise AssertionError(f"{label}: unexpected download type")


def _download_everything(page, where: str) -> list[str]:
    """Open every expander, click every download button, check every file; returns the file names."""
    details = page.locator('[data-testid="stExpander"] details')
    for i in range(details.count()):
        if details.nth(i).get_attribute("open") is None:
            details.nth(i).locator("summary").first.click()
    _settle(page)
    buttons = page.locator('[data-testid="stDownloadButton"] button')
    names = []
    for i in range(buttons.count()):
        button = buttons.nth(i)
        button.scroll_into_view_if_needed()
        with page.expect_download(timeout=120_000) as info:
            button.click()
        download = info.value
        name = download.suggested_filename
        _check_download(name, Path(download.path()).read_bytes(), where)
        names.append(name)
    _no_exception(page, f"{where} downloads")
    return names


def test_every_download_on_every_page(server, browser, tmp_path):
    """Every download button of every page gives a valid file, and nothing is fetched from outside localhost."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1400, "height": 2400}, accept_downloads=True)
    outside: list[str] = []
    context.on("request", lambda req: outside.append(req.url)
               if not req.url.startswith((server, "data:", "blob:", "about:")) else None)
    page = context.new_page()
    page.set_default_timeout(120_000)
    seen: dict[str, list[str]] = {}
    try:
        for path, heading in NAV:
            _open(page, server, path, heading, charts=True)
            if path == "inspect_images":
                face = tmp_path / "face.png"
                face.write_bytes(png_bytes((250, 210, 40), (160, 120)))
                page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files([str(face)])
                page.get_by_role("heading", name="face.png").wait_for()
                _settle(page)
                _charts_drawn(page)
            seen[path or "overview"] = _download_everything(page, path or "overview")
            page.screenshot(path=str(ARTIFACTS / f"downloads-{path or 'overview'}.png"), full_page=True)
    finally:
        context.close()
    exts = {n.rsplit(".", 1)[-1] for names in seen.values() for n in names}
    assert {"pdf", "svg", "png", "csv", "tex", "json", "npz"} <= exts, exts
    for where, names in seen.items():
        assert names, f"{where}: no download buttons"
        if where != "nga_curves":
            assert any(n.endswith(".pdf") for n in names), f"{where}: no figure download ({names})"
    assert any(n.endswith(".tex") for n in seen["compare"]) and any(n.endswith(".tex") for n in seen["overview"])
    assert not outside, f"requests left localhost: {sorted(set(outside))[:5]}"


def test_an_ablation_started_from_compare_is_followed_to_its_table_without_a_reload(server, browser):
    """Start a small ablation from the form and only watch: the page itself must turn it from
    running to finished and show its table (the fragment follows the job; no reload)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1400, "height": 2400})
    page = context.new_page()
    page.set_default_timeout(90_000)
    name = "ablate-browser"
    try:
        _open(page, server, "compare", "Compare")
        expander = page.locator('[data-testid="stExpander"]').filter(has_text="Start an ablation").first
        if expander.locator("details").get_attribute("open") is None:
            expander.locator("summary").first.click()
        seeds = page.get_by_label("Seeds", exact=True).and_(page.locator("input"))
        seeds.fill("1")
        seeds.press("Tab")
        field = page.get_by_label("Ablation name", exact=True).and_(page.locator("input"))
        field.fill(name)
        field.press("Tab")
        page.get_by_role("button", name="Start ablation").click()
        navigations = []
        page.on("framenavigated", lambda frame: navigations.append(frame.url) if frame == page.main_frame else None)
        progress = page.locator('[data-testid="stProgress"]').filter(has_text=name)
        progress.filter(has_text=f"{name} — running").first.wait_for(timeout=60_000)
        progress.filter(has_text=f"{name} — finished").first.wait_for(timeout=300_000)
        _settle(page)
        assert not navigations, f"the page was reloaded: {navigations}"
        _no_exception(page, "compare after the ablation")
        assert progress.filter(has_text="3/3 runs finished").count() == 1, progress.first.inner_text()
        picker = page.locator('[data-testid="stSelectbox"]').filter(has_text="Ablation").first
        assert name in (picker.text_content() or "") + (picker.locator("input").first.input_value() or ""), \
            picker.text_content()
        assert page.get_by_text("No finished ablation yet").count() == 0
        ablations = page.get_by_role("heading", name="Ablations")
        assert ablations.count() == 1
        assert page.locator('[data-testid="stDataFrame"]').count() >= 2     # the runs table and the ablation's
        page.screenshot(path=str(ARTIFACTS / "compare-ablation-finished.png"), full_page=True)
    except Exception:
        page.screenshot(path=str(ARTIFACTS / "compare-ablation-failed.png"), full_page=True)
        raise
    finally:
        context.close()

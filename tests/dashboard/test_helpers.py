"""The dashboard's plain-Python helpers, tested without Streamlit."""
from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest
from PIL import Image
from safetensors.torch import save_file

from cascade.dashboard import weights as weights_mod
from cascade.dashboard.runs import (RunNameError, ablation_table, list_ablations, list_runs,
                                    safe_run_dir, sanitize_run_name)
from cascade.dashboard.settings import DashboardSettings
from cascade.dashboard.uploads import UploadedImage, UploadProblem, display_name, validate_image_bytes, validate_uploads
from cascade.dashboard.weights import check_weights, choose_model
from cascade.runfolder import read_metrics, read_progress

from .conftest import png_bytes


# ---- uploads ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name,fmt", [("a.png", "PNG"), ("b.jpg", "JPEG"), ("c.JPEG", "JPEG"), ("d.webp", "WEBP")])
def test_accepted_formats(name, fmt):
    result = validate_image_bytes(name, png_bytes(fmt=fmt))
    assert isinstance(result, UploadedImage), result
    assert result.image.mode == "RGB" and result.size == (96, 72)


def test_rgba_and_greyscale_become_rgb():
    for mode in ("RGBA", "L", "P"):
        buf = io.BytesIO()
        Image.new(mode, (10, 8)).save(buf, "PNG")
        result = validate_image_bytes("x.png", buf.getvalue())
        assert isinstance(result, UploadedImage) and result.image.mode == "RGB"


@pytest.mark.parametrize("name,data,needle", [
    ("doc.pdf", b"%PDF-1.4", "'.pdf' files are not accepted"),
    ("noext", png_bytes(), "without an extension"),
    ("anim.gif", png_bytes(fmt="GIF"), "'.gif' files"),
    ("empty.png", b"", "empty"),
    ("text.png", b"hello, I am not an image", "corrupt or not an image"),
    ("disguised.png", png_bytes(fmt="GIF"), "content is GIF"),
    ("cut.jpg", png_bytes(fmt="JPEG", size=(400, 300))[:600], "could not be read"),
])
def test_rejected_with_a_message(name, data, needle):
    result = validate_image_bytes(name, data)
    assert isinstance(result, UploadProblem)
    assert needle in result.reason, result.reason


def test_size_and_pixel_limits():
    assert "over the" in validate_image_bytes("big.png", png_bytes(), max_bytes=100).reason
    assert "pixel" in validate_image_bytes("wide.png", png_bytes(size=(300, 300)), max_pixels=10_000).reason


def test_validate_uploads_splits_and_caps():
    files = [("ok.png", png_bytes()), ("bad.png", b"x"), ("ok2.jpg", png_bytes(fmt="JPEG"))]
    images, problems = validate_uploads(files + [("more.png", png_bytes())], max_files=3)
    assert [i.name for i in images] == ["ok.png", "ok2.jpg"]
    assert [p.name for p in problems] == ["bad.png", "more.png"]


def test_display_name_drops_folders_and_controls():
    assert display_name("../../etc/passwd.png") == "passwd.png"
    assert display_name("C:\\x\\evil\x00.png") == "evil.png"
    assert display_name(None) == "upload"


# ---- run names and folders ---------------------------------------------------------------------
@pytest.mark.parametrize("raw,clean", [("my run", "my-run"), ("../../etc", "etc"), ("a/b\\c", "a-b-c"),
                                       (".hidden", "hidden"), ("ok_name-1.2", "ok_name-1.2")])
def test_sanitize_run_name(raw, clean):
    assert sanitize_run_name(raw) == clean


@pytest.mark.parametrize("bad", ["", "..", "/", "...", "   "])
def test_unusable_run_names(tmp_path, bad):
    with pytest.raises(RunNameError):
        safe_run_dir(tmp_path, bad)


def test_safe_run_dir_stays_inside(tmp_path):
    for name in ("../outside", "a/../../b", "x/y"):
        p = safe_run_dir(tmp_path, name)
        assert p.parent == tmp_path.resolve()


def _fake_run(root: Path, name: str, acc: float, done: bool = True, frozen_dtype: str = "fp32") -> Path:
    d = root / name
    (d / "checkpoints").mkdir(parents=True)
    (d / "config.yaml").write_text("method: cascade\nbackbone: {model_name: cascade-tiny, pretrained: null}\n"
                                   "model: {stages: '1-4,5-8,9-11,12'}\ndata: {format: synthetic}\n"
                                   "train: {epochs: {warmup: 1, unfreeze: 1, global: 1}, "
                                   f"frozen_dtype: {frozen_dtype}}}\n")
    fused = {"accuracy": acc, "macro_f1": acc, "uar": acc, "kl": 1 - acc}
    lines = [{"kind": "start", "total_steps": 6, "steps_per_epoch": 2, "random_weights": True},
             {"kind": "phase", "phase": "warmup", "epoch": 1, "stages": [4]},
             {"kind": "step", "phase": "warmup", "epoch": 1, "global_step": 1, "loss": {"total": 2.0, "ce": 1.5}},
             {"kind": "step", "phase": "warmup", "epoch": 1, "global_step": 2, "loss": {"total": 1.5, "ce": 1.0}},
             {"kind": "eval", "split": "val", "epoch": 1, "metrics": {"fused": fused, "stages": [fused] * 4},
              "best": True}]
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"kind": "st')  # torn line
    if done:
        (d / "eval.json").write_text(json.dumps({"method": "cascade", "best_epoch": 1, "val": {"fused": fused},
                                                 "test": {"fused": fused, "stages": [fused] * 4}}))
    return d


def test_list_runs_and_summaries(tmp_path):
    _fake_run(tmp_path, "a", 0.5)
    _fake_run(tmp_path, "b", 0.7, done=False, frozen_dtype="bf16")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "not-a-run").mkdir()
    runs = {r.name: r for r in list_runs(tmp_path)}
    assert set(runs) == {"a", "b"}
    # folders from before state.json: eval.json means finished, otherwise the state is unknown
    assert runs["a"].status == "finished" and not runs["a"].partial and runs["a"].test["accuracy"] == 0.5
    assert runs["b"].status == "unknown" and runs["b"].partial and runs["b"].val["accuracy"] == 0.7
    assert runs["a"].epochs_total == 3 and runs["a"].backbone == "cascade-tiny (random)"
    assert runs["b"].backbone == "cascade-tiny (random), bf16 blocks"   # the compute dtype shows with the run
    row = runs["a"].row()
    assert row["test stage4 accuracy"] == 0.5
    assert len(read_metrics(tmp_path / "a")) == 5  # the torn last line is skipped
    assert list_runs(tmp_path / "missing") == []


def test_progress_from_metrics(tmp_path):
    d = _fake_run(tmp_path, "a", 0.5, done=False)
    p = read_progress(d)
    assert p.started and not p.done and p.global_step == 2 and p.total_steps == 6
    assert p.fraction == pytest.approx(2 / 6)
    assert p.phase == "warmup" and p.phase_stages == [4]
    assert {r["term"] for r in p.loss} == {"total", "ce"}
    assert any(r["metric"] == "accuracy" and r["stage"] == "fused" for r in p.val)
    (d / "eval.json").write_text(json.dumps({"best_epoch": 1, "test": {"fused": {"accuracy": 1.0}}}))
    assert read_progress(d).done and read_progress(d).fraction == 1.0
    assert not read_progress(tmp_path / "nothing").started


def test_ablation_tables(tmp_path):
    ab = tmp_path / "ablate-x"
    ab.mkdir()
    rows = [{"method": "cascade", "seed": 0, "accuracy": 0.5, "kl": 0.4},
            {"method": "cascade", "seed": 1, "accuracy": 0.7, "kl": 0.2},
            {"method": "zeroshot", "seed": 0, "accuracy": 0.3, "kl": None}]
    (ab / "results.json").write_text(json.dumps({"rows": rows, "random_weights": True, "select_metric": "accuracy"}))
    found = list_ablations(tmp_path)
    assert [a.name for a in found] == ["ablate-x"]
    table = {r["method"]: r for r in ablation_table(found[0])}
    assert table["cascade"]["accuracy"] == pytest.approx(0.6)
    assert table["cascade"]["accuracy std"] == pytest.approx(0.1414213, rel=1e-5)
    assert table["zeroshot"]["kl"] is None and table["zeroshot"]["seeds"] == 1


# ---- weights check ------------------------------------------------------------------------------
def test_weights_disabled_gives_demo_banner(tmp_path, monkeypatch):
    monkeypatch.setenv("CASCADE_PRETRAINED", "none")
    monkeypatch.setenv("CASCADE_DEMO_MODEL", "cascade-tiny")
    settings = DashboardSettings.from_env()
    choice = choose_model(settings)
    assert choice.demo and choice.pretrained is None and choice.model_name == "cascade-tiny"
    assert "Demo mode" in choice.banner and "CASCADE_PRETRAINED" in choice.banner


def test_weights_offline_is_fast_and_explains(monkeypatch):
    import cascade.backbone as bb

    monkeypatch.setattr(bb, "cached_weights_path", lambda cfg, cache_dir: None)
    monkeypatch.setattr(bb, "download_host_reachable", lambda cfg, timeout: (False, "huggingface.co:443 unreachable (test)"))
    status = check_weights("ViT-B-32", "openai", timeout=2.0)
    assert status.state == "unavailable" and not status.usable and status.seconds < 2.0
    settings = DashboardSettings(runs_dir=Path("runs"), demo_model="ViT-B-32")
    choice = choose_model(settings, status)
    assert choice.demo and choice.model_name == "ViT-B-32" and choice.pretrained is None
    assert "unreachable" in choice.banner and "huggingface" in choice.banner.lower()


def test_weights_check_is_time_boxed(monkeypatch):
    def hang(*args, **kwargs):
        time.sleep(10)

    monkeypatch.setattr(weights_mod, "_probe", hang)
    start = time.perf_counter()
    status = check_weights("ViT-B-32", "openai", timeout=0.3)
    assert time.perf_counter() - start < 2.0
    assert status.state == "timeout" and not status.usable


def test_weights_check_never_raises(monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("resolver exploded")

    monkeypatch.setattr(weights_mod, "_probe", boom)
    status = check_weights("ViT-B-32", "openai", timeout=1.0)
    assert status.state == "error" and "resolver exploded" in status.detail


def test_weights_cached_and_file(tmp_path, monkeypatch, tiny_backbone):
    monkeypatch.setattr(weights_mod, "cached_weights_path", lambda cfg, cache_dir: "/cache/w.safetensors")
    assert check_weights("ViT-B-32", "openai").state == "cached"
    f = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_backbone.model.state_dict().items()}, str(f))
    status = check_weights("cascade-tiny", str(f))
    assert status.state == "file" and status.usable
    choice = choose_model(DashboardSettings(runs_dir=Path("runs"), model_name="cascade-tiny", pretrained=str(f)),
                          status)
    assert not choice.demo and choice.pretrained == str(f)
    assert check_weights("ViT-B-32", str(tmp_path / "missing.safetensors")).state == "unavailable"
    (tmp_path / "cut.safetensors").write_bytes(b"0")   # the check reads the file, not just its name
    cut = check_weights("cascade-tiny", str(tmp_path / "cut.safetensors"))
    assert cut.state == "error" and not cut.usable and "cut.safetensors" in cut.detail


# ---- the train form ------------------------------------------------------------------------------
def test_train_form_builds_a_valid_run_config(tmp_path):
    from cascade.config import ConfigError
    from cascade.dashboard.datasets import make_data_config
    from cascade.dashboard.trainform import TrainRequest, build_run_config

    data = make_data_config("synthetic", synthetic_size=60)
    req = TrainRequest(name="../my run", prompt_tokens=3, sigma_init=2.0, sigma_learnable=False, lambda_dist=0.5,
                       alpha=0.2, epochs_warmup=1, epochs_unfreeze=2, epochs_global=0, batch_size=8, seed=3)
    cfg = build_run_config(req, model_name="cascade-tiny", pretrained=None, backbone_seed=0, data_config=data,
                           runs_dir=str(tmp_path))
    assert cfg.run.name == "my-run" and cfg.model.prompt_tokens == 3 and cfg.model.sigma_init == 2.0
    assert cfg.model.sigma_learnable is False and cfg.train.loss.lambda_dist == 0.5 and cfg.train.loss.alpha == 0.2
    assert cfg.train.epochs.unfreeze == 2 and cfg.backbone.pretrained is None and cfg.data.synthetic.num_samples == 60
    with pytest.raises(ConfigError, match="preset"):
        build_run_config(TrainRequest(preset="nonsense"), model_name="cascade-tiny", pretrained=None,
                         backbone_seed=0, data_config=data, runs_dir=str(tmp_path))


def test_data_config_errors_name_the_problem(tmp_path):
    from cascade.dashboard.datasets import make_data_config

    with pytest.raises(ValueError, match="no such folder"):
        make_data_config("imagefolder", str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="enter a path"):
        make_data_config("manifest", "")
    assert make_data_config("imagefolder", str(tmp_path)).root == str(tmp_path.resolve())
    assert make_data_config("ferplus", str(tmp_path)).format == "ferplus"
    pattern = str(tmp_path / "train-{000000..000003}.tar")   # a pattern, not a file: checked when loaded
    assert make_data_config("webdataset", pattern).root == pattern
    assert make_data_config("webdataset", "https://host/s-{0..9}.tar").root == "https://host/s-{0..9}.tar"


# ---- the job registry ---------------------------------------------------------------------------
def test_registry_refuses_duplicates_and_stops(tmp_path, dashboard_env):
    from cascade.dashboard.jobs import JobError, JobRegistry

    from .conftest import tiny_run_config

    reg = JobRegistry()
    job = reg.start(tiny_run_config(tmp_path, "dup"), tmp_path, "dup")
    try:
        assert job.run_dir == (tmp_path / "dup").resolve() and job.alive
        with pytest.raises(JobError, match="already"):
            reg.start(tiny_run_config(tmp_path, "dup"), tmp_path, "dup")
        other = reg.start(tiny_run_config(tmp_path, "x"), tmp_path, "../../escape")
        assert other.run_dir.parent == tmp_path.resolve() and other.name == "escape"
        assert {j.name for j in reg.active()} == {"dup", "escape"}
    finally:
        assert reg.stop("dup", force=True)
        reg.stop("escape", force=True)
    assert reg.wait("dup", timeout=30) in ("stopped", "failed")
    reg.wait("escape", timeout=30)
    assert not reg.active()
    with pytest.raises(JobError, match="already exists"):  # a folder holding a run is never reused
        reg.start(tiny_run_config(tmp_path, "dup"), tmp_path, "dup")


def test_a_finished_worker_is_reaped_without_anyone_polling_it(tmp_path, dashboard_env):
    """No <defunct> worker: the registry waits on each worker itself, whether a page polls or not."""
    import os
    import time

    from cascade.dashboard.jobs import JobRegistry

    from .conftest import tiny_run_config

    reg = JobRegistry()
    cfg = tiny_run_config(tmp_path, "quick", num_samples=24)
    cfg.method = "zeroshot"                                        # evaluates only: done in seconds
    job = reg.start(cfg, tmp_path, "quick")
    pid = job.pid
    deadline = time.time() + 120
    while job.process.returncode is None and time.time() < deadline:   # returncode: set by a wait, not a poll
        time.sleep(0.2)
    assert job.process.returncode is not None and job.ended is not None
    with pytest.raises(ProcessLookupError):                          # reaped: not even a zombie is left
        os.kill(pid, 0)
    assert job.state == "finished", job.log_tail(20)


# ---- σ tuner latency -------------------------------------------------------------------------------
def test_sigma_recompute_is_fast_for_2000_images():
    """A slider move recomputes val metrics exactly from cached features: < 300 ms for 2,000 images
    of ViT-B-32 size (4 stages, width 768, embedding 512)."""
    import statistics

    import torch

    from analysis.sigma import SigmaSweeper, random_head

    from pages._analysis import SigmaBundle

    head = random_head("1-4,5-8,9-11,12", width=768, embed_dim=512, num_classes=6)
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(12, 2000, 768, generator=gen)
    labels = torch.randint(0, 6, (2000,), generator=gen)
    dists = torch.softmax(torch.randn(2000, 6, generator=gen), -1)
    sweeper = SigmaSweeper(feats, head, labels=labels, dists=dists)
    bundle = SigmaBundle(label="bench", model=None, sweeper=sweeper, checkpoint=None, split="val",
                         num_samples=2000, setup_seconds=0.0, learned=[1.0] * 4)
    bundle.evaluate([1.0, 1.0, 1.0, 1.0])  # warm-up
    times = []
    for sig in ([0.3, 1.0, 2.0, 5.0], [4.0, 0.2, 1.5, 1.0], [10.0, 10.0, 0.1, 0.5], [0.07, 3.0, 3.0, 20.0]):
        row, ms = bundle.evaluate(sig)
        times.append(ms)
        assert 0.0 <= row["accuracy"] <= 1.0 and row["sigma"] == pytest.approx(sig, rel=1e-6)
    assert statistics.median(times) < 300, times


def test_downloadable_weights_say_so_in_the_banner():
    from cascade.dashboard.weights import Downloader, WeightsStatus

    status = WeightsStatus("ViT-B-32", "openai", "downloadable", "not cached; huggingface.co is reachable")
    settings = DashboardSettings(runs_dir=Path("runs"), demo_model="cascade-tiny")
    dl = Downloader("ViT-B-32", "openai", state="running")
    choice = choose_model(settings, status, downloader=dl)
    assert choice.demo and "downloading in the background" in choice.banner
    dl.state, dl.error = "failed", "ConnectionError: reset"
    assert "failed (ConnectionError: reset)" in choose_model(settings, status, downloader=dl).banner


# ---- models ------------------------------------------------------------------------------------------
def test_checkpoint_loads_without_text_and_matches_the_library(trained_runs, dashboard_env, tmp_path):
    import torch

    from cascade import load_checkpoint
    from cascade.checkpoint import CheckpointError
    from cascade.dashboard.models import BackboneSpec, class_text_embeddings, load_run_checkpoint, load_spec_backbone

    from cascade.checkpoint import read_meta

    path = trained_runs / "tiny" / "checkpoints" / "best.safetensors"
    spec = BackboneSpec.from_meta(read_meta(path))
    assert spec == BackboneSpec("cascade-tiny", None, 0, quick_gelu=False)
    backbone = load_spec_backbone(spec)
    mine = load_run_checkpoint(path, backbone).model
    ref = load_checkpoint(path)
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = mine(x), ref(x)
    torch.testing.assert_close(a.logits, b.logits)
    torch.testing.assert_close(a.stage_logits, b.stage_logits)
    # The disk cache gives back the very same class embeddings.
    first = class_text_embeddings(backbone, ["anger", "joy"])
    again = class_text_embeddings(backbone, ["anger", "joy"])
    torch.testing.assert_close(first, again)
    other = load_spec_backbone(BackboneSpec("cascade-tiny", None, 1))  # another random init
    with pytest.raises(CheckpointError, match="trained on"):
        load_run_checkpoint(path, other)
    bad = tmp_path / "evil.pt"
    bad.write_bytes(b"\x80\x04not a real pickle")
    with pytest.raises(CheckpointError, match="pickle"):
        load_run_checkpoint(bad, backbone)

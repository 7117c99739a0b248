"""Smoke test of ``cascade bench --quick`` on the tiny model (no timing asserts)."""
import json
import math

import pytest
import torch

from cascade.bench import ON_REQUEST, all_figures, default_figures
from cascade.cli import main

pytestmark = pytest.mark.timeout(600)   # the quick bench runs every figure, the trainer twice among them


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


@pytest.fixture(scope="module")
def bench_json(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "bench.json"
    threads = torch.get_num_threads()
    try:
        rc = main(["bench", "--model", "cascade-tiny", "--quick", "--json", str(path)])
    finally:
        torch.set_num_threads(threads)
    assert rc == 0
    return json.loads(path.read_text())


def test_every_figure_present(bench_json):
    for key in ("meta", "targets", *default_figures()):
        assert key in bench_json, key
    for key in ON_REQUEST:         # they train models: measured only when named in --figures
        assert key in all_figures() and key not in bench_json, key
    assert bench_json["meta"]["model"] == "cascade-tiny"
    assert bench_json["meta"]["quick"] is True


@pytest.mark.parametrize("figure", ["inference", "training"])
def test_throughput_figures(bench_json, figure):
    rows = bench_json[figure]["variants"]
    assert {"plain", "cascade", "shallow", "vpt-deep"} <= set(rows)
    for name, row in rows.items():
        for key in ("images_per_second", "seconds_median", "ratio_to_plain", "gflop_per_image"):
            assert _positive(row[key]), (figure, name, key, row[key])
    assert rows["plain"]["ratio_to_plain"] == 1.0
    if figure == "training":   # fp32 run: the bf16-stored backbone is timed beside it
        assert "cascade (frozen bf16)" in rows


def test_ratios_and_frozen_backbone(bench_json):
    inf, tr = bench_json["inference"], bench_json["training"]
    assert _positive(inf["cascade_vs_plain"]) and _positive(inf["cascade_vs_shallow"])
    assert _positive(tr["cascade_train_vs_plain_forward"])
    fb = tr["frozen_backbone"]
    assert fb["backbone_params_requiring_grad"] == 0
    assert fb["backbone_params_with_grad"] == 0
    assert fb["trainable_params_with_grad"] > 0


def test_prefix_cache(bench_json):
    pc = bench_json["prefix_cache"]
    assert pc["identical_logits"] is True
    assert pc["frozen_prefix_blocks"] == 5
    for row in pc["variants"].values():
        assert _positive(row["images_per_second"])
    assert 0 < pc["flop_saving"] < 1


def test_memory(bench_json):
    mem = bench_json["memory"]
    assert {"plain", "cascade", "shallow", "vpt-deep"} <= set(mem)
    for name, kinds in mem.items():
        for what, m in kinds.items():
            assert _positive(m.get("cpu_peak_rss_mb", m.get("cuda_peak_allocated_mb"))), (name, what)


def test_data_figure(bench_json):
    data = bench_json["data"]
    assert data["available"] and data["images"] == 64        # Emotion6, or generated JPEGs without it
    for row in data["loaders"]:
        assert _positive(row["images_per_second"]) and _positive(row["steady_images_per_second"])
    assert set(data["starved"]) == set(data["model_images_per_second"])
    dev = data["device"]
    for kind in ("augment", "eval"):
        assert _positive(dev[kind]["decode_once_images_per_second"]) and _positive(dev[kind]["steady_images_per_second"])
    assert _positive(dev["per_epoch_speedup"]) and _positive(dev["speedup_over_8_epochs"])
    for pipeline, row in data["trainer"].items():
        assert "error" not in row, row
        assert _positive(row["images_per_second"]) and 0 <= row["data_wait"] <= 1
        assert row["input_pipeline"]["kind"] == pipeline
    assert "loader_vs_step" not in data          # no CUDA: no verdict against a GPU step
    # the same images read from a tar shard, at every worker count the folder was timed at
    by = {(r["source"], r["workers"]): r["images"] for r in data["loaders"] if r["transform"] == "eval"}
    folder_workers = {w for s, w in by if s == "folder"}
    assert folder_workers and folder_workers == {w for s, w in by if s == "shards"}
    assert all(by[("shards", w)] == by[("folder", w)] for w in folder_workers)
    assert _positive(data["shards"]["ratio_to_folder"])


def test_analysis_and_cuda_rows(bench_json):
    for key in ("sigma_sweep", "cka"):
        row = bench_json["analysis"][key]
        if row["available"]:
            assert any(_positive(v) for k, v in row.items() if "second" in k or k.endswith("_ms")), row
        else:
            assert "not available" in row["skipped"] or "failed" in row["skipped"]
    cuda = bench_json["cuda"]
    if not torch.cuda.is_available():
        assert cuda["available"] is False and "cuda" in cuda["skipped"]


def test_explain_figure(bench_json):
    ex = bench_json["explain"]
    speed = ex["speed"]
    assert _positive(speed["cpu"]["seconds_median"]) and _positive(speed["cpu"]["explain_vs_forward"])
    assert speed["cpu"]["threads"] == 1 and "n/a (ViT-B-32, full run only)" in speed["summary"]
    assert "GPU figure not measured" in speed["summary"] or "GPU" in speed["summary"]
    maps = [k for k in ex if k.startswith("deletion ") and k != "deletion setup"]
    assert maps[-1] == "deletion fused" and len(maps) == 5
    for k in maps:
        row = ex[k]
        for key in ("auc_relevance", "auc_random", "auc_relevance_logit"):
            assert 0 < row[key] < 1, (k, key, row[key])
        assert "relevance order" in row["summary"] and "random" in row["summary"]


def test_targets_listed(bench_json):
    names = {t["name"] for t in bench_json["targets"]}
    assert "cascade inference time / plain encode_image" in names
    assert "cascade train step time / plain forward" in names
    for t in bench_json["targets"]:
        assert t["applies"] is False or t["name"] in ("cached == uncached logits", "backbone params with .grad")


CLASSES = ["anger", "disgust", "fear", "joy", "sadness", "surprise"]


def test_row_plan_and_flops(tiny_backbone):
    from cascade import CascadeConfig, build_model
    from cascade.flops import cascade_flops, plain_flops

    model = build_model(tiny_backbone, CLASSES, CascadeConfig.from_preset("b32-4stage"))
    n = tiny_backbone.info.num_patches
    rows = [(b["rows_in"], b["rows_out"]) for b in cascade_flops(model).blocks]
    full, drop = (1 + 16 + n, 1 + 16 + n), (1 + 16 + n, 1 + n)
    assert rows == [full] * 3 + [drop] + [full] * 3 + [drop] + [full] * 2 + [drop] + [(1 + 16 + n, 1)]
    slow = cascade_flops(model, fast=False)
    assert cascade_flops(model).forward < slow.forward
    assert plain_flops(tiny_backbone.info, tiny_backbone.visual).forward > 0


@pytest.mark.slow
def test_cuda_figure_dry_run_on_cpu(tiny_backbone):
    """The CUDA figure's code path (autocast, bf16 frozen backbone, compiled rows), run on the CPU."""
    import copy

    from cascade.bench.cuda_bench import bench_cuda

    backbone = copy.deepcopy(tiny_backbone)
    out = bench_cuda(backbone, batch_size=4, repeats=1, warmup=0, quick=True, device="cpu",
                     compile_mode="default", compile_backend="aot_eager")
    assert "errors" not in out, out.get("errors")
    rows = out["variants"]
    assert {"plain inference", "cascade inference", "cascade train step", "shallow train step",
            "plain inference (bf16 weights)", "cascade train step (frozen bf16)",
            "cascade train step (torch.compile default)",
            "cascade train step (frozen bf16, torch.compile default)"} == set(rows)
    for name, r in rows.items():
        assert _positive(r["images_per_second"]) and _positive(r["gflop_per_image"]), name
    assert out["compile"] == {"mode": "default", "backend": "aot_eager"}
    # Profiled before the timings: kernel lists of both training steps (empty without CUDA kernels).
    for key in ("trace_train_step", "trace_train_step_frozen_bf16", "trace_inference"):
        assert "top_kernels" in out[key] and out[key]["kernel_launches"] == 0, key
    # The bench's copies leave the caller's backbone in float32.
    assert backbone.visual.class_embedding.dtype == torch.float32


@pytest.mark.slow
def test_compiled_training_row(tmp_path):
    path = tmp_path / "bench.json"
    threads = torch.get_num_threads()
    try:
        rc = main(["bench", "--model", "cascade-tiny", "--quick", "--figures", "training", "--compile",
                   "--compile-backend", "aot_eager", "--json", str(path)])
    finally:
        torch.set_num_threads(threads)
    assert rc == 0
    comp = json.loads(path.read_text())["training"]["compile"]
    assert comp["mode"] == "default" and comp["backend"] == "aot_eager"
    assert set(comp["variants"]) == {"cascade", "cascade (torch.compile)"}
    assert _positive(comp["compiled_vs_eager"])
    assert all(_positive(r["images_per_second"]) for r in comp["variants"].values())

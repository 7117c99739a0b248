"""``cascade bench``: throughput, memory and data-pipeline figures, measured side by side.

Every comparison runs in one process, interleaved (see :mod:`.timing`), and is
reported as a ratio of medians (FLOP counts come from :mod:`cascade.flops`). Modules:
``timing`` (rounds, medians, peak memory), ``model_bench`` (figures 1-3), ``data_bench``
(figure 4), ``cuda_bench`` (figure 6), ``results``; ``plugins`` runs the figures other
packages add (``analysis``: σ-sweep and CKA timings, figure 5). ``lafter`` (label-free
stage 2 against its teacher: three training runs) runs only when asked for.
"""
from __future__ import annotations

import os
import platform
import time
import traceback
from dataclasses import dataclass, field

import torch

from ..backbone import load_backbone
from .cuda_bench import bench_cuda
from .data_bench import bench_data
from .lafter import bench_lafter
from .model_bench import (BenchContext, bench_compiled_training, bench_inference, bench_memory,
                          bench_prefix_cache, bench_training, build_variants)
from .plugins import plugin_figures, run_plugin

BUILTIN_FIGURES = ("inference", "training", "prefix_cache", "memory", "data", "cuda", "lafter")
ON_REQUEST = ("lafter",)      # trains models: only with --figures


def all_figures() -> tuple[str, ...]:
    """The built-in figures, then those of installed plugins (``analysis``, ...)."""
    return BUILTIN_FIGURES + tuple(n for n in plugin_figures() if n not in BUILTIN_FIGURES)


def default_figures() -> tuple[str, ...]:
    """The figures a bench without ``--figures`` measures: all but those that train models."""
    return tuple(f for f in all_figures() if f not in ON_REQUEST)


@dataclass
class BenchOptions:
    device: str = "cpu"
    model: str = "ViT-B-32"
    batch_size: int = 32
    quick: bool = False
    repeats: int | None = None
    warmup: int | None = None
    precision: str | None = None          # fp32 | bf16; default fp32 on CPU, bf16 on CUDA
    figures: tuple[str, ...] | None = None   # None: default_figures()
    reference: bool = True                # also time the model through open_clip's block modules
    mfu_batch_size: int = 256
    peak_tflops: float | None = None
    compile: str | None = None            # torch.compile mode for the compiled rows; None: none
    compile_backend: str = "inductor"
    data_root: str | None = None
    data_workers: list[int] = field(default_factory=list)
    data_images: int | None = None        # default: 5000 on CUDA (generated 640x480 JPEGs), 512 on CPU
    threads: int | None = None


def _loadavg() -> str | None:
    try:
        with open("/proc/loadavg") as fh:
            return " ".join(fh.read().split()[:3])
    except OSError:
        return None


def targets(res: dict, opts: BenchOptions) -> list[dict]:
    """The performance targets, evaluated on this run (they apply to a full ViT-B-32 batch-32 run)."""
    full = opts.model == "ViT-B-32" and not opts.quick
    cpu = full and opts.device == "cpu" and opts.batch_size == 32
    out = []

    def add(name, value, op, limit, applies):
        if value is None:
            return
        ok = value <= limit if op == "<=" else (value >= limit if op == ">=" else value == limit)
        out.append(dict(name=name, value=value, op=op, limit=limit, pass_=ok, applies=applies))

    inf, tr, pc, cu = res.get("inference", {}), res.get("training", {}), res.get("prefix_cache", {}), res.get("cuda", {})
    add("cascade inference time / plain encode_image", inf.get("cascade_vs_plain"), "<=", 1.35, cpu)
    add("cascade inference time / LaFTer shallow", inf.get("cascade_vs_shallow"), "<=", 0.85, cpu)
    add("cascade train step time / plain forward", tr.get("cascade_train_vs_plain_forward"), "<=", 2.6, cpu)
    if pc:
        add("b16-3stage cached step time saving", pc.get("step_time_saving"), ">=", 0.30, cpu)
        if "epoch_estimate" in pc:
            add("b16-3stage cached epoch time saving (with decode)", pc["epoch_estimate"]["epoch_time_saving"],
                ">=", 0.30, cpu)
        add("cached == uncached logits", float(bool(pc.get("identical_logits"))), "==", 1.0, True)
    la = res.get("lafter", {}).get("mean")
    if la:
        add("label-free stage 2 test accuracy gain over its 4-shot teacher (mean of 3 seeds)", la["gain"], ">=",
            la["target"], True)
    if "frozen_backbone" in tr:
        add("backbone params with .grad", float(tr["frozen_backbone"]["backbone_params_with_grad"]), "==", 0.0, True)
    lv = res.get("data", {}).get("loader_vs_step")
    if lv:
        add(f"device loader img/s / {lv['step']} img/s", lv["ratio"], ">=", 1.1, lv["applies"])
    if cu.get("available"):
        mfu_applies = full and cu.get("batch_size") == 256 and cu.get("peak_bf16_tflops") is not None
        add("CUDA cascade train MFU (bf16 autocast, eager)", cu.get("cascade_train_mfu"), ">=", 0.30, mfu_applies)
        best = cu.get("best_cascade_train")
        if best and best["variant"] != "cascade train step":
            add(f"CUDA {best['variant']} MFU", best["mfu"], ">=", 0.30, mfu_applies)
    for t in out:
        t["pass"] = t.pop("pass_")
    return out


def _guard(res: dict, key: str, fn, log) -> None:
    """Run one figure; a failure is recorded under its key rather than losing the others."""
    try:
        res[key] = fn()
    except Exception as exc:  # noqa: BLE001 - a bench reports what broke and carries on
        log(f"bench: {key} failed: {exc.__class__.__name__}: {exc}")
        res[key] = {"available": False, "error": f"{exc.__class__.__name__}: {exc}",
                    "skipped": f"failed: {exc.__class__.__name__}: {exc}",
                    "traceback": traceback.format_exc(limit=6)}


def _epoch_estimate(res: dict, batch_size: int) -> None:
    """Per-batch epoch cost with and without the prefix cache, data loading included.

    Without the cache every epoch decodes and preprocesses each image again; with it,
    the cached tokens are read from memory. The decode cost is the single-process
    (0-worker) rate of the data figure: on a machine whose loader workers share the
    model's CPU cores that time is not hidden; with spare cores it partly is.
    """
    pc, data = res.get("prefix_cache", {}), res.get("data", {})
    if "variants" not in pc or not data.get("available"):
        return
    rates = [r["steady_images_per_second"] for r in data["loaders"]
             if r["transform"] == "eval" and r["workers"] == 0 and r.get("source", "folder") == "folder"]
    if not rates:
        return
    decode = batch_size / rates[0]
    unc = pc["variants"]["uncached"]["seconds_median"] + decode
    cac = pc["variants"]["cached"]["seconds_median"]
    pc["epoch_estimate"] = {"decode_seconds_per_batch": decode, "uncached_seconds_per_batch": unc,
                            "cached_seconds_per_batch": cac, "epoch_time_saving": 1 - cac / unc,
                            "note": "step medians + single-process decode time per batch (not hidden on 2 cores)"}


def _loader_verdict(res: dict) -> None:
    """The device loader against the compiled training step of the same run (target 1.1×)."""
    data, cu, tr = res.get("data", {}), res.get("cuda", {}), res.get("training", {})
    aug = (data.get("device") or {}).get("augment")
    if not aug:
        return
    rows = {k: v["images_per_second"] for k, v in (cu.get("variants") or {}).items() if k.startswith("cascade train")}
    compiled = {k: v for k, v in rows.items() if "torch.compile" in k}
    if not compiled and "compile" in tr and "variants" in tr["compile"]:
        compiled = {"cascade train step (torch.compile)": tr["compile"]["variants"]["cascade (torch.compile)"]
                    ["images_per_second"]}
    pool, note = (compiled, "") if compiled else (rows, "compiled step not timed (add --compile reduce-overhead): "
                                                        "against the fastest eager step")
    if not pool:
        return
    step = max(pool, key=pool.get)
    ratio = aug["steady_images_per_second"] / pool[step]
    data["loader_vs_step"] = {"loader_images_per_second": aug["steady_images_per_second"], "step": step,
                              "step_images_per_second": pool[step], "ratio": ratio, "target": 1.1,
                              "applies": bool(compiled) and cu.get("available", False), "note": note}


def run_bench(opts: BenchOptions, log=print) -> dict:
    if opts.threads:
        torch.set_num_threads(opts.threads)
    device = torch.device(opts.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench: --device cuda but torch.cuda.is_available() is False")
    precision = opts.precision or ("bf16" if device.type == "cuda" else "fp32")
    repeats = opts.repeats or (2 if opts.quick else (10 if device.type == "cuda" else 5))
    warmup = opts.warmup if opts.warmup is not None else 1
    start = time.perf_counter()
    backbone = load_backbone(opts.model, None, device=device)
    info = backbone.info
    res: dict = {
        "meta": {
            "model": opts.model, "random_weights": info.random_weights, "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
            "batch_size": opts.batch_size, "precision": precision, "quick": opts.quick, "repeats": repeats,
            "warmup": warmup, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "torch": torch.__version__, "loadavg_start": _loadavg(),
            "timing": "interleaved rounds in one process; medians; ratios of medians",
        }
    }
    ctx = BenchContext(backbone, device, opts.batch_size, precision=precision, warmup=warmup, repeats=repeats)
    want = set(opts.figures or default_figures())
    models = build_variants(ctx) if want & {"inference", "training", "memory", "data"} else {}
    if "inference" in want:
        log("bench: inference ...")
        _guard(res, "inference", lambda: bench_inference(ctx, models, reference=opts.reference), log)
    if "training" in want:
        log("bench: training steps ...")
        _guard(res, "training", lambda: bench_training(ctx, models, reference=opts.reference), log)
    if "prefix_cache" in want:
        log("bench: frozen-prefix cache ...")
        _guard(res, "prefix_cache", lambda: bench_prefix_cache(ctx), log)
    if "memory" in want:
        log("bench: peak memory ...")
        _guard(res, "memory", lambda: bench_memory(ctx, models), log)
    if "data" in want:
        log("bench: data pipeline ...")
        model_ips = {}
        if "variants" in res.get("inference", {}):
            model_ips["cascade inference"] = res["inference"]["variants"]["cascade"]["images_per_second"]
        if "variants" in res.get("training", {}):
            model_ips["cascade training"] = res["training"]["variants"]["cascade"]["images_per_second"]
        cuda = device.type == "cuda"
        workers = opts.data_workers or ([0, 1] if opts.quick else
                                        [os.cpu_count() or 1] if cuda else sorted({0, 1, 2, os.cpu_count() or 1}))
        images = opts.data_images or (2 * opts.batch_size if opts.quick else 5000 if cuda else 512)
        # The trainer on generated JPEGs: at the MFU batch on a GPU, a short CPU run otherwise.
        trainer = dict(images=48 if opts.quick else images if cuda else 256,
                       model=opts.model, batch_size=opts.mfu_batch_size if cuda and not opts.quick else opts.batch_size,
                       compile_mode=opts.compile)
        _guard(res, "data", lambda: bench_data(
            info.image_size, batch_size=opts.batch_size, workers=workers, num_images=images, root=opts.data_root,
            model_images_per_second=model_ips, device=str(device), trainer=trainer), log)
    _epoch_estimate(res, opts.batch_size)
    if "lafter" in want:
        log("bench: label-free stage 2 against its 4-shot teacher (synthetic faces, 3 seeds) ...")
        _guard(res, "lafter", lambda: bench_lafter(quick=opts.quick), log)
    plugins = plugin_figures()
    context = dict(quick=opts.quick, device=str(device), model=opts.model, batch_size=opts.batch_size,
                   width=info.width, depth=info.depth, embed_dim=info.embed_dim, image_size=info.image_size,
                   backbone=backbone)
    for name in sorted(want & set(plugins)):
        log(f"bench: {name} ...")
        _guard(res, name, lambda fn=plugins[name]: run_plugin(fn, context), log)
    if "cuda" in want:
        if device.type != "cuda":
            res["cuda"] = {"available": False, "skipped": f"device is {device.type}: run with --device cuda"}
        else:
            log("bench: CUDA bf16 / MFU ...")
            _guard(res, "cuda", lambda: bench_cuda(
                backbone, batch_size=opts.batch_size if opts.quick else opts.mfu_batch_size, repeats=repeats,
                warmup=warmup, quick=opts.quick, peak_override=opts.peak_tflops, compile_mode=opts.compile,
                compile_backend=opts.compile_backend), log)
    if opts.compile and "training" in want and "variants" in res.get("training", {}):
        log(f"bench: torch.compile (mode {opts.compile}) of the training step ...")
        _guard(res["training"], "compile", lambda: bench_compiled_training(ctx, models["cascade"], opts.compile,
                                                                          opts.compile_backend), log)
    _loader_verdict(res)
    res["targets"] = targets(res, opts)
    res["meta"]["loadavg_end"] = _loadavg()
    res["meta"]["seconds"] = time.perf_counter() - start
    return res


__all__ = ["BUILTIN_FIGURES", "ON_REQUEST", "BenchOptions", "all_figures", "default_figures", "run_bench",
           "targets"]

"""Figure 6 (CUDA only): bf16 autocast, the attention kernel in use, throughput and MFU."""
from __future__ import annotations

import copy
import dataclasses
import os
import re

import torch
from torch.profiler import ProfilerActivity, profile

from ..flops import cascade_flops, counted_flops, peak_tflops, plain_flops
from ..model import compile_model
from .model_bench import (BenchContext, build_variants, frozen_bf16_variant, image_row, inference, plain_forward,
                          train_step)
from .timing import compare

ATTENTION_PATTERNS = ("flash", "fmha", "efficient", "cudnn_sdpa", "attention")
GEMM_PATTERN = re.compile(r"gemm|xmma|cutlass|nvjet|sm\d+_.*mma|cublas", re.I)


def bf16_backbone(backbone):
    """A copy of ``backbone`` with all its weights in bf16."""
    model = copy.deepcopy(backbone.model).to(torch.bfloat16)
    return dataclasses.replace(backbone, model=model)


def sdpa_flags() -> dict:
    b = torch.backends.cuda
    flags = {
        "flash_sdp_enabled": b.flash_sdp_enabled(),
        "mem_efficient_sdp_enabled": b.mem_efficient_sdp_enabled(),
        "math_sdp_enabled": b.math_sdp_enabled(),
    }
    if hasattr(b, "cudnn_sdp_enabled"):
        flags["cudnn_sdp_enabled"] = b.cudnn_sdp_enabled()
    return flags


def kernel_trace(fn, device: torch.device, top: int = 12) -> dict:
    """Names and GPU time of the kernels one call of ``fn`` launches (torch.profiler)."""
    on_cuda = device.type == "cuda"
    fn()
    if on_cuda:
        torch.cuda.synchronize(device)
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_cuda else [])) as prof:
        fn()
        if on_cuda:
            torch.cuda.synchronize(device)
    kernels: dict[str, float] = {}
    launches = 0
    for evt in prof.events():
        if getattr(evt, "device_type", None) == torch.autograd.DeviceType.CUDA:
            try:
                us = float(evt.time_range.elapsed_us())
            except AttributeError:
                us = float(getattr(evt, "device_time_total", 0.0) or 0.0)
            kernels[evt.name] = kernels.get(evt.name, 0.0) + us
            launches += 1
    total = sum(kernels.values()) or 1.0
    attention = {k: v for k, v in kernels.items() if any(p in k.lower() for p in ATTENTION_PATTERNS)}
    gemm = sum(v for k, v in kernels.items() if GEMM_PATTERN.search(k))
    ranked = sorted(kernels.items(), key=lambda kv: -kv[1])[:top]
    return {
        "kernel_launches": launches,
        "gpu_time_ms": total / 1e3,
        "attention_kernels": sorted(attention),
        "attention_share": sum(attention.values()) / total,
        "gemm_share": gemm / total,
        "uses_flash": any("flash" in k.lower() for k in attention),
        "uses_mem_efficient": any(("fmha" in k.lower() or "efficient" in k.lower()) for k in attention),
        "uses_cudnn": any("cudnn" in k.lower() for k in attention),
        "top_kernels": [{"name": k[:120], "ms": v / 1e3, "share": v / total} for k, v in ranked],
    }


def bench_cuda(backbone, *, batch_size: int, repeats: int, warmup: int, quick: bool,
               peak_override: float | None = None, compile_mode: str | None = None,
               compile_backend: str = "inductor", device: str = "cuda") -> dict:
    """``compile_mode``: also time ``torch.compile`` (that mode) of the cascade training step,
    under bf16 autocast and with the frozen backbone stored in bf16 (each compile takes
    about a minute on an H100).
    ``device`` other than cuda is for dry runs of this code path (no kernel names, no peak)."""
    device = torch.device(device)
    on_cuda = device.type == "cuda"
    name = torch.cuda.get_device_name(device) if on_cuda else "cpu (dry run)"
    peak, peak_source = peak_tflops(name, peak_override or float(os.environ.get("CASCADE_PEAK_TFLOPS", 0) or 0))
    ctx = BenchContext(backbone, device, batch_size, precision="bf16", warmup=warmup, repeats=repeats)
    models = build_variants(ctx, ["cascade", "shallow"])
    x, y = ctx.images(), ctx.labels()
    cascade = models["cascade"]
    out: dict = {
        "available": True,
        "device_name": name,
        "capability": ".".join(map(str, torch.cuda.get_device_capability(device))) if on_cuda else None,
        "precision": "bf16 autocast (fp32 weights and residual stream); 'frozen bf16' rows: the frozen ViT "
                     "stored in bf16 without autocast (train.frozen_dtype: bf16)",
        "batch_size": batch_size,
        "peak_bf16_tflops": peak,
        "peak_source": peak_source,
        "sdpa": sdpa_flags() if on_cuda else None,
        "compile": None if compile_mode is None else {"mode": compile_mode, "backend": compile_backend},
    }
    fns = {
        "plain inference": plain_forward(ctx, x),
        "cascade inference": inference(ctx, cascade, x),
        "cascade train step": train_step(ctx, cascade, x, y),
        "shallow train step": train_step(ctx, models["shallow"], x, y),
    }
    flops = {
        "plain inference": plain_flops(backbone.info, backbone.visual).forward,
        "cascade inference": cascade_flops(cascade, batch_size=batch_size).forward,
        "cascade train step": cascade_flops(cascade, batch_size=batch_size).train_step,
        "shallow train step": cascade_flops(models["shallow"], batch_size=batch_size).train_step,
    }
    # The frozen backbone stored in bf16 (as OpenAI's CLIP runs in fp16 on GPUs): no per-step
    # weight casts, half the activation traffic. Plain inference: all of the ViT in bf16.
    # Cascade: what train.frozen_dtype=bf16 does (the trainable parameters, ln_post/proj and
    # the losses stay fp32; AdamW keeps fp32 weights).
    ctx16 = BenchContext(bf16_backbone(backbone), device, batch_size, precision="fp32", warmup=warmup,
                         repeats=repeats)
    x16 = x.to(torch.bfloat16)
    cascade16 = frozen_bf16_variant(ctx)
    fns["plain inference (bf16 weights)"] = plain_forward(ctx16, x16)
    fns["cascade train step (frozen bf16)"] = train_step(ctx16, cascade16, x16, y)
    flops["plain inference (bf16 weights)"] = flops["plain inference"]
    flops["cascade train step (frozen bf16)"] = flops["cascade train step"]
    # Profile first: the kernel lists say where the step's time goes before any tuning, and
    # they survive a timeout in the (long) compiled rows below.
    for key, fn in [("trace_train_step", lambda: kernel_trace(train_step(ctx, cascade, x, y), device, top=20)),
                    ("trace_train_step_frozen_bf16",
                     lambda: kernel_trace(train_step(ctx16, cascade16, x16, y), device, top=20)),
                    ("trace_inference", lambda: kernel_trace(inference(ctx, cascade, x), device))]:
        try:
            out[key] = fn()
        except Exception as exc:  # noqa: BLE001 - profiler support varies; keep the timings
            out[key] = {"error": f"{exc.__class__.__name__}: {exc}"}
            out.setdefault("errors", []).append(f"{key}: {exc.__class__.__name__}: {exc}")
    if compile_mode:
        for label, c, m, xx in [(f"cascade train step (torch.compile {compile_mode})", ctx, cascade, x),
                                (f"cascade train step (frozen bf16, torch.compile {compile_mode})", ctx16,
                                 cascade16, x16)]:
            try:
                fn = train_step(c, compile_model(m, compile_mode, compile_backend), xx, y)
                fn()  # compiles here, so a failure drops this row only
                fns[label] = fn
                flops[label] = flops["cascade train step"]
            except Exception as exc:  # compile support varies by platform
                out.setdefault("errors", []).append(f"{label}: {exc.__class__.__name__}: {exc}")
    inner = 1 if quick else 5
    t = compare(fns, items=batch_size, warmup=warmup + 1, repeats=repeats, sync=ctx.sync, inner=inner)
    rows = {}
    for k, tm in t.items():
        row = image_row(tm)
        row["seconds_per_call"] = tm.median / inner
        row["gflop_per_image"] = flops[k] / 1e9
        row["achieved_tflops"] = flops[k] * batch_size * inner / tm.median / 1e12
        row["mfu"] = row["achieved_tflops"] / peak if peak else None
        row["ratio_to_plain_inference"] = tm.median / t["plain inference"].median
        rows[k] = row
    out["variants"] = rows
    out["cascade_train_mfu"] = rows["cascade train step"]["mfu"]
    train_rows = {k: r for k, r in rows.items() if k.startswith("cascade train step") and r["mfu"] is not None}
    if train_rows:
        best = max(train_rows, key=lambda k: train_rows[k]["mfu"])
        out["best_cascade_train"] = {"variant": best, "mfu": train_rows[best]["mfu"]}
    out["analytic_train_step_flops"] = flops["cascade train step"] * batch_size
    try:
        out["flop_counter_train_step"] = counted_flops(train_step(ctx, cascade, x, y))
    except Exception as exc:  # noqa: BLE001 - the counter's support varies; keep the timings
        out["flop_counter_train_step"] = None
        out.setdefault("errors", []).append(f"flop_counter_train_step: {exc.__class__.__name__}: {exc}")
    return out

"""The bench's printed table and its JSON file."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .. import fileio


def write_json(result: dict, path: str | os.PathLike) -> Path:
    return fileio.write_json(path, result)


def _f(v: Any, spec: str = ".2f") -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, float)):
        return format(v, spec)
    return str(v)


def _table(title: str, header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    out = ["", title, line, "-" * len(line)]
    out += ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    return out


# Figures printed by their own sections below.
_KNOWN = {"meta", "targets", "inference", "training", "prefix_cache", "memory", "data", "analysis", "cuda"}


def format_report(res: dict) -> str:
    meta = res.get("meta", {})
    lines = [f"cascade bench: {meta.get('model')} ({'random' if meta.get('random_weights') else 'pretrained'} weights), "
             f"device {meta.get('device')}, batch {meta.get('batch_size')}, {meta.get('precision')}, "
             f"{meta.get('threads')} threads, {meta.get('repeats')} repeats (median), load avg "
             f"{meta.get('loadavg_start')} -> {meta.get('loadavg_end')}"]

    def throughput(key: str, title: str, ratio_label: str) -> None:
        fig = res.get(key)
        if not fig or "variants" not in fig:
            return
        rows = []
        for name, r in fig["variants"].items():
            rows.append([name, _f(r.get("images_per_second"), ".1f"), _f(r.get("seconds_median"), ".3f"),
                         _f(r.get("ratio_to_plain"), ".3f"), _f(r.get("cpu_ratio_to_plain"), ".3f"),
                         _f(r.get("gflop_per_image"), ".2f"), _f(r.get("achieved_tflops"), ".3f"), _f(r.get("spread"), ".2f")])
        lines.extend(_table(title, ["variant", "img/s", "s/batch", ratio_label, "cpu-time ratio", "GFLOP/img",
                                    "TFLOP/s", "spread"], rows))

    throughput("inference", "1. Inference (no grad)", "time / plain")
    throughput("training", "2. Training step (fwd + bwd + AdamW, backbone frozen)", "time / plain fwd")
    tr = res.get("training", {})
    if "frozen_backbone" in tr:
        fb = tr["frozen_backbone"]
        lines.append(f"   backbone params requiring grad: {fb['backbone_params_requiring_grad']}, "
                     f"with .grad after backward: {fb['backbone_params_with_grad']}")
    c = tr.get("compile")
    if c and "compiled_vs_eager" in c:
        ips = {k: v["images_per_second"] for k, v in c["variants"].items()}
        lines.append(f"   torch.compile (mode {c['mode']}, {c['backend']}), timed last: step time / eager step "
                     f"{c['compiled_vs_eager']:.3f} ({ips['cascade (torch.compile)']:.1f} vs {ips['cascade']:.1f} img/s)")
    elif c:
        lines.append(f"   torch.compile: {c.get('error')}")
    pc = res.get("prefix_cache")
    if pc and "variants" in pc:
        rows = [[k, _f(v["images_per_second"], ".1f"), _f(v["seconds_median"], ".3f")] for k, v in pc["variants"].items()]
        lines.extend(_table(f"2b. Frozen-prefix cache ({pc['preset']}, {pc['frozen_prefix_blocks']} cached blocks)",
                            ["training step", "img/s", "s/batch"], rows))
        lines.append(f"   step time saving {_f(pc['step_time_saving'] * 100, '.1f')} % (cpu time "
                     f"{_f((pc.get('cpu_time_saving') or 0) * 100, '.1f')} %, FLOPs {_f(pc['flop_saving'] * 100, '.1f')} %), "
                     f"identical logits: {_f(pc['identical_logits'])}")
        if "epoch_estimate" in pc:
            ee = pc["epoch_estimate"]
            lines.append(f"   per batch with JPEG decode: uncached {ee['uncached_seconds_per_batch']:.3f} s "
                         f"(decode {ee['decode_seconds_per_batch']:.3f} s), cached {ee['cached_seconds_per_batch']:.3f} s "
                         f"-> epoch saving {ee['epoch_time_saving'] * 100:.1f} %")
    mem = res.get("memory")
    if mem:
        rows = []
        for name, r in mem.items():
            for what, m in r.items():
                peak = m.get("cuda_peak_allocated_mb", m.get("cpu_peak_rss_mb"))
                above = m.get("cuda_peak_above_start_mb", m.get("cpu_peak_above_start_mb"))
                rows.append([f"{name} {what}", _f(peak, ".0f"), _f(above, ".0f")])
        kind = "CUDA max allocated" if any("cuda_peak_allocated_mb" in m for r in mem.values() for m in r.values()) else "CPU RSS"
        lines.extend(_table(f"3. Peak memory ({kind}, MiB)", ["variant", "peak", "above start"], rows))
    data = res.get("data")
    if data is not None:
        if not data.get("available"):
            lines.extend(["", f"4. Data pipeline: skipped: {data.get('skipped')}"])
        else:
            rows = [[f"cpu: {r.get('source', 'folder')}, decode + {r['transform']}, {r['workers']} workers", _f(r["steady_images_per_second"], ".1f"),
                     _f(r["images_per_second"], ".1f"), _f(r["startup_seconds"], ".2f")] for r in data["loaders"]]
            dev = data.get("device") or {}
            for kind in ("augment", "eval"):
                d = dev.get(kind)
                if d:
                    rows.append([f"device: decode once ({kind} store)", "-", _f(d["decode_once_images_per_second"], ".1f"),
                                 _f(d["decode_once_seconds"], ".2f")])
                    rows.append([f"device: {kind} batches on {dev['device']} (pixels on {d['pixels_on']})",
                                 _f(d["steady_images_per_second"], ".1f"), "-", "-"])
            lines.extend(_table(f"4. Input pipelines ({data.get('images')} JPEGs from {data['root']}; {data['image_size']} px)",
                                ["loader", "img/s steady", "img/s total", "startup s"], rows))
            if dev:
                n = dev["epochs"]
                lines.append(f"   device vs cpu (train augmentation): {dev['per_epoch_speedup']:.2f}x per epoch, "
                             f"{dev[f'speedup_over_{n}_epochs']:.2f}x over {n} epochs with the one-time decode")
            sh = data.get("shards")
            if sh:
                lines.append(f"   tar shard vs image files (best eval rows): {sh['best_eval_images_per_second']:.1f} vs "
                             f"{data['best_eval_images_per_second']:.1f} img/s = {sh['ratio_to_folder']:.2f}x ({sh['note']})")
            for k, v in data.get("model_images_per_second", {}).items():
                lines.append(f"   model {k}: {v:.1f} img/s -> {'STARVED by the loader' if data['starved'][k] else 'loader keeps up'}")
            for name, t in (data.get("trainer") or {}).items():
                if "error" in t:
                    lines.append(f"   trainer, input_pipeline {name}: FAILED: {t['error']}")
                    continue
                lines.append(f"   trainer, input_pipeline {name} ({t['images']} JPEGs, batch {t['batch_size']}, "
                             f"{t['epochs']} epochs, augment): {_f(t['images_per_second'], '.1f')} img/s, waiting on "
                             f"data {_f((t['data_wait'] or 0) * 100, '.1f')} % of step time")
            lv = data.get("loader_vs_step")
            if lv:
                verdict = ("PASS" if lv["ratio"] >= lv["target"] else "FAIL") if lv["applies"] else "n/a"
                lines.append(f"   device loader {lv['loader_images_per_second']:.0f} img/s vs {lv['step']} "
                             f"{lv['step_images_per_second']:.0f} img/s: {lv['ratio']:.2f}x (target >= "
                             f"{lv['target']}x: {verdict}) {lv['note']}")
    an = res.get("analysis")
    if an:
        lines.append("")
        lines.append("5. Analysis timings")
        sw = an.get("sigma_sweep", {})
        if sw.get("available"):
            lines.append(f"   sigma sweep: {_f(sw.get('sweep_seconds'), '.3f')} s for {sw.get('num_sigmas')} sigma x stages "
                         f"(n={sw.get('n')}), one configuration {_f(sw.get('evaluate_ms'), '.2f')} ms, setup "
                         f"{_f(sw.get('setup_seconds'), '.3f')} s")
        else:
            lines.append(f"   sigma sweep: {sw.get('skipped')}")
        ck = an.get("cka", {})
        if ck.get("available"):
            lines.append(f"   CKA matrix: {_f(ck.get('seconds_median'), '.3f')} s for {ck.get('layers')}x{ck.get('layers')} "
                         f"layers, n={ck.get('n')}, d={ck.get('d')}")
        else:
            lines.append(f"   CKA: {ck.get('skipped')}")
    for key, fig in res.items():
        # Figures of other plugins print the rows that carry a one-line summary.
        if key in _KNOWN or not isinstance(fig, dict):
            continue
        rows = [(name, row) for name, row in fig.items() if isinstance(row, dict) and row.get("summary")]
        if rows:
            lines.extend(["", f"{key}:"] + [f"   {name}: {row['summary']}" for name, row in rows])
    cu = res.get("cuda")
    if cu is not None:
        if not cu.get("available"):
            lines.extend(["", f"6. CUDA: {cu.get('skipped')}"])
        else:
            rows = [[k, _f(r["images_per_second"], ".0f"), _f(r["seconds_per_call"] * 1e3, ".2f"),
                     _f(r["achieved_tflops"], ".1f"), _f(r["mfu"] * 100 if r["mfu"] is not None else None, ".1f"),
                     _f(r["ratio_to_plain_inference"], ".2f")] for k, r in cu["variants"].items()]
            lines.extend(_table(f"6. CUDA {cu['device_name']}, {cu['precision']}, batch {cu['batch_size']} "
                                f"(peak {cu['peak_bf16_tflops']} TFLOP/s, {cu['peak_source']})",
                                ["variant", "img/s", "ms/step", "TFLOP/s", "MFU %", "time / plain inf"], rows))
            lines.append(f"   SDPA flags: {cu['sdpa']}")
            for key, what in (("trace_train_step", "train step, bf16 autocast"),
                              ("trace_train_step_frozen_bf16", "train step, frozen bf16 (the default on GPUs)")):
                tt = cu.get(key) or {}
                if "attention_kernels" not in tt:
                    if tt:
                        lines.append(f"   profiler trace ({what}): {tt.get('error')}")
                    continue
                lines.append(f"   kernels of one {what}: {tt['kernel_launches']} launches, {tt['gpu_time_ms']:.2f} ms "
                             f"kernel time; gemm {tt['gemm_share'] * 100:.0f} %, attention "
                             f"{tt['attention_share'] * 100:.0f} % ({', '.join(tt['attention_kernels']) or 'none found'})")
                for k in tt.get("top_kernels", []):
                    lines.append(f"     {k['share'] * 100:5.1f} %  {k['ms']:8.3f} ms  {k['name']}")
            fc = cu.get("flop_counter_train_step")
            lines.append(f"   FLOPs/step: analytic {cu['analytic_train_step_flops'] / 1e12:.3f} T, "
                         f"FlopCounterMode {fc / 1e12 if fc else float('nan'):.3f} T")
    for key, fig in res.items():
        if isinstance(fig, dict) and fig.get("error"):
            lines.append(f"\n{key}: FAILED: {fig['error']}")
    targets = res.get("targets", [])
    if targets:
        rows = [[t["name"], _f(t["value"], ".3f"), f"{t['op']} {t['limit']}",
                 ("PASS" if t["pass"] else "FAIL") if t["applies"] else "n/a"] for t in targets]
        lines.extend(_table("Targets (apply to ViT-B-32, batch 32, full run; MFU: CUDA batch 256)",
                            ["target", "value", "limit", "status"], rows))
    return "\n".join(lines)

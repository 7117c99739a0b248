"""End-to-end trainer throughput: ``cascade train`` itself, eager against the GPU speed settings.

    python benchmarks/trainer_throughput.py --device cuda --json out.json        # ViT-B-32, batch 256
    python benchmarks/trainer_throughput.py --model cascade-tiny --device cpu --images 192 --batch-size 32 \
        --compile-backend aot_eager                                               # smoke run

``cascade bench`` times one training step in isolation; this runs the real trainer
(data pipeline, prefix cache, loss bookkeeping, logging, host syncs) on synthetic images
with random weights, one ``global`` phase (every stage trains, the step that
``cascade bench`` counts), and reads the images/s the trainer logs. The first logged
window of each run holds warm-up (and compilation): it is reported, not averaged.

Variants (one run each, same data, same seed; the b32-4stage preset with 16 prompt tokens):
  eager          train.amp=bf16 on CUDA (float32 on CPU), train.frozen_dtype=fp32, train.compile=none
  bf16           train.frozen_dtype=bf16, train.amp=none, train.compile=none
  compiled       train.frozen_dtype=bf16, train.amp=none, train.compile=<--compile> (default reduce-overhead on CUDA)
  auto           the defaults (train.frozen_dtype: auto, train.compile: auto): what a user gets; the log
                 holds the compile plan (a run this short mostly stays eager)
  compiled-fp32  as eager, with train.compile=<--compile>   (not run unless named in --variants)
MFU = images/s x the analytic training-step FLOPs per image / the device's peak bf16 FLOP/s.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TINY_YAML = Path(__file__).resolve().parents[1] / "configs" / "synthetic-tiny.yaml"


VARIANTS = ("eager", "bf16", "compiled", "auto", "compiled-fp32")


def variant_overrides(name: str, device: str, compile_mode: str, backend: str) -> list[str]:
    amp = f"train.amp={'bf16' if device == 'cuda' else 'none'}"
    compiled = [f"train.compile={compile_mode}", f"train.compile_backend={backend}"]
    if name == "eager":
        return [amp, "train.frozen_dtype=fp32", "train.compile=none"]
    if name == "auto":
        return ["train.amp=none", "train.frozen_dtype=auto", "train.compile=auto"]
    if name == "bf16":
        return ["train.amp=none", "train.frozen_dtype=bf16", "train.compile=none"]
    if name == "compiled":
        return ["train.amp=none", "train.frozen_dtype=bf16", *compiled]
    if name == "compiled-fp32":
        return [amp, "train.frozen_dtype=fp32", *compiled]
    raise SystemExit(f"--variants: unknown variant {name!r}; choose from {', '.join(VARIANTS)}")


def run_variant(name: str, args, runs_dir: Path) -> dict:
    from cascade.run_config import load_run_config
    from cascade.train import train

    steps_per_epoch = max(1, args.images // args.batch_size)
    settings = variant_overrides(name, args.device, args.compile, args.compile_backend)
    overrides = [
        f"backbone.model_name={args.model}", "backbone.pretrained=none",
        "model.preset=b32-4stage", "model.prompt_tokens=16",            # the step cascade bench counts
        f"data.synthetic.num_samples={args.images * 100 // 70 + 1}",   # the train split is 70 %
        f"data.synthetic.image_size={args.image_size}",
        "train.epochs.warmup=0", "train.epochs.unfreeze=0", f"train.epochs.global={args.epochs}",
        f"train.batch_size={args.batch_size}", f"train.device={args.device}",
        f"train.num_workers={args.workers}", f"train.log_every_steps={max(1, steps_per_epoch // 4)}",
        "train.eval_stages=false", f"run.runs_dir={runs_dir}", f"run.name={name}",
        *settings,
    ]
    cfg = load_run_config(TINY_YAML, overrides)
    t0 = time.perf_counter()
    path = train(cfg, quiet=True)
    wall = time.perf_counter() - t0
    records = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines() if line.strip()]
    steps = [r for r in records if r["kind"] == "step"]
    rates = [r["images_per_s"] for r in steps]
    compiles = [r["first_step_seconds"] for r in records if r["kind"] == "compile"]
    steady = rates[1:] or rates
    return {"settings": settings, "wall_seconds": wall, "logged_windows": len(rates),
            "first_window_images_per_s": rates[0] if rates else None,
            "images_per_s": statistics.median(steady) if steady else None,
            "compile_first_step_seconds": compiles, "run": str(path)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--images", type=int, default=6144, help="training images per epoch (synthetic)")
    ap.add_argument("--image-size", type=int, default=None, help="default: the model's input size")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--variants", default="eager,bf16,compiled,auto")
    ap.add_argument("--compile", default=None, help="torch.compile mode (default: reduce-overhead on CUDA, "
                                                     "default on CPU)")
    ap.add_argument("--compile-backend", default="inductor")
    ap.add_argument("--peak-tflops", type=float, default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    args.compile = args.compile or ("reduce-overhead" if args.device == "cuda" else "default")

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("trainer_throughput: --device cuda, but torch.cuda.is_available() is False")
    from cascade import CascadeConfig, build_model, load_backbone
    from cascade.flops import cascade_flops, peak_tflops

    backbone = load_backbone(args.model, None)
    args.image_size = args.image_size or backbone.info.image_size
    flops = cascade_flops(build_model(backbone, ["a", "b", "c", "d", "e", "f"], CascadeConfig.from_preset("b32-4stage")),
                          batch_size=args.batch_size).train_step
    del backbone
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    peak, peak_source = peak_tflops(device_name, args.peak_tflops)
    out = {"model": args.model, "device": device_name, "batch_size": args.batch_size, "images": args.images,
           "gflop_per_image": flops / 1e9, "peak_bf16_tflops": peak, "peak_source": peak_source, "variants": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in [v.strip() for v in args.variants.split(",") if v.strip()]:
            print(f"== {name}", file=sys.stderr, flush=True)
            try:
                row = run_variant(name, args, Path(tmp))
            except Exception as exc:  # noqa: BLE001 - report the failure, keep the other variants
                row = {"error": f"{exc.__class__.__name__}: {exc}"}
            ips = row.get("images_per_s")
            if ips:
                row["achieved_tflops"] = ips * flops / 1e12
                row["mfu"] = row["achieved_tflops"] / peak if peak else None
            out["variants"][name] = row
    base = out["variants"].get("eager", {}).get("images_per_s")
    print(f"trainer throughput: {args.model}, {device_name}, batch {args.batch_size}, "
          f"{flops / 1e9:.2f} GFLOP/image per step, peak {peak} TFLOP/s ({peak_source})")
    print(f"{'variant':10} {'img/s':>9} {'x eager':>8} {'MFU':>7} {'first window':>13} {'compile s':>10}  settings")
    for name, r in out["variants"].items():
        if "error" in r:
            print(f"{name:10} failed: {r['error']}")
            continue
        ips = r["images_per_s"]
        mfu = f"{100 * r['mfu']:.1f}%" if r.get("mfu") else "-"
        comp = ",".join(f"{s:.0f}" for s in r["compile_first_step_seconds"]) or "-"
        print(f"{name:10} {ips:9.1f} {ips / base if base else float('nan'):8.2f} {mfu:>7} "
              f"{r['first_window_images_per_s']:13.1f} {comp:>10}  {' '.join(r['settings'])}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2))
        print(f"wrote {args.json}")
    return 0 if all("error" not in r for r in out["variants"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())

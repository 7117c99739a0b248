"""Profile one inference call or training step of a variant with torch.profiler.

    .venv/bin/python benchmarks/profile_step.py --preset b32-4stage --mode train --batch-size 8
    .venv/bin/python benchmarks/profile_step.py --reference      # through open_clip's block modules

Prints the operators sorted by self time (CPU, or CUDA kernels with --device cuda) and,
with --trace FILE, writes a Chrome trace. This is how the fast block path was found:
with gradients on, ``nn.MultiheadAttention`` (batch-first) runs its projections as
``aten::bmm`` against an expanded weight, forward and backward.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--preset", default="b32-4stage")
    ap.add_argument("--mode", choices=["inference", "train", "cached-train"], default="train")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--reference", action="store_true", help="run open_clip's block modules (the code before the fast path)")
    ap.add_argument("--rows", type=int, default=25)
    ap.add_argument("--trace", default=None, help="write a Chrome trace here")
    args = ap.parse_args()
    logging.getLogger().setLevel(logging.ERROR)

    import torch
    from torch.profiler import ProfilerActivity, profile

    from cascade import load_backbone
    from cascade.bench.model_bench import BenchContext, build_variants, inference, train_step

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    precision = args.precision or ("bf16" if device.type == "cuda" else "fp32")
    backbone = load_backbone(args.model, None, device=device)
    ctx = BenchContext(backbone, device, args.batch_size, precision=precision)
    model = build_variants(ctx, [args.preset])[args.preset]
    x, y = ctx.images(), ctx.labels()
    fast = not args.reference
    if args.mode == "inference":
        fn = inference(ctx, model, x, fast=fast)
    elif args.mode == "train":
        fn = train_step(ctx, model, x, y, fast=fast)
    else:
        with torch.no_grad(), ctx.autocast():
            cache = model.forward_prefix(x)
        fn = train_step(ctx, model, None, y, prefix_tokens=cache, fast=fast)
    fn()
    fn()
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts, record_shapes=True) as prof:
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=args.rows))
    if args.trace:
        prof.export_chrome_trace(args.trace)
        print(f"wrote {args.trace}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

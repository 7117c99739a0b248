"""Time an exact σ sweep from cached per-block features (ViT-B-32 size, b32-4stage).

    python benchmarks/bench_sigma.py                      # 100 σ × 4 stages, 2,000 images
    python benchmarks/bench_sigma.py --n 2000 --sigmas 100 --joint --threads 2

Random features stand in for a run's cached validation features (12 blocks,
D = 768, E = 512, 6 classes); the heads and classifier are random too. The sweep
varies each stage's σ over the grid with the others held (4 × 100 evaluations, all
metrics), optionally plus the joint sweep. ``evaluate`` is one σ configuration, the
cost of one dashboard slider move.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.sigma import benchmark_sweep  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=2000, help="images (default 2000)")
    p.add_argument("--sigmas", type=int, default=100, help="σ values per stage (default 100)")
    p.add_argument("--stages", default="1-4,5-8,9-11,12", help="stage string (default b32-4stage)")
    p.add_argument("--width", type=int, default=768)
    p.add_argument("--embed-dim", type=int, default=512)
    p.add_argument("--classes", type=int, default=6)
    p.add_argument("--joint", action="store_true", help="also the joint sweep")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch threads for the one-off set-up")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = benchmark_sweep(n=args.n, num_sigmas=args.sigmas, stages=args.stages, width=args.width,
                          embed_dim=args.embed_dim, num_classes=args.classes, repeats=args.repeats,
                          device=args.device, joint=args.joint)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    sweeps = out["num_stages"] + (1 if args.joint else 0)
    print(f"σ sweep: {out['num_sigmas']} σ × {sweeps} sweeps = {out['num_evaluations']} evaluations on "
          f"{out['n']} images (D={out['width']}, E={out['embed_dim']}, stages {out['stages']}, {out['device']})")
    print(f"  sweep      {out['sweep_seconds']:.3f} s (best of {args.repeats}; median "
          f"{out['sweep_seconds_median']:.3f} s; CPU time {out['sweep_cpu_seconds']:.3f} s), all metrics included")
    print(f"  evaluate   {out['evaluate_ms']:.1f} ms per σ configuration (median)")
    print(f"  set-up     {out['setup_seconds']:.3f} s once (per-block head projections, Gram matrices)")
    print(f"  torch {out['torch_version']}, {out['threads']} threads available for set-up")
    return 0


if __name__ == "__main__":
    sys.exit(main())

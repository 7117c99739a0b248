"""``cascade bench``: throughput, memory, data-pipeline and MFU figures (see cascade.bench)."""
from __future__ import annotations

import argparse
import sys

from ..bench import BenchOptions, all_figures, run_bench
from ..bench.results import format_report, write_json


def _figures(text: str) -> tuple[str, ...]:
    known = all_figures()
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    bad = [n for n in names if n not in known]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown figure(s) {bad}; choose from {', '.join(known)}")
    return names


def _workers(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--data-workers: expected e.g. 0,1,2, got {text!r}") from None


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bench", help="measure throughput, memory, data pipeline and MFU side by side",
        description="Time plain CLIP, the cascade model and the baselines side by side in one process "
                    "(interleaved rounds, medians, ratios); print a table and write JSON.")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--model", default="ViT-B-32", help="open_clip model (random weights), e.g. ViT-B-32, cascade-tiny")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--quick", action="store_true", help="smoke test: few repeats, small analysis/data sizes")
    p.add_argument("--json", dest="json_path", default=None, metavar="FILE", help="write the results here")
    p.add_argument("--repeats", type=int, default=None, help="timed rounds per figure (default 5 CPU, 10 CUDA, 2 quick)")
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--precision", choices=["fp32", "bf16"], default=None,
                   help="default: fp32 on CPU, bf16 autocast on CUDA")
    p.add_argument("--figures", type=_figures, default=None,
                   help="comma-separated subset of inference,training,prefix_cache,memory,data,cuda and the "
                        "figures of installed plugins (analysis, ...); default: all of those; lafter (label-free "
                        "stage 2 against its 4-shot teacher on the synthetic faces, 3 training runs) only when named")
    p.add_argument("--no-reference", dest="reference", action="store_false",
                   help="skip the cascade-through-open_clip-blocks reference rows")
    p.add_argument("--mfu-batch-size", type=int, default=256, help="batch for the CUDA MFU figure")
    p.add_argument("--peak-tflops", type=float, default=None, help="peak bf16 TFLOP/s of the GPU (MFU denominator)")
    p.add_argument("--compile", nargs="?", const="default", default=None, metavar="MODE",
                   choices=["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"],
                   help="also time torch.compile of the cascade training step (train.compile) in the training "
                        "figure and, on CUDA, with autocast and with a bf16 frozen backbone; MODE default "
                        "'default' (compiling takes about a minute per row)")
    p.add_argument("--compile-backend", default="inductor", help="torch.compile backend of --compile")
    p.add_argument("--data-root", default=None, help="Emotion6 folder (default ../shared/datasets/Emotion6)")
    p.add_argument("--data-workers", type=_workers, default=None, help="DataLoader worker counts, e.g. 0,1,2")
    p.add_argument("--data-images", type=int, default=None,
                   help="JPEGs for the data figure (default 5000 on CUDA, 512 on CPU; a folder of 640x480 "
                        "JPEGs is generated when Emotion6 has fewer)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.set_defaults(func=handler)


def handler(args) -> int:
    opts = BenchOptions(
        device=args.device, model=args.model, batch_size=args.batch_size, quick=args.quick, repeats=args.repeats,
        warmup=args.warmup, precision=args.precision, figures=args.figures, reference=args.reference,
        mfu_batch_size=args.mfu_batch_size, peak_tflops=args.peak_tflops, compile=args.compile,
        compile_backend=args.compile_backend,
        data_root=args.data_root, data_workers=args.data_workers or [], data_images=args.data_images,
        threads=args.threads,
    )
    res = run_bench(opts, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    print(format_report(res))
    if args.json_path:
        path = write_json(res, args.json_path)
        print(f"\nwrote {path}")
    return 0

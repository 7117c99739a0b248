"""``cascade report``: a run's figures, or an ablation's tables, significance and figures, for a paper.

    cascade report --run DIR --out OUT        figures (PDF, SVG, PNG + CSV data), explanation maps and OUT/index.md
    cascade report --ablation DIR --out OUT   tables (LaTeX, Markdown, CSV), significance.csv,
                                              figures and OUT/index.md

What is written is built by :mod:`analysis.paper_report`.
"""
from __future__ import annotations

import argparse
import sys

from analysis.paper_report import FORMATS, TABLE_METRICS, report_ablation, report_run
from cascade.devices import device_kind
from cascade.metrics import EVAL_METRICS

from .common import guarded


def _formats(text: str) -> tuple[str, ...]:
    out = tuple(dict.fromkeys(f.strip().lower().lstrip(".") for f in text.split(",") if f.strip()))
    bad = [f for f in out if f not in FORMATS]
    if bad or not out:
        raise argparse.ArgumentTypeError(f"formats: choose from {', '.join(FORMATS)} (got {text!r})")
    return out


def _metrics(text: str) -> tuple[str, ...]:
    out = tuple(m.strip() for m in text.split(",") if m.strip())
    bad = [m for m in out if m not in EVAL_METRICS]
    if bad or not out:
        raise argparse.ArgumentTypeError(f"metrics: unknown {bad}; choose from {', '.join(sorted(EVAL_METRICS))}")
    return out


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "report", help="every figure of a run, or an ablation's tables, significance and figures",
        description="--run: training curves with phases, σ/λ trajectories, NGA curves, σ sweep, CKA (within, "
                    "frozen, stages), drift, confusion matrix, per-stage bars and explanation maps of a few "
                    "validation images, each as PDF/SVG/PNG with its data as CSV. --ablation: LaTeX (booktabs), "
                    "Markdown and CSV tables with mean ± std and the best in "
                    "bold, significance.csv (McNemar's exact test and the paired bootstrap per method pair and "
                    "seed), and figures. OUT/index.md lists every file.")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--run", metavar="DIR", help="a run folder")
    what.add_argument("--ablation", metavar="DIR", help="an ablation folder (results.json from cascade ablate)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    p.add_argument("--formats", type=_formats, default=FORMATS, metavar="pdf,svg,png",
                   help="figure formats (default: all three)")
    p.add_argument("--column", choices=["single", "double"], default="single", help="paper column width")
    p.add_argument("--dpi", type=float, default=300, help="PNG resolution, recorded in the file (default 300)")
    p.add_argument("--split", choices=["val", "test", "train"], default="val",
                   help="--run: split for the σ sweep, CKA and checkpoint drift (default val)")
    p.add_argument("--no-features", action="store_true", help="--run: skip figures that need a forward pass")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--metrics", type=_metrics, default=TABLE_METRICS, metavar="LIST",
                   help=f"--ablation: table columns (default {','.join(TABLE_METRICS)})")
    p.add_argument("--reference", default=None, metavar="METHOD",
                   help="--ablation: method the significance marks compare against (default cascade)")
    p.add_argument("--resamples", type=int, default=10_000, help="paired-bootstrap resamples (default 10000)")
    p.add_argument("--seed", type=int, default=0, help="paired-bootstrap seed (default 0)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    return guarded("report", _report, args)


def _report(args: argparse.Namespace) -> int:
    if args.dpi <= 0:
        raise ValueError("--dpi: must be positive")
    if args.resamples < 10_000:
        print(f"note: {args.resamples} bootstrap resamples; 10000 or more are recommended", file=sys.stderr)
    if args.run:
        index = report_run(args.run, args.out, formats=args.formats, column=args.column, dpi=args.dpi,
                           split=args.split, features=not args.no_features, device=device_kind(args.device),
                           quiet=args.quiet)
    else:
        if args.resamples < 1:
            raise ValueError("--resamples: must be >= 1")
        index = report_ablation(args.ablation, args.out, formats=args.formats, column=args.column, dpi=args.dpi,
                                metrics=args.metrics, reference=args.reference, n_resamples=args.resamples,
                                seed=args.seed)
    print(index.read_text(encoding="utf-8"))
    print(f"wrote {index.parent}")
    return 0

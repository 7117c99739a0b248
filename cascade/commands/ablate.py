"""``cascade ablate``: every method × seed on the same splits; CSV + Markdown table."""
from __future__ import annotations

import argparse

from ..config import ConfigError
from ..run_config import load_run_config
from ..train.ablate import parse_methods, run_ablation
from .guard import run_guarded

ALL = "zeroshot,linear-probe,shallow,vpt-deep,cascade,cascade-no-nga,nga-no-cascade,concat-fusion"


def register(subparsers) -> None:
    p = subparsers.add_parser("ablate", help="all baselines and ablations on the same splits (CSV + Markdown)",
                              description="Train/evaluate every method for several seeds on the same splits; "
                                          "writes results.csv (one row per method × seed), results.md "
                                          "(mean ± std per method) and the run folders under OUT/runs.")
    p.add_argument("--config", required=True, metavar="FILE", help="base run config (its model is the cascade base)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--methods", default=ALL, help=f"comma-separated (default: {ALL})")
    p.add_argument("--seeds", type=int, default=3, help="number of seeds: train.seed, +1, +2, ... (default 3)")
    p.add_argument("--out", metavar="DIR", help="output folder (default <runs_dir>/ablate-<time>); a rerun reuses a "
                                                "finished run only when its config and split are unchanged, and "
                                                "resumes an unfinished one")
    p.add_argument("--force", action="store_true",
                   help="retrain runs whose config or split changed (their old folders move to OUT/superseded/); "
                        "without it such runs stop the ablation with the keys that differ")
    p.add_argument("--split-per-seed", action="store_true",
                   help="give seed k its own split (data.split_seed + k), so the std includes split variance")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    return run_guarded("ablate", _ablate, args)


def _ablate(args: argparse.Namespace) -> int:
    if args.seeds < 1:
        raise ConfigError("--seeds: must be >= 1")
    try:
        methods = parse_methods(args.methods)
    except ValueError as exc:
        raise ConfigError(f"--{exc}") from None
    base = load_run_config(args.config, args.overrides)
    result = run_ablation(base, methods, args.seeds, args.out, quiet=args.quiet, force=args.force,
                          split_per_seed=args.split_per_seed)
    print(result.markdown)
    print(f"wrote {result.csv_path} and {result.markdown_path}")
    return 0

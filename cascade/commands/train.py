"""``cascade train``: one run from a YAML config (or resume one)."""
from __future__ import annotations

import argparse
import os
import sys

from .guard import run_guarded

EPILOG = """examples:
  cascade train --config configs/synthetic-tiny.yaml
  cascade train --config configs/emotion6-b32.yaml --set train.epochs.warmup=1 --set run.name=try1
  cascade train --resume runs/try1
  torchrun --nproc-per-node 2 -m cascade train --config configs/synthetic-tiny.yaml

exit status: 0 done, 2 bad config/data/run folder, 3 non-finite loss (last good checkpoint kept)."""


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train one run (progressive schedule, checkpoints, resume)",
                              description="Train a cascade model (or evaluate zero-shot / linear probe) into a "
                                          "run folder runs/<name>/.",
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="FILE", help="YAML run config (sections method, backbone, model, data, train, run)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. train.batch_size=16 (repeatable)")
    p.add_argument("--pretrained", metavar="TAG|PATH|none", help="shorthand for --set backbone.pretrained=...")
    p.add_argument("--run-dir", metavar="DIR", help="write the run here instead of <run.runs_dir>/<run.name>")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR from checkpoints/last")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    return run_guarded("train", _train, args)


def _train(args: argparse.Namespace) -> int:
    from ..config import ConfigError
    from ..run_config import load_run_config
    from ..train import train

    overrides = list(args.overrides)
    if args.pretrained is not None:
        overrides.append(f"backbone.pretrained={args.pretrained}")
    if args.resume:
        if args.config or overrides or args.run_dir:
            raise ConfigError("--resume: continues the run exactly as configured; "
                              "--config, --set, --pretrained and --run-dir cannot be combined with it")
        path = train(resume=args.resume, quiet=args.quiet)
    else:
        if not args.config and not overrides:
            raise ConfigError("config: give --config FILE (see configs/) or --resume DIR")
        cfg = load_run_config(args.config, overrides)
        path = train(cfg, run_dir=args.run_dir, quiet=args.quiet)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun every rank returns here
        print(path)
        sys.stdout.flush()
    return 0


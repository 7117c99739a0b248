"""``cascade eval``: metrics of a run's checkpoint on its saved split."""
from __future__ import annotations

import argparse
import os

from ..evaluate import evaluate_run
from ..fileio import to_json
from .guard import run_guarded


def register(subparsers) -> None:
    p = subparsers.add_parser("eval", help="evaluate a run folder's checkpoint (metrics JSON)",
                              description="Evaluate a run's best or last checkpoint on its saved val/test split. "
                                          "Prints the metrics as JSON and writes eval-<split>-<checkpoint>.json "
                                          "into the run folder.")
    # --run-dir is the same option under a name torchrun's own parser does not take for an abbreviation
    # of its --run-path (torchrun --nproc-per-node 2 -m cascade eval --run-dir DIR)
    p.add_argument("--run", "--run-dir", dest="run", required=True, metavar="DIR", help="run folder (runs/<name>)")
    p.add_argument("--split", choices=["val", "test", "train"], default="test")
    p.add_argument("--checkpoint", default="best", metavar="best|last|FILE",
                   help="which checkpoint (default best; linear-probe runs use their probe)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None, help="default: the run's train.device")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    return run_guarded("eval", _eval, args)


def _eval(args: argparse.Namespace) -> int:
    result = evaluate_run(args.run, args.split, args.checkpoint, device=args.device, batch_size=args.batch_size,
                          quiet=args.quiet)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun every rank gets the same metrics
        print(to_json(result))
    return 0

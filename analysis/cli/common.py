"""What the analysis subcommands share: the error guard, ``--out`` checks, feature extraction."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from analysis.export import ExportError
from analysis.features import run_features
from cascade.commands import run_guarded
from cascade.devices import device_kind

FIGURE_SUFFIXES = (".pdf", ".svg", ".png")
# bad values the user typed (a metric, a stage, a class name) fail with one line, like cascade's own errors
USER_ERRORS = (ValueError, KeyError, ExportError)


def guarded(command: str, fn, args: argparse.Namespace) -> int:
    """``fn(args)`` under ``cascade.commands.run_guarded``: known user errors → one line on stderr, exit 2."""
    return run_guarded(command, fn, args, also=USER_ERRORS)


def check_out(out: str, allowed: tuple[str, ...]) -> Path:
    path = Path(out)
    if path.suffix.lower() not in allowed:
        raise ValueError(f"--out {out}: expected one of {', '.join(allowed)}")
    return path


def add_run_options(p: argparse.ArgumentParser) -> None:
    """Options of the commands that read a run's per-block features (cached under ``<run>/features``)."""
    p.add_argument("--run", required=True, metavar="DIR", help="run folder (runs/<name>)")
    p.add_argument("--split", choices=["train", "val", "test"], default="val", help="data split (default val)")
    p.add_argument("--checkpoint", default="best", metavar="best|last|FILE", help="which checkpoint (default best)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass when extracting features")
    p.add_argument("--cache-dir", metavar="DIR", default=None, help="feature cache (default <run>/features)")
    p.add_argument("--refresh", action="store_true", help="recompute features even when cached")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def features(run, split: str, args: argparse.Namespace, which: str = "run", poolings=None):
    """Per-block features of ``run`` on ``split`` with the options of :func:`add_run_options`."""
    return run_features(run, split, which=which, poolings=poolings, cache_dir=args.cache_dir,
                        device=device_kind(args.device), batch_size=args.batch_size, refresh=args.refresh,
                        progress=not args.quiet)

"""``cascade shards``: convert a run config's dataset into WebDataset tar shards."""
from __future__ import annotations

import argparse
import sys

import yaml

from ..data import load_index, resolve_splits
from ..data.shard_writer import write_shards
from ..run_config import load_run_config
from .guard import run_guarded

EPILOG = """examples:
  cascade shards --config configs/emotion6-b32.yaml --out shards/emotion6
  cascade shards --config configs/ferplus-b32.yaml --out /shared/ferplus-shards --shard-size 5000

The dataset is scanned first (data.on_bad applies); the split is the run's (data.splits_file,
a split column, official splits or the seeded split). Prints the data section that reads the
shards back. exit status: 0 done, 2 bad config or data, or --out already holds shards."""


def register(subparsers) -> None:
    p = subparsers.add_parser("shards", help="convert a dataset into WebDataset tar shards (same splits and targets)",
                              description="Write the data of a run config as WebDataset .tar shards, one series per "
                                          "split, with manifest.json and manifest.csv (which sample went where).",
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="FILE", required=True, help="YAML run config whose data section is converted")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. data.on_bad=skip (repeatable)")
    p.add_argument("--out", metavar="DIR", required=True, help="folder for the shards (new or empty)")
    p.add_argument("--shard-size", type=int, default=10_000, metavar="N", help="samples per shard (default 10000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample order inside each split's shards")
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    return run_guarded("shards", _shards, args)


def _shards(args: argparse.Namespace) -> int:
    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    cfg = load_run_config(args.config, args.overrides).data
    index = load_index(cfg)
    report = index.report
    say(f"shards: scanned {report.num_kept} items of {index.source} in {report.scan_seconds:.1f}s"
        + (f" ({len(report.bad)} bad item(s) skipped)" if report.bad else "")
        + (f" ({len(report.flagged)} flagged, see the data report)" if report.flagged else ""))
    manifest = write_shards(index, resolve_splits(cfg, index), args.out, shard_size=args.shard_size,
                            seed=args.seed, max_pixels=cfg.max_image_pixels, log=say)
    counts = ", ".join(f"{k} {v['num_samples']} in {len(v['shards'])} shard(s)" for k, v in manifest["splits"].items())
    say(f"shards: wrote {counts} to {args.out}")
    print(yaml.safe_dump({"data": manifest["data"]}, sort_keys=False, default_flow_style=False).rstrip())
    return 0

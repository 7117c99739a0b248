"""The data of a run, scanned once per run rather than once per process.

Under DDP, rank 0 loads the dataset (every image decoded once, every row checked, the split
fixed) and sends the resulting index and splits to the other ranks, which then read the
images themselves. Without this every process of every node would read and decode the
whole dataset at start-up, multiplying the load on shared storage by the number of
processes. A failure on rank 0 (bad data, a missing file) is raised on every rank.
"""
from __future__ import annotations

import os

from ..data.config import DataConfig
from ..data.shards import localize_members
from .data import DataBundle, load_data
from .distributed import DistContext


def load_shared_data(cfg: DataConfig, splits_file: str | os.PathLike | None, ctx: DistContext) -> DataBundle:
    bundle = ctx.from_main(lambda: load_data(cfg, splits_file))
    if not ctx.is_main and cfg.format == "webdataset":
        localize_members(bundle.index, cfg.webdataset.cache_dir)
    return bundle

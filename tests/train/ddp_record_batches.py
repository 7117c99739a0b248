"""Run under torchrun: train a YAML config and write, per rank, the dataset indices each training step
of each epoch fed the model, and the local files its shard samples were read from (``rank<R>.json``).

    torchrun --nproc-per-node 2 tests/train/ddp_record_batches.py CONFIG OUT_DIR [--cache-per-rank]

With --cache-per-rank every rank caches URL shards in its own folder, as processes on different
machines do.
"""
import json
import os
import sys
from pathlib import Path

from cascade.data.tar_members import CACHE_ENV
from cascade.run_config import load_run_config
from cascade.train import train


class Recorder:
    def __init__(self, out: Path):
        self.out, self.seen, self.files = out, {}, []

    def on_train_start(self, state) -> None:
        self.files = sorted({rec.member.path for rec in state.data.index.records if rec.member is not None})

    def on_step_end(self, state) -> None:
        self.seen.setdefault(state.epoch + 1, []).extend(int(i) for i in state.batch["index"])

    def on_train_end(self, state) -> None:
        (self.out / f"rank{state.rank}.json").write_text(json.dumps(
            {"world_size": state.world_size, "epochs": self.seen, "files": self.files,
             "scan_seconds": state.data.index.report.scan_seconds}))


if __name__ == "__main__":
    config, out = sys.argv[1], Path(sys.argv[2])
    if "--cache-per-rank" in sys.argv:
        os.environ[CACHE_ENV] = str(out / f"cache{os.environ['RANK']}")
    train(load_run_config(config), callbacks=[Recorder(out)], quiet=True)

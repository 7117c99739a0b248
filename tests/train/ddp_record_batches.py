"""Run under torchrun: train a YAML config and write, per rank, the dataset indices each training step
of each epoch fed the model (``rank<R>.json`` in the output folder).

    torchrun --nproc-per-node 2 tests/train/ddp_record_batches.py CONFIG OUT_DIR
"""
import json
import sys
from pathlib import Path

from cascade.train import load_run_config, train


class Recorder:
    def __init__(self, out: Path):
        self.out, self.seen = out, {}

    def on_step_end(self, state) -> None:
        self.seen.setdefault(state.epoch + 1, []).extend(int(i) for i in state.batch["index"])

    def on_train_end(self, state) -> None:
        (self.out / f"rank{state.rank}.json").write_text(json.dumps({"world_size": state.world_size,
                                                                     "epochs": self.seen}))


if __name__ == "__main__":
    config, out = sys.argv[1], Path(sys.argv[2])
    train(load_run_config(config), callbacks=[Recorder(out)], quiet=True)

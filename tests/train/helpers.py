"""Shared helpers of the training tests."""
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TINY_YAML = REPO / "configs" / "synthetic-tiny.yaml"

# Small and quick: 120 faces, two prompt tokens per stage, one epoch per phase.
SMALL = [
    "data.synthetic.num_samples=120",
    "model.prompt_tokens=2",
    "train.epochs.warmup=1",
    "train.epochs.unfreeze=1",
    "train.epochs.global=1",
    "train.batch_size=16",
]


def tiny_config(runs_dir, *overrides, small=True):
    from cascade.run_config import load_run_config

    extra = (SMALL if small else []) + [f"run.runs_dir={runs_dir}", *overrides]
    return load_run_config(TINY_YAML, extra)


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


class CrashAt:
    """A callback that raises at global step ``step`` (a crash mid-run)."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, state):
        if state.global_step == self.step:
            raise RuntimeError("injected failure")

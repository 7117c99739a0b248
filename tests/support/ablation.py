"""A hand-made ablation folder (results.json, each run's eval.json and predictions-test.csv), as
`cascade ablate` leaves it, for the report's tables and significance without training."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from cascade.runfolder import EVAL, predictions_path

CLASSES = ["anger", "joy", "sadness"]
# The eight methods of an ablation, with the stages each predicts from.
METHODS = {"cascade": 4, "cascade-no-nga": 4, "nga-no-cascade": 1, "concat-fusion": 4, "shallow": 1,
           "vpt-deep": 1, "linear-probe": 1, "zeroshot": 1}


def write_ablation(out: Path, methods: dict[str, int] | None = None, seeds: int = 3, n: int = 60,
                   empty_test: set[tuple[str, int]] = frozenset()) -> Path:
    """Runs whose per-image correctness is seeded per (method, seed); ``empty_test`` lists the
    (method, seed) runs whose test split is empty (a header-only predictions file)."""
    methods = methods or METHODS
    rng = np.random.default_rng(0)
    labels = [CLASSES[i % len(CLASSES)] for i in range(n)]
    rows = []
    for k, (method, stages) in enumerate(methods.items()):
        for seed in range(seeds):
            run = out / "runs" / f"{method}-seed{seed}"
            run.mkdir(parents=True, exist_ok=True)
            empty = (method, seed) in empty_test
            correct = rng.random(n) < 0.45 + 0.05 * (k % 4)
            acc = float(correct.mean()) if not empty else None
            fused = {"accuracy": acc, "macro_f1": acc, "uar": acc, "kl": 0.8 - 0.01 * k, "intersection": 0.6,
                     "num_samples": 0 if empty else n}
            per_stage = [{"accuracy": None if empty else round(0.4 + 0.02 * s, 4)} for s in range(stages)]
            (run / EVAL).write_text(json.dumps({"test": {"fused": fused, "stages": per_stage}}))
            with predictions_path(run, "test").open("w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(["path", "label", "predicted", *(f"p_{c}" for c in CLASSES)])
                for i in range(0 if empty else n):
                    wrong = CLASSES[(CLASSES.index(labels[i]) + 1) % len(CLASSES)]
                    w.writerow([f"/data/img{i:03d}.png", labels[i], labels[i] if correct[i] else wrong, 0.5, 0.3, 0.2])
            rows.append({"method": method, "seed": seed, "run_dir": str(run), **fused})
    (out / "results.json").write_text(json.dumps({"rows": rows, "select_metric": "accuracy",
                                                   "split_per_seed": False}))
    return out

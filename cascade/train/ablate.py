"""Every method on the same splits and seeds: a CSV (method × seed) and a Markdown table of
mean ± std per method, test metrics of the val-selected checkpoint.

Finished runs (those with an ``eval.json``) are reused, so an interrupted ablation picks up
where it stopped when run again with the same ``--out``.
"""
from __future__ import annotations

import csv
import io
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..methods import METHODS
from .data import load_data, save_split_file
from .loop import RANDOM_WEIGHTS_NOTE, train
from .run_config import RunConfig
from .runfolder import EVAL, atomic_write_text, read_json, write_json

TABLE_METRICS = ("accuracy", "macro_f1", "uar", "kl", "chebyshev", "clark", "canberra", "cosine", "intersection")
ARROWS = {"kl": "↓", "chebyshev": "↓", "clark": "↓", "canberra": "↓"}


@dataclass
class AblationResult:
    out_dir: Path
    rows: list[dict[str, Any]]
    csv_path: Path
    markdown_path: Path
    markdown: str


def parse_methods(text: str | Sequence[str]) -> list[str]:
    names = [m.strip() for m in (text.split(",") if isinstance(text, str) else text) if m.strip()]
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise ValueError(f"methods: unknown {unknown}; choose from {', '.join(METHODS)}")
    if not names:
        raise ValueError("methods: none given")
    return list(dict.fromkeys(names))


def _mean_std(values: list[float]) -> tuple[float, float]:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return math.nan, math.nan
    mean = sum(vals) / len(vals)
    if len(vals) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))


def markdown_table(rows: list[dict[str, Any]], methods: list[str], *, random_weights: bool,
                   select_metric: str, n_seeds: int) -> str:
    lines = []
    if random_weights:
        lines += [f"> **WARNING: {RANDOM_WEIGHTS_NOTE}.**", ""]
    lines.append(f"Test split, checkpoint selected on val {select_metric}; mean ± sample std over {n_seeds} seed(s); "
                 "all methods on the same splits.")
    lines.append("")
    head = ["method", "n"] + [f"{m}{' ' + ARROWS[m] if m in ARROWS else ''}" for m in TABLE_METRICS]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join(["---"] * 2 + ["---:"] * len(TABLE_METRICS)) + "|")
    for method in methods:
        mine = [r for r in rows if r["method"] == method]
        cells = [method, str(len(mine))]
        for m in TABLE_METRICS:
            mean, std = _mean_std([r.get(m) for r in mine])
            cells.append("n/a" if math.isnan(mean) else f"{mean:.4f} ± {std:.4f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_ablation(base: RunConfig, methods: str | Sequence[str], seeds: int | Iterable[int] = 3,
                 out_dir: str | os.PathLike | None = None, *, quiet: bool = False,
                 callbacks: Iterable[Any] = ()) -> AblationResult:
    methods = parse_methods(methods)
    seed_list = [base.train.seed + i for i in range(seeds)] if isinstance(seeds, int) else list(seeds)
    if not seed_list:
        raise ValueError("seeds: at least one seed is needed")
    out = Path(out_dir) if out_dir else Path(base.run.runs_dir) / f"ablate-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)

    # One split for every run: written once, then every run reads it.
    splits_path = out / "splits.json"
    if not splits_path.exists():
        save_split_file(splits_path, load_data(base.data))
    atomic_write_text(out / "base_config.yaml", base.to_yaml())

    rows: list[dict[str, Any]] = []
    for method in methods:
        for seed in seed_list:
            cfg = base.with_overrides({"method": method, "train.seed": seed, "run.name": f"{method}-seed{seed}",
                                       "run.runs_dir": str(out / "runs"),
                                       "data.splits_file": str(splits_path.resolve())})
            run_dir = out / "runs" / f"{method}-seed{seed}"
            if not (run_dir / EVAL).is_file():
                if run_dir.exists():
                    import shutil
                    shutil.rmtree(run_dir)  # an unfinished run from an interrupted ablation: start it again
                if not quiet:
                    print(f"== {method}, seed {seed}", flush=True)
                train(cfg, callbacks=callbacks, quiet=quiet)
            ev = read_json(run_dir / EVAL)
            test = (ev.get("test") or {}).get("fused", {})
            row = {"method": method, "seed": seed}
            row.update({m: test.get(m) for m in TABLE_METRICS})
            row.update({f"val_{base.train.select_metric}": ev.get("best_value"), "best_epoch": ev.get("best_epoch"),
                        "random_weights": ev.get("random_weights"), "run_dir": str(run_dir)})
            rows.append(row)

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0].keys()), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    csv_path = atomic_write_text(out / "results.csv", buf.getvalue())
    random_weights = any(r["random_weights"] for r in rows)
    md = markdown_table(rows, methods, random_weights=random_weights, select_metric=base.train.select_metric,
                        n_seeds=len(seed_list))
    md_path = atomic_write_text(out / "results.md", md)
    write_json(out / "results.json", {"methods": methods, "seeds": seed_list, "random_weights": random_weights,
                                      "select_metric": base.train.select_metric, "rows": rows})
    return AblationResult(out, rows, csv_path, md_path, md)

"""Every method on the same splits and seeds: a CSV (method × seed) and a Markdown table of
mean ± std per method, test metrics of the val-selected checkpoint.

Running again with the same ``--out`` reuses a finished run only when its resolved config
(``config.yaml``) equals the one it would get now and its split file holds the same items;
an unfinished one (stopped, killed, failed) with the same config is resumed. A run whose
config or split differs is stale: the ablation stops before training anything and names
the keys that differ, or, with ``force``, moves the stale runs to ``OUT/superseded/`` and
trains them again. Nothing already written is deleted.

By default every seed uses one split, so the reported std covers training randomness only;
``split_per_seed`` gives seed ``k`` its own split (``data.split_seed`` + k), so the std also
covers the choice of split. The tables say which.
"""
from __future__ import annotations

import csv
import io
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from ..config import ConfigError
from ..data import load_index
from ..data.splits import SPLIT_NAMES, resolve_splits, save_splits, split_keys
from ..fileio import atomic_write_text, write_json
from ..methods import METHODS
from ..metrics import EVAL_METRICS, METRIC_DIRECTIONS, mean_std
from ..run_config import RunConfig, load_run_config
from ..runfolder import CONFIG, EVAL, RANDOM_WEIGHTS_NOTE, read_json, read_run_state
from .loop import train

TABLE_METRICS = EVAL_METRICS
ARROWS = {m: "↓" for m in TABLE_METRICS if METRIC_DIRECTIONS[m] == "min"}   # lower is better


class AblationStopped(RuntimeError):
    """The ablation was asked to stop between two runs."""


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


def variance_note(split_per_seed: bool) -> str:
    """What the reported std covers."""
    if split_per_seed:
        return ("each seed has its own train/val/test split, so the std covers training randomness and the choice "
                "of split")
    return "all methods and seeds share one split, so the std covers training randomness only, not split variance"


def markdown_table(rows: list[dict[str, Any]], methods: list[str], *, random_weights: bool,
                   select_metric: str, n_seeds: int, split_per_seed: bool = False) -> str:
    lines = []
    if random_weights:
        lines += [f"> **WARNING: {RANDOM_WEIGHTS_NOTE}.**", ""]
    lines.append(f"Test split, checkpoint selected on val {select_metric}; mean ± sample std over {n_seeds} seed(s); "
                 f"{variance_note(split_per_seed)}.")
    lines.append("")
    head = ["method", "n"] + [f"{m}{' ' + ARROWS[m] if m in ARROWS else ''}" for m in TABLE_METRICS]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join(["---"] * 2 + ["---:"] * len(TABLE_METRICS)) + "|")
    for method in methods:
        mine = [r for r in rows if r["method"] == method]
        cells = [method, str(len(mine))]
        for m in TABLE_METRICS:
            mean, std = mean_std([r.get(m) for r in mine])
            cells.append("n/a" if mean is None else f"{mean:.4f} ± {std:.4f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys: ``{"train": {"lr": {"prompts": x}}}`` → ``{"train.lr.prompts": x}``."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _comparable(cfg: RunConfig) -> dict[str, Any]:
    """A config as compared for reuse: dotted keys → values, with the MLP activation as the
    trainer records it (``config.yaml`` holds the resolved ``backbone.quick_gelu``)."""
    from ..backbone import resolve_quick_gelu
    from .fastpath import resolve_run_frozen_dtype

    flat = _flatten(cfg.model_dump(mode="json", by_alias=True))
    bb = cfg.backbone
    if bb.quick_gelu is None and not bb.model_name.endswith("-quickgelu"):
        flat["backbone.quick_gelu"] = resolve_quick_gelu(bb.model_name, bb.pretrained, None)[0]
    if flat.get("train.loss.label_smoothing") is None:   # unset means data.label_smoothing
        flat["train.loss.label_smoothing"] = cfg.data.label_smoothing
    # config.yaml holds the resolved frozen dtype too (train.frozen_dtype: auto)
    flat["train.frozen_dtype"] = resolve_run_frozen_dtype(cfg)
    return flat


def config_differences(old: RunConfig, new: RunConfig) -> list[str]:
    """``key: old → new`` for every resolved setting that differs."""
    a, b = _comparable(old), _comparable(new)
    return [f"{k}: {a.get(k)!r} → {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def _split_keys(path: Path) -> dict[str, list[str]] | None:
    payload = read_json(path) if path.is_file() else None
    if not isinstance(payload, dict) or not isinstance(payload.get("splits"), dict):
        return None
    return {name: list((payload["splits"].get(name) or {}).get("keys") or []) for name in SPLIT_NAMES}


@dataclass
class _Planned:
    method: str
    seed: int
    cfg: RunConfig
    run_dir: Path
    action: str          # reuse | resume | train | retrain
    stale: list[str]


def _plan_splits(base: RunConfig, out: Path, seed_list: list[int], split_per_seed: bool,
                 ) -> tuple[dict[int, Path], dict[Path, dict], list[str]]:
    """The split file of every seed, each split as it would be made now, and which files
    already on disk hold other items."""
    index = load_index(base.data)
    by_seed: dict[int, Path] = {}
    fresh: dict[Path, dict] = {}
    changed: list[str] = []
    for seed in seed_list:
        split_seed = base.data.split_seed + (seed - base.train.seed) if split_per_seed else base.data.split_seed
        path = out / (f"splits-seed{seed}.json" if split_per_seed else "splits.json")
        by_seed[seed] = path
        if path in fresh:
            continue
        cfg = base.data.model_copy(update={"split_seed": split_seed})
        splits = resolve_splits(cfg, index)
        fresh[path] = {"splits": splits, "index": index, "seed": split_seed}
        old = _split_keys(path)
        if old is not None and split_keys(splits, index)[1] != old:
            changed.append(path.name)
    return by_seed, fresh, changed


def run_ablation(base: RunConfig, methods: str | Sequence[str], seeds: int | Iterable[int] = 3,
                 out_dir: str | os.PathLike | None = None, *, quiet: bool = False,
                 callbacks: Iterable[Any] = (), force: bool = False, split_per_seed: bool = False,
                 stop_requested: Callable[[], bool] | None = None) -> AblationResult:
    """Train every method × seed into ``out_dir/runs`` and write the tables.

    ``stop_requested`` is asked before each run; when it answers True the ablation ends
    there (raising :class:`AblationStopped`) without writing tables of an incomplete grid.
    """
    methods = parse_methods(methods)
    seed_list = [base.train.seed + i for i in range(seeds)] if isinstance(seeds, int) else list(seeds)
    if not seed_list:
        raise ValueError("seeds: at least one seed is needed")
    out = Path(out_dir) if out_dir else Path(base.run.runs_dir) / f"ablate-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)

    split_files, fresh_splits, changed_splits = _plan_splits(base, out, seed_list, split_per_seed)

    # Decide for every run before training any, so a stale folder stops the ablation at once.
    plan: list[_Planned] = []
    for method in methods:
        for seed in seed_list:
            name = f"{method}-seed{seed}"
            split_path = split_files[seed]
            cfg = base.with_overrides({"method": method, "train.seed": seed, "run.name": name,
                                       "run.runs_dir": str(out / "runs"),
                                       "data.split_seed": fresh_splits[split_path]["seed"],
                                       "data.splits_file": str(split_path.resolve())})
            run_dir = out / "runs" / name
            if not (run_dir / CONFIG).is_file():
                plan.append(_Planned(method, seed, cfg, run_dir, "train", []))
                continue
            stale = config_differences(load_run_config(run_dir / CONFIG), cfg)
            if split_path.name in changed_splits:
                stale.append(f"{split_path.name}: the split would now hold other items")
            if stale:
                plan.append(_Planned(method, seed, cfg, run_dir, "retrain", stale))
            elif read_run_state(run_dir).state == "finished" and (run_dir / EVAL).is_file():
                plan.append(_Planned(method, seed, cfg, run_dir, "reuse", []))
            else:
                plan.append(_Planned(method, seed, cfg, run_dir, "resume", []))
    stale_runs = [p for p in plan if p.action == "retrain"]
    if stale_runs and not force:
        lines = [f"  {p.run_dir.name}: " + "; ".join(p.stale[:6]) + (f"; … ({len(p.stale)} in all)"
                                                                     if len(p.stale) > 6 else "")
                 for p in stale_runs]
        raise ConfigError(f"ablate: {len(stale_runs)} run(s) in {out} were made with another config or split, so "
                          "their results would not match the table:\n" + "\n".join(lines) +
                          "\nRerun with --force to train them again (the old folders move to "
                          f"{out / 'superseded'}), or choose another --out")

    superseded = out / "superseded" / time.strftime("%Y%m%d-%H%M%S")
    if stale_runs:
        superseded.mkdir(parents=True, exist_ok=True)
        for p in stale_runs:
            p.run_dir.rename(superseded / p.run_dir.name)
    for path, fresh in fresh_splits.items():
        if path.name in changed_splits and path.is_file():
            superseded.mkdir(parents=True, exist_ok=True)
            path.rename(superseded / path.name)
        if not path.is_file():
            save_splits(path, fresh["splits"], fresh["index"])
    atomic_write_text(out / "base_config.yaml", base.to_yaml())

    rows: list[dict[str, Any]] = []
    for p in plan:
        if stop_requested is not None and stop_requested():
            raise AblationStopped(f"stopped before {p.method}, seed {p.seed}; rerun with --out {out} to continue")
        if p.action != "reuse":
            if not quiet:
                what = {"train": "", "retrain": " (retrained: its config changed)", "resume": " (resumed)"}[p.action]
                print(f"== {p.method}, seed {p.seed}{what}", flush=True)
            if p.action == "resume":
                train(resume=p.run_dir, callbacks=callbacks, quiet=quiet)
            else:
                train(p.cfg, callbacks=callbacks, quiet=quiet)
        ev = read_json(p.run_dir / EVAL, strict=True)
        test = (ev.get("test") or {}).get("fused", {})
        row = {"method": p.method, "seed": p.seed}
        row.update({m: test.get(m) for m in TABLE_METRICS})
        row.update({f"val_{base.train.select_metric}": ev.get("best_value"), "best_epoch": ev.get("best_epoch"),
                    "random_weights": ev.get("random_weights"), "partial": ev.get("partial", False),
                    "split_seed": p.cfg.data.split_seed, "run_dir": str(p.run_dir)})
        rows.append(row)

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0].keys()), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    csv_path = atomic_write_text(out / "results.csv", buf.getvalue())
    random_weights = any(r["random_weights"] for r in rows)
    md = markdown_table(rows, methods, random_weights=random_weights, select_metric=base.train.select_metric,
                        n_seeds=len(seed_list), split_per_seed=split_per_seed)
    md_path = atomic_write_text(out / "results.md", md)
    write_json(out / "results.json", {"methods": methods, "seeds": seed_list, "random_weights": random_weights,
                                      "select_metric": base.train.select_metric, "split_per_seed": split_per_seed,
                                      "variance": variance_note(split_per_seed), "rows": rows})
    return AblationResult(out, rows, csv_path, md_path, md)

"""``cascade sigma-sweep``: a run's metrics over a grid of NGA σ, exact from cached per-block features.

    cascade sigma-sweep --run DIR --sigmas 0.1:10:50 [--stage N] [--metric accuracy] [--out FILE.csv|pdf]

Per-block features are cached under ``<run>/features`` (safetensors + JSON), so a
second call on the same run, checkpoint and split does no forward pass.
"""
from __future__ import annotations

import argparse
from typing import Any

from analysis.export import export_figure
from analysis.features import load_run
from analysis.sigma import SigmaSweeper, parse_sigma_grid
from cascade.devices import device_kind
from cascade.metrics import EVAL_METRICS, is_known_metric, split_stage
from cascade.run_config import load_run_config
from cascade.runfolder import RunFolder

from .common import FIGURE_SUFFIXES, add_run_options, check_out, features, guarded


def register(subparsers) -> None:
    def grid(text: str):
        try:
            return parse_sigma_grid(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    p = subparsers.add_parser(
        "sigma-sweep", help="exact σ sweep from cached per-block features",
        description="Metrics of a run for a grid of NGA σ values, computed exactly from cached per-block "
                    "features (σ acts after the blocks). Without --stage every stage is varied in turn (the others "
                    "held at their learned σ) and all stages together (joint).")
    add_run_options(p)
    p.add_argument("--sigmas", type=grid, default=grid("0.1:10:50"), metavar="LO:HI:N",
                   help="grid: N log-spaced values from LO to HI, or a comma list (default 0.1:10:50)")
    p.add_argument("--stage", type=int, default=None, metavar="N", help="vary only stage N (1-based)")
    p.add_argument("--joint", action="store_true", help="only the joint sweep (all stages the same σ)")
    p.add_argument("--metric", default="accuracy",
                   help="metric to print and plot (accuracy, macro_f1, uar, kl, ..., or stage<k>.accuracy)")
    p.add_argument("--out", default=None, metavar="FILE.{pdf,svg,png,csv}",
                   help="write the sweep as CSV or as a figure (a figure also writes the CSV beside it)")
    p.add_argument("--column", choices=["single", "double"], default="single", help="paper column width")
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    return guarded("sigma-sweep", _sigma_sweep, args)


def sweep_table(df: Any, metric: str) -> Any:
    """Wide table: one row per σ, one column per sweep (``joint``, ``stage k varied``)."""
    import pandas as pd

    cols = {}
    for g in dict.fromkeys(df["stage"].tolist()):
        part = df[df["stage"] == g]
        label = "joint" if g == "joint" else f"stage {int(g)}"
        cols[label] = pd.Series(part[metric].to_numpy(), index=part["sigma"].to_numpy())
    table = pd.DataFrame(cols)
    table.index.name = "sigma"
    return table



def _check_metric(name: str) -> None:
    if not is_known_metric(name):
        raise ValueError(f"--metric {name}: unknown; choose one of {', '.join(sorted(EVAL_METRICS))} "
                         "(or stage<k>.<metric> for one stage)")



def _sigma_sweep(args: argparse.Namespace) -> int:
    import pandas as pd

    out = check_out(args.out, FIGURE_SUFFIXES + (".csv",)) if args.out else None
    _check_metric(args.metric)
    if args.stage is not None:
        # cheap checks first: the run's config says how many stages it has
        folder = RunFolder(args.run)
        folder.require()
        n_cfg = load_run_config(folder.config).model_config_for_method().num_stages
        if not 1 <= args.stage <= n_cfg:
            raise ValueError(f"--stage {args.stage}: the model has stages 1..{n_cfg}")
    run = load_run(args.run, args.checkpoint, device_kind(args.device))
    model = run.model
    s_n = model.num_stages
    if args.stage is not None and not 1 <= args.stage <= s_n:
        raise ValueError(f"--stage {args.stage}: the model has stages 1..{s_n}")
    fs = features(run, args.split, args)
    sweeper = SigmaSweeper(fs, model, stage_metrics="all" if split_stage(args.metric)[0] is not None else "accuracy")
    learned = sweeper.evaluate()
    if args.metric not in learned:
        raise ValueError(f"--metric {args.metric}: unknown; choose from "
                         f"{', '.join(k for k in learned if k not in ('sigma',))}")
    if args.stage is not None:
        df = sweeper.sweep(args.sigmas, stage=args.stage)
    elif args.joint:
        df = sweeper.sweep(args.sigmas, stage=None)
    else:
        df = sweeper.sweep_all(args.sigmas)

    sig = ", ".join(f"{v:.4g}" for v in learned["sigma"])
    print(f"{run.run_dir.name} ({args.split}, {sweeper.num_samples} images, nga={model.config.nga}): "
          f"learned σ = [{sig}] → {args.metric} {learned[args.metric]:.4f}")
    if model.config.nga == "last":
        print("note: nga 'last' ignores σ (every value gives the same result)")
    with pd.option_context("display.width", 160, "display.max_rows", 1000):
        print(sweep_table(df, args.metric).to_string(float_format=lambda v: f"{v:.4f}"))
    best = sweeper.best(df, args.metric)
    varied = "joint" if best["stage"] == "joint" else f"stage {int(best['stage'])}"
    per_stage = ", ".join(f"{best['sigma_' + str(s + 1)]:.4g}" for s in range(s_n))
    print(f"best {args.metric}: {best[args.metric]:.4f} at σ = {best['sigma']:.4g} ({varied}); "
          f"σ per stage = [{per_stage}]")

    if out is not None:
        csv_path = out if out.suffix.lower() == ".csv" else out.with_suffix(".csv")
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(csv_path, index=False)
        written = [csv_path]
        if out.suffix.lower() != ".csv":
            from analysis.figures import sigma_sweep_figure  # plotly: only when a figure is drawn

            fig = sigma_sweep_figure(df, args.metric, learned_sigma=learned["sigma"],
                                     title=f"{run.run_dir.name}: {args.metric} vs σ ({args.split})", paper=args.column)
            export_figure(fig, out)
            written.insert(0, out)
        print("wrote " + ", ".join(str(p) for p in written))
    return 0

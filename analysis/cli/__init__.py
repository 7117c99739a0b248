"""``cascade cka``, ``cascade sigma-sweep``, ``cascade report`` and ``cascade explain``: the analysis subcommands.

    cascade cka --run DIR [--against frozen|DIR] [--split val] [--mode within|frozen|stages] --out FILE.pdf
    cascade sigma-sweep --run DIR --sigmas 0.1:10:50 [--stage N] [--metric accuracy] [--out FILE.csv|pdf]
    cascade report --run DIR --out OUT | --ablation DIR --out OUT   (analysis.report)
    cascade explain --run DIR IMG... --out FIG.pdf                   (analysis.explain_command)

Per-block features are cached under ``<run>/features`` (safetensors + JSON), so a
second call on the same run, checkpoint and split does no forward pass.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

FIGURE_SUFFIXES = (".pdf", ".svg", ".png")
MODES = ("within", "frozen", "stages")


def register(subparsers) -> None:
    from analysis.sigma import parse_sigma_grid

    def grid(text: str):
        try:
            return parse_sigma_grid(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--run", required=True, metavar="DIR", help="run folder (runs/<name>)")
        p.add_argument("--split", choices=["train", "val", "test"], default="val", help="data split (default val)")
        p.add_argument("--checkpoint", default="best", metavar="best|last|FILE", help="which checkpoint (default best)")
        p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
        p.add_argument("--batch-size", type=int, default=64, help="images per forward pass when extracting features")
        p.add_argument("--cache-dir", metavar="DIR", default=None, help="feature cache (default <run>/features)")
        p.add_argument("--refresh", action="store_true", help="recompute features even when cached")
        p.add_argument("--quiet", action="store_true", help="no progress bars")

    p = subparsers.add_parser(
        "cka", help="CKA heatmap of a run: within the model, against frozen CLIP, or per stage",
        description="Layer-wise CKA (minibatch, unbiased HSIC) of a run's per-block features on a split. "
                    "within: block×block of the run; frozen: the run's blocks against frozen CLIP's (or another "
                    "run's) — the diagonal is the drift the prompts cause; stages: each stage's Z_s against frozen "
                    "CLIP's blocks and final embedding (or against another run's stages). Writes the figure and "
                    "the matrix as CSV + NPZ beside it.")
    common(p)
    p.add_argument("--against", default="frozen", metavar="frozen|DIR",
                   help="reference: frozen CLIP on the run's backbone (default) or another run folder")
    p.add_argument("--mode", choices=MODES, default="within")
    p.add_argument("--pooling", choices=["cls", "mean"], default=None, help="block feature pooling (default: the run's)")
    p.add_argument("--out", required=True, metavar="FILE.{pdf,svg,png}", help="figure file; .csv/.npz are written beside it")
    p.add_argument("--column", choices=["single", "double"], default="single", help="paper column width")
    p.add_argument("--values", action="store_true", help="print each value in its cell")
    p.set_defaults(func=handle_cka)

    p = subparsers.add_parser(
        "sigma-sweep", help="exact σ sweep from cached per-block features",
        description="Metrics of a run for a grid of NGA σ values, computed exactly from cached per-block "
                    "features (σ acts after the blocks). Without --stage every stage is varied in turn (the others "
                    "held at their learned σ) and all stages together (joint).")
    common(p)
    p.add_argument("--sigmas", type=grid, default=grid("0.1:10:50"), metavar="LO:HI:N",
                   help="grid: N log-spaced values from LO to HI, or a comma list (default 0.1:10:50)")
    p.add_argument("--stage", type=int, default=None, metavar="N", help="vary only stage N (1-based)")
    p.add_argument("--joint", action="store_true", help="only the joint sweep (all stages the same σ)")
    p.add_argument("--metric", default="accuracy",
                   help="metric to print and plot (accuracy, macro_f1, uar, kl, ..., or stage<k>.accuracy)")
    p.add_argument("--out", default=None, metavar="FILE.{pdf,svg,png,csv}",
                   help="write the sweep as CSV or as a figure (a figure also writes the CSV beside it)")
    p.add_argument("--column", choices=["single", "double"], default="single", help="paper column width")
    p.set_defaults(func=handle_sigma_sweep)

    from analysis.report import register as register_report

    register_report(subparsers, _guard)

    from analysis.explain_command import register as register_explain

    register_explain(subparsers)


# ---------------------------------------------------------------------------
# shared
# ---------------------------------------------------------------------------


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def _guard(command: str, fn, args: argparse.Namespace) -> int:
    """Known user errors → one line on stderr and exit status 2."""
    from analysis.export import ExportError

    try:
        from cascade.commands._common import known_errors

        known: tuple = known_errors()
    except ImportError:  # pragma: no cover - the trainer's helpers are optional here
        known = (FileNotFoundError,)
    try:
        return int(fn(args) or 0)
    except (*known, ValueError, KeyError, ExportError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"cascade {command}: error: {msg}", file=sys.stderr)
        return 2


def _features(run, split: str, args: argparse.Namespace, which: str = "run", poolings=None):
    from analysis.features import run_features

    return run_features(run, split, which=which, poolings=poolings, cache_dir=args.cache_dir,
                        device=_device(args.device), batch_size=args.batch_size, refresh=args.refresh,
                        progress=not args.quiet)


def _check_out(out: str, allowed: tuple[str, ...]) -> Path:
    path = Path(out)
    if path.suffix.lower() not in allowed:
        raise ValueError(f"--out {out}: expected one of {', '.join(allowed)}")
    return path


def _note(args: argparse.Namespace, text: str) -> None:
    if not args.quiet:
        print(text, file=sys.stderr)


# ---------------------------------------------------------------------------
# cascade cka
# ---------------------------------------------------------------------------


def handle_cka(args: argparse.Namespace) -> int:
    return _guard("cka", _cka, args)


def _cka(args: argparse.Namespace) -> int:
    import pandas as pd

    from analysis import drift
    from analysis.export import export_figure
    from analysis.features import frozen_final_embedding, load_run
    from analysis.figures import cka_heatmap

    out = _check_out(args.out, FIGURE_SUFFIXES)
    dev = _device(args.device)
    run = load_run(args.run, args.checkpoint, dev)
    model = run.model
    pooling = args.pooling or model.config.pooling
    against_frozen = args.against == "frozen"
    other = None if against_frozen or args.mode == "within" else load_run(args.against, args.checkpoint, dev)
    name = run.run_dir.name

    if args.mode == "within":
        fs = _features(run, args.split, args, poolings=[pooling])
        res = drift.within_model_cka(fs, pooling=pooling, model=model)
        title = f"{name}: block × block CKA ({args.split})"
        x_title = y_title = "block"
        summary = None
    elif args.mode == "frozen":
        fs = _features(run, args.split, args, poolings=[pooling])
        if against_frozen:
            ref = _features(run, args.split, args, which="frozen", poolings=[pooling])
            ref_name = "frozen CLIP"
        else:
            ref = _features(other, args.split, args, poolings=[pooling])
            ref_name = other.run_dir.name
        res = drift.cross_model_cka(fs, ref, pooling=pooling, model=model)
        title = f"{name} vs {ref_name}: CKA per block ({args.split})"
        x_title, y_title = f"block ({ref_name})", f"block ({name})"
        blocks = [int(b) for b in res.rows]
        diag = [float(res.matrix[i, res.cols.index(str(b))]) if str(b) in res.cols else float("nan")
                for i, b in enumerate(blocks)]
        summary = pd.DataFrame({"block": blocks, "cka": diag, "drift": [1 - v for v in diag]})
    else:
        fs = _features(run, args.split, args)
        if against_frozen:
            ref = _features(run, args.split, args, which="frozen", poolings=sorted({"cls", model.config.pooling}))
            emb = frozen_final_embedding(ref, model)
            res = drift.stage_vs_frozen_matrix(fs, model, ref, emb)
            title = f"{name}: stage features Z_s vs frozen CLIP ({args.split})"
            x_title, y_title = "frozen CLIP block / final embedding", "stage"
            summary = drift.stage_drift(fs, model, emb)
        else:
            ref = _features(other, args.split, args)
            res = drift.stages_vs_stages_matrix(fs, model, ref, other.model)
            title = f"{name} vs {other.run_dir.name}: stage CKA ({args.split})"
            x_title, y_title = f"stage ({other.run_dir.name})", f"stage ({name})"
            summary = None

    csv_path, npz_path = res.export(out.with_suffix(""))
    fig = cka_heatmap(res, title=title, x_title=x_title, y_title=y_title, show_values=args.values,
                      paper=args.column)
    if args.mode == "stages":
        fig.update_layout(height=max(240, 40 * len(res.rows) + 120))
    export_figure(fig, out)
    with pd.option_context("display.width", 160, "display.max_columns", 40):
        if summary is not None:
            print(summary.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        else:
            print(res.to_frame().to_string(float_format=lambda v: f"{v:.3f}"))
    print(f"wrote {out}, {csv_path.name}, {npz_path.name} (n={res.meta.get('n')})")
    return 0


# ---------------------------------------------------------------------------
# cascade sigma-sweep
# ---------------------------------------------------------------------------


def handle_sigma_sweep(args: argparse.Namespace) -> int:
    return _guard("sigma-sweep", _sigma_sweep, args)


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
    import re

    from cascade.metrics import CLASSIFICATION_METRICS, DISTRIBUTION_METRICS

    known = set(CLASSIFICATION_METRICS) | set(DISTRIBUTION_METRICS)
    base = name.split(".", 1)[1] if re.match(r"^stage\d+\.", name) else name
    if base not in known:
        raise ValueError(f"--metric {name}: unknown; choose one of {', '.join(sorted(known))} "
                         "(or stage<k>.<metric> for one stage)")


def _sigma_sweep(args: argparse.Namespace) -> int:
    import pandas as pd

    from analysis.features import load_run
    from analysis.sigma import SigmaSweeper

    out = _check_out(args.out, FIGURE_SUFFIXES + (".csv",)) if args.out else None
    _check_metric(args.metric)
    if args.stage is not None:
        # cheap checks first: the run's config says how many stages it has
        from cascade.run_config import load_run_config
        from cascade.train.runfolder import RunFolder

        folder = RunFolder(args.run)
        folder.require()
        n_cfg = load_run_config(folder.config).model_config_for_method().num_stages
        if not 1 <= args.stage <= n_cfg:
            raise ValueError(f"--stage {args.stage}: the model has stages 1..{n_cfg}")
    run = load_run(args.run, args.checkpoint, _device(args.device))
    model = run.model
    s_n = model.num_stages
    if args.stage is not None and not 1 <= args.stage <= s_n:
        raise ValueError(f"--stage {args.stage}: the model has stages 1..{s_n}")
    fs = _features(run, args.split, args)
    sweeper = SigmaSweeper(fs, model, stage_metrics="all" if args.metric.startswith("stage") else "accuracy")
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
            from analysis.export import export_figure
            from analysis.figures import sigma_sweep_figure

            fig = sigma_sweep_figure(df, args.metric, learned_sigma=learned["sigma"],
                                     title=f"{run.run_dir.name}: {args.metric} vs σ ({args.split})", paper=args.column)
            export_figure(fig, out)
            written.insert(0, out)
        print("wrote " + ", ".join(str(p) for p in written))
    return 0

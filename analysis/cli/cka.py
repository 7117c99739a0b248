"""``cascade cka``: layer-wise CKA heatmaps of a run.

    cascade cka --run DIR [--against frozen|DIR] [--split val] [--mode within|frozen|stages] --out FILE.pdf

Per-block features are cached under ``<run>/features`` (safetensors + JSON), so a
second call on the same run, checkpoint and split does no forward pass.
"""
from __future__ import annotations

import argparse

from analysis import drift
from analysis.export import export_figure
from analysis.features import frozen_final_embedding, load_run
from cascade.devices import device_kind

from .common import FIGURE_SUFFIXES, add_run_options, check_out, features, guarded

MODES = ("within", "frozen", "stages")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "cka", help="CKA heatmap of a run: within the model, against frozen CLIP, or per stage",
        description="Layer-wise CKA (minibatch, unbiased HSIC) of a run's per-block features on a split. "
                    "within: block×block of the run; frozen: the run's blocks against frozen CLIP's (or another "
                    "run's) — the diagonal is the drift the prompts cause; stages: each stage's Z_s against frozen "
                    "CLIP's blocks and final embedding (or against another run's stages). Writes the figure and "
                    "the matrix as CSV + NPZ beside it.")
    add_run_options(p)
    p.add_argument("--against", default="frozen", metavar="frozen|DIR",
                   help="reference: frozen CLIP on the run's backbone (default) or another run folder")
    p.add_argument("--mode", choices=MODES, default="within")
    p.add_argument("--pooling", choices=["cls", "mean"], default=None, help="block feature pooling (default: the run's)")
    p.add_argument("--out", required=True, metavar="FILE.{pdf,svg,png}", help="figure file; .csv/.npz are written beside it")
    p.add_argument("--column", choices=["single", "double"], default="single", help="paper column width")
    p.add_argument("--values", action="store_true", help="print each value in its cell")
    p.set_defaults(func=handle)



def handle(args: argparse.Namespace) -> int:
    return guarded("cka", _cka, args)


def _cka(args: argparse.Namespace) -> int:
    import pandas as pd

    from analysis.figures import cka_heatmap  # plotly: only when a figure is drawn

    out = check_out(args.out, FIGURE_SUFFIXES)
    dev = device_kind(args.device)
    run = load_run(args.run, args.checkpoint, dev)
    model = run.model
    pooling = args.pooling or model.config.pooling
    against_frozen = args.against == "frozen"
    other = None if against_frozen or args.mode == "within" else load_run(args.against, args.checkpoint, dev)
    name = run.run_dir.name

    if args.mode == "within":
        fs = features(run, args.split, args, poolings=[pooling])
        res = drift.within_model_cka(fs, pooling=pooling, model=model)
        title = f"{name}: block × block CKA ({args.split})"
        x_title = y_title = "block"
        summary = None
    elif args.mode == "frozen":
        fs = features(run, args.split, args, poolings=[pooling])
        if against_frozen:
            ref = features(run, args.split, args, which="frozen", poolings=[pooling])
            ref_name = "frozen CLIP"
        else:
            ref = features(other, args.split, args, poolings=[pooling])
            ref_name = other.run_dir.name
        res = drift.cross_model_cka(fs, ref, pooling=pooling, model=model)
        title = f"{name} vs {ref_name}: CKA per block ({args.split})"
        x_title, y_title = f"block ({ref_name})", f"block ({name})"
        blocks = [int(b) for b in res.rows]
        diag = [float(res.matrix[i, res.cols.index(str(b))]) if str(b) in res.cols else float("nan")
                for i, b in enumerate(blocks)]
        summary = pd.DataFrame({"block": blocks, "cka": diag, "drift": [1 - v for v in diag]})
    else:
        fs = features(run, args.split, args)
        if against_frozen:
            ref = features(run, args.split, args, which="frozen", poolings=sorted({"cls", model.config.pooling}))
            emb = frozen_final_embedding(ref, model)
            res = drift.stage_vs_frozen_matrix(fs, model, ref, emb)
            title = f"{name}: stage features Z_s vs frozen CLIP ({args.split})"
            x_title, y_title = "frozen CLIP block / final embedding", "stage"
            summary = drift.stage_drift(fs, model, emb)
        else:
            ref = features(other, args.split, args)
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

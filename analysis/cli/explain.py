"""``cascade explain``: per-stage explanation maps of a run for image files.

    cascade explain --run DIR IMG... --out FIG.pdf [--target CLASS] [--checkpoint best|last]

Writes the grid figure (PDF/SVG/PNG by the suffix) and the maps as ``FIG.npz`` beside
it. Unreadable images are reported by name and skipped.
"""
from __future__ import annotations

import argparse
import sys

from analysis.explain import SCORES, explain_images, resolve_targets, save_relevance_npz
from analysis.export import export_figure
from analysis.features import load_run
from cascade.devices import device_kind

from .common import FIGURE_SUFFIXES, check_out, guarded


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "explain", help="where each stage looks: per-stage explanation maps for images",
        description="Gradient-weighted attention rollout (Chefer et al. 2021) for every stage of a run and for its "
                    "fused prediction, one row of overlays per image. Writes the figure and the maps (NPZ, "
                    "loadable without pickle) beside it. Unreadable images are reported and skipped; the exit "
                    "status is 1 when any was skipped, 2 when none could be read.")
    p.add_argument("--run", required=True, metavar="DIR", help="run folder (runs/<name>)")
    p.add_argument("images", nargs="+", metavar="IMG", help="image files")
    p.add_argument("--out", required=True, metavar="FIG.{pdf,svg,png}",
                   help="figure file; FIG.npz is written beside it")
    p.add_argument("--target", default=None, metavar="CLASS",
                   help="class every map explains (a name, or an index); default: each image's fused prediction")
    p.add_argument("--checkpoint", default="best", metavar="best|last|FILE", help="which checkpoint (default best)")
    p.add_argument("--score", choices=SCORES, default="centered",
                   help="explained score: target logit minus the mean logit (default), the raw logit, or log p")
    p.add_argument("--opacity", type=float, default=0.5, help="heat-map opacity over the image, 0-1 (default 0.5)")
    p.add_argument("--column", choices=["single", "double"], default="double", help="paper column width")
    p.add_argument("--no-note", dest="note", action="store_false", help="no footnote under the grid")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    return guarded("explain", _explain, args)


def _target(text: str | None):
    if text is None:
        return None
    return int(text) if text.strip().isdigit() else text.strip()


def format_rows(explained) -> str:
    """A plain-text table: per image, the explained class, then per map p(class) / prompt share."""
    rel = explained.relevance
    names = ["stage " + n.split(" ")[1] if n.startswith("stage") else n for n in rel.names]
    width = max([5] + [len(n) for n in explained.names])
    lines = [f"{'image':<{width}}  {'explains':<10}" + "".join(f"{n:>16}" for n in names)]
    p = rel.target_prob
    for b, name in enumerate(explained.names):
        cells = []
        for k in range(len(names)):
            share = rel.prompt_share[k, b]
            cells.append(f"{p[k, b]:.2f} / " + ("n/a" if share != share else f"{share:.0%}"))
        lines.append(f"{name:<{width}}  {rel.target_names[b]:<10}" + "".join(f"{c:>16}" for c in cells))
    lines.append("(cells: probability of the explained class / share of relevance on prompt tokens)")
    return "\n".join(lines)


def _explain(args: argparse.Namespace) -> int:
    from analysis.explain_figure import explanation_grid  # plotly: only when a figure is drawn

    out = check_out(args.out, FIGURE_SUFFIXES)
    if not 0.0 <= args.opacity <= 1.0:
        raise ValueError(f"--opacity {args.opacity}: expected a value in [0, 1]")
    run = load_run(args.run, args.checkpoint, device_kind(args.device))
    target = _target(args.target)
    if target is not None:
        resolve_targets(target, run.model.classnames, 1)   # an unknown class fails before any work
    explained = explain_images(run.model, args.images, target, score=args.score)   # none readable: exit 2
    for message in explained.failed:
        print(f"cascade explain: skipped {message}", file=sys.stderr)
    info = run.model.backbone_info
    print(f"run: {run.run_dir} ({run.checkpoint.name}); {info.describe()}")
    print(format_rows(explained))
    fig = explanation_grid(explained, opacity=args.opacity, paper=args.column, note=args.note)
    export_figure(fig, out)
    npz = save_relevance_npz(explained, out.with_suffix(".npz"))
    print(f"wrote {out}, {npz.name} ({len(explained.names)} images, {len(explained.failed)} skipped)")
    return 1 if explained.failed else 0

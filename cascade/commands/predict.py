"""``cascade predict``: per-stage and fused emotion probabilities for image files."""
from __future__ import annotations

import argparse
import json
import sys

from ..predict import format_table, load_predictor, predict_images
from ..runfolder import RANDOM_WEIGHTS_NOTE
from .guard import run_guarded


def register(subparsers) -> None:
    p = subparsers.add_parser("predict", help="per-stage and fused probabilities for images",
                              description="Predict emotions for image files with a trained run (--run) or "
                                          "zero-shot CLIP (--model/--pretrained). Unreadable images are reported "
                                          "and skipped; the exit status is 1 when any image failed.")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--run", metavar="DIR", help="run folder whose checkpoint to use")
    src.add_argument("--model", metavar="NAME", help="open_clip model for zero-shot prediction (e.g. ViT-B-32), "
                                                     "or auto: the architecture of the --pretrained weights")
    p.add_argument("--checkpoint", default="best", metavar="best|last|FILE")
    p.add_argument("--pretrained", default="openai", metavar="TAG|PATH|none",
                   help="weights for --model: a tag, a weights file (open_clip, OpenAI .pt, transformers) or "
                        "transformers folder (default openai; none = random weights; cascade weights lists "
                        "those on this machine)")
    p.add_argument("--classes", metavar="A,B,...", help="class names for --model (default: the Emotion6 classes)")
    p.add_argument("--quick-gelu", action=argparse.BooleanOptionalAction, default=None,
                   help="QuickGELU in the --model's blocks (OpenAI weights need it); default: from the tag, a "
                        "*-quickgelu model name or the open_clip_config.json beside a weights file, else GELU "
                        "with a warning")
    p.add_argument("--seed", type=int, default=0, help="seed of random weights (--pretrained none)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true", help="JSON instead of a table")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    return run_guarded("predict", _predict, args)


def _predict(args: argparse.Namespace) -> int:

    if args.run:
        predictor = load_predictor(args.run, checkpoint=args.checkpoint, device=args.device)
    else:
        classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
        predictor = load_predictor(model_name=args.model or "ViT-B-32", pretrained=args.pretrained, classes=classes,
                                   device=args.device, seed=args.seed, quick_gelu=args.quick_gelu)
    results = predict_images(predictor.model, predictor.preprocess, args.images, device=args.device)
    failed = [r for r in results if not r["ok"]]
    for r in failed:
        print(f"cascade predict: error: {r['error']}", file=sys.stderr)
    if args.json:
        payload = {"source": predictor.source, "random_weights": predictor.random_weights,
                   "backbone": predictor.model.backbone_info.to_dict(),
                   "classnames": list(predictor.model.classnames), "results": results}
        if predictor.random_weights:
            payload["warning"] = RANDOM_WEIGHTS_NOTE
        print(json.dumps(payload, indent=2))
    else:
        print(f"model: {predictor.source}")
        if predictor.random_weights:
            print(f"WARNING: {RANDOM_WEIGHTS_NOTE}")
        print(format_table(results, predictor.model.classnames))
    return 1 if failed else 0

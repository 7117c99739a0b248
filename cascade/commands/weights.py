"""``cascade weights``: the CLIP weights already on this machine, and how to use each."""
from __future__ import annotations

import argparse
import json

from ..weights.finder import find_weights, search_paths
from .guard import run_guarded


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "weights", help="list the CLIP weights already on this machine",
        description="List CLIP weights found in the Hugging Face hub cache (HF_HUB_CACHE / HF_HOME), in "
                    "~/.cache/clip (OpenAI's clip package) and in the folders of CASCADE_WEIGHTS_PATH: path, "
                    "format (open_clip, torchscript, transformers), architecture, QuickGELU, size, and the "
                    "--model/--pretrained values that use it.")
    p.add_argument("--json", action="store_true", help="JSON instead of a table")
    p.add_argument("--all", action="store_true", help="also list files that cannot be used, with the reason")
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    return run_guarded("weights", _weights, args)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def _weights(args: argparse.Namespace) -> int:
    found = find_weights()
    if args.json:
        print(json.dumps({"searched": [{"location": loc, "path": str(p)} for loc, p in search_paths()],
                          "weights": [f.to_dict() for f in found]}, indent=2))
        return 0
    usable = [f for f in found if f.usable]
    if not usable:
        print("No CLIP weights found in: " + ", ".join(str(p) for _, p in search_paths()))
    for f in usable:
        gelu = {True: "QuickGELU", False: "GELU", None: "GELU unless --quick-gelu"}[f.quick_gelu]
        print(f"{f.path}\n  {f.format} · {f.architecture} · {gelu} · {_size(f.bytes)} · {f.location}\n"
              f"  use: --model {f.model} --pretrained {f.pretrained}")
    bad = [f for f in found if not f.usable]
    if bad and args.all:
        print("\nNot usable:")
        for f in bad:
            print(f"  {f.error}")
    elif bad:
        print(f"\n({len(bad)} other file(s) found that are not CLIP weights cascade can load: --all lists them)")
    return 0

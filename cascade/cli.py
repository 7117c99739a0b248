"""The ``cascade`` command: each subcommand lives in its own module with a ``register``."""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .plugins import COMMANDS, plugins
from .version import __version__

# Order is the order shown in --help; commands of plugins (cascade.plugins) follow.
COMMAND_MODULES = [
    "cascade.commands.train",
    "cascade.commands.evaluate",
    "cascade.commands.predict",
    "cascade.commands.weights",
    "cascade.commands.ablate",
    "cascade.commands.shards",
    "cascade.commands.bench",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cascade",
                                     description="Cascade prompts for CLIP image emotion recognition")
    parser.add_argument("--version", action="version", version=f"cascade {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    # Packages that build on cascade (the project's own ``analysis``: cka, sigma-sweep, ...).
    for ep in plugins(COMMANDS).values():
        ep.load()(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.getLogger().setLevel(logging.ERROR)  # open_clip logs a warning for every random init
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

"""Entry points through which packages that build on cascade extend it.

cascade never imports such a package by name (the project's own ``analysis`` is one): it
looks up these entry-point groups instead.

- ``cascade.commands``: ``register(subparsers)`` adds CLI subcommands (``cka``, ...).
- ``cascade.bench``: ``figures() -> {name: function}`` adds ``cascade bench`` figures
  (see :mod:`cascade.bench.plugins`).
- ``cascade.callbacks``: ``callbacks(run_config) -> list`` gives the trainer callbacks a
  run's config asks for (drift monitoring when ``train.drift.every_k_steps > 0``); the
  trainer adds them to every run, from the CLI, the dashboard or :func:`cascade.train.train`.
"""
from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Any

COMMANDS = "cascade.commands"
BENCH = "cascade.bench"
CALLBACKS = "cascade.callbacks"


def plugins(group: str) -> dict[str, EntryPoint]:
    """Name → entry point of a group, sorted by name."""
    return {ep.name: ep for ep in sorted(entry_points(group=group), key=lambda ep: ep.name)}


def configured_callbacks(run_config: Any) -> list[Any]:
    """The trainer callbacks every installed plugin derives from ``run_config``."""
    out: list[Any] = []
    for ep in plugins(CALLBACKS).values():
        out.extend(ep.load()(run_config))
    return out

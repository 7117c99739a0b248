"""Figures that packages building on cascade add to ``cascade bench``.

A package adds a figure through an entry point in the ``cascade.bench`` group (the project's
own ``analysis`` adds ``analysis``: σ-sweep and CKA timings). The entry point's function is
called with the keyword arguments of :data:`CONTEXT_KEYS` that its signature accepts and
returns the figure as a JSON-able dict; a row that is a dict with a ``summary`` string is
printed by the report.
"""
from __future__ import annotations

import inspect
from importlib.metadata import EntryPoint
from typing import Any

from ..plugins import BENCH, plugins

CONTEXT_KEYS = ("quick", "device", "model", "batch_size", "width", "depth", "embed_dim", "image_size", "backbone")


def plugin_figures() -> dict[str, EntryPoint]:
    """Figure name → entry point, for every installed package that adds one."""
    return plugins(BENCH)


def run_plugin(ep: EntryPoint, context: dict[str, Any]) -> dict:
    """Load and call one plugin figure with the context its signature accepts."""
    fn = ep.load()
    params = inspect.signature(fn).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        context = {k: v for k, v in context.items() if k in params}
    return dict(fn(**context))

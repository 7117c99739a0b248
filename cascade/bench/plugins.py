"""Figures that packages building on cascade add to ``cascade bench``.

A package adds figures through an entry point in the ``cascade.bench`` group: a function
that returns ``{figure name: function}`` (the project's own ``analysis`` adds ``analysis``,
σ-sweep and CKA timings). A figure's function is called with the keyword arguments of
:data:`CONTEXT_KEYS` that its signature accepts and returns the figure as a JSON-able dict;
a row that is a dict with a ``summary`` string is printed by the report.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

from ..plugins import BENCH, plugins

CONTEXT_KEYS = ("quick", "device", "model", "batch_size", "width", "depth", "embed_dim", "image_size", "backbone")


def plugin_figures() -> dict[str, Callable[..., dict]]:
    """Figure name → function, for every installed package that adds figures."""
    out: dict[str, Callable[..., dict]] = {}
    for ep in plugins(BENCH).values():
        out.update(ep.load()())
    return out


def run_plugin(fn: Callable[..., dict], context: dict[str, Any]) -> dict:
    """Call one plugin figure with the context its signature accepts."""
    params = inspect.signature(fn).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        context = {k: v for k, v in context.items() if k in params}
    return dict(fn(**context))

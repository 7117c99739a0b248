"""The figures ``analysis`` adds to ``cascade bench`` (see ``cascade.bench.plugins``).

:func:`figures` is the ``cascade.bench`` entry point: figure name → function.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable


def _timed(fn: Callable, kwargs: dict[str, Any]) -> dict:
    """One timing row: ``fn``'s scalar results, or why it could not run."""
    try:
        result = fn(**kwargs)
    except Exception as exc:  # a bench must report, not crash, when one figure fails
        return {"available": False, "skipped": f"{fn.__module__}.{fn.__name__} failed ({exc.__class__.__name__}: {exc})"}
    out = {k: v for k, v in dict(result).items() if isinstance(v, (int, float, str, bool)) or v is None}
    out["available"] = True
    out["called_with"] = {k: v for k, v in kwargs.items() if k in inspect.signature(fn).parameters}
    return out


def bench_analysis(*, quick: bool, device: str, width: int, depth: int, embed_dim: int) -> dict:
    from .cka import benchmark_cka
    from .sigma import benchmark_sweep

    if quick:
        sweep = dict(n=256, num_sigmas=8, width=width, embed_dim=embed_dim, repeats=1, device=device)
        cka = dict(n=256, d=width, layers=depth + 1, batch_size=64, repeats=1, device=device)
    else:
        # Emotion6-sized validation set (1,980 images), ViT-B-32 widths.
        sweep = dict(n=2000, num_sigmas=100, width=width, embed_dim=embed_dim, repeats=3, device=device)
        cka = dict(n=10_000, d=width, layers=depth + 1, batch_size=256, repeats=3, device=device)
    return {"sigma_sweep": _timed(benchmark_sweep, sweep), "cka": _timed(benchmark_cka, cka)}


def figures() -> dict[str, Callable[..., dict]]:
    """``cascade bench --figures NAME`` for each name here."""
    from .explain_bench import bench_explain

    return {"analysis": bench_analysis, "explain": bench_explain}

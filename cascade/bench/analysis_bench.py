"""Figure 5: σ-sweep and CKA timings from the analysis package, when it is importable."""
from __future__ import annotations

import importlib
import inspect
from typing import Any, Callable


def _call(fn: Callable, **kwargs: Any) -> dict:
    """Call ``fn`` with the keyword arguments its signature accepts."""
    params = inspect.signature(fn).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        kwargs = {k: v for k, v in kwargs.items() if k in params}
    return fn(**kwargs)


def _run(module: str, func: str, kwargs: dict) -> dict:
    try:
        fn = getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as exc:
        return {"available": False, "skipped": f"{module}.{func} not available ({exc.__class__.__name__}: {exc})"}
    try:
        result = _call(fn, **kwargs)
    except Exception as exc:  # a bench must report, not crash, when a peer's code fails
        return {"available": False, "skipped": f"{module}.{func} failed ({exc.__class__.__name__}: {exc})"}
    out = {k: v for k, v in dict(result).items() if isinstance(v, (int, float, str, bool)) or v is None}
    out["available"] = True
    out["called_with"] = {k: v for k, v in kwargs.items() if k in inspect.signature(fn).parameters}
    return out


def bench_analysis(*, quick: bool, device: str, width: int, depth: int, embed_dim: int) -> dict:
    if quick:
        sweep = dict(n=256, num_sigmas=8, width=width, embed_dim=embed_dim, repeats=1, device=device)
        cka = dict(n=256, d=width, layers=depth + 1, batch_size=64, repeats=1, device=device)
    else:
        # Emotion6-sized validation set (1,980 images), ViT-B-32 widths.
        sweep = dict(n=2000, num_sigmas=100, width=width, embed_dim=embed_dim, repeats=3, device=device)
        cka = dict(n=10_000, d=width, layers=depth + 1, batch_size=256, repeats=3, device=device)
    return {
        "sigma_sweep": _run("analysis.sigma", "benchmark_sweep", sweep),
        "cka": _run("analysis.cka", "benchmark_cka", cka),
    }

"""The figures ``analysis`` adds to ``cascade bench`` (see ``cascade.bench.plugins``).

:func:`figures` is the ``cascade.bench`` entry point: figure name → function.

- ``analysis``: time of an exact σ sweep and of a minibatch CKA matrix at the bench's widths
  (an Emotion6-sized validation set; small sizes when quick);
- ``explain``: how fast explanation maps are, and how faithful:

  - speed: all stages + fused for one image of the bench's backbone (ViT-B-32 by default,
    the b32-4stage cascade), against the plain no-grad forward of the same model, on CPU
    with 2 threads (the target: under 1 s for ViT-B-32) and with 1, and on the GPU when the
    bench runs on one (target: under 50 ms);
  - deletion: the cascade-tiny model trained on the synthetic faces (trained here, in a
    temporary folder, seeded), its validation images blanked patch by patch in relevance
    order and in random orders; the area under each map's deletion curve, for the default
    centered score and for the raw logit.
"""
from __future__ import annotations

import copy
import inspect
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

from cascade.bench.timing import compare, synchronizer
from cascade.config import CascadeConfig
from cascade.model import build_model
from cascade.run_config import load_run_config
from cascade.train import train

from .cka import benchmark_cka
from .deletion import run_deletion
from .explain import stage_relevance
from .features import load_run
from .sigma import benchmark_sweep, torch_threads

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
    if quick:
        sweep = dict(n=256, num_sigmas=8, width=width, embed_dim=embed_dim, repeats=1, device=device)
        cka = dict(n=256, d=width, layers=depth + 1, batch_size=64, repeats=1, device=device)
    else:
        # Emotion6-sized validation set (1,980 images), ViT-B-32 widths.
        sweep = dict(n=2000, num_sigmas=100, width=width, embed_dim=embed_dim, repeats=3, device=device)
        cka = dict(n=10_000, d=width, layers=depth + 1, batch_size=256, repeats=3, device=device)
    return {"sigma_sweep": _timed(benchmark_sweep, sweep), "cka": _timed(benchmark_cka, cka)}


# ---------------------------------------------------------------------------
# explain
# ---------------------------------------------------------------------------

SPEED_TARGET_CPU_S = 1.0
SPEED_TARGET_GPU_S = 0.05

SYNTHETIC_TINY = Path(__file__).resolve().parents[1] / "configs" / "synthetic-tiny.yaml"


def synthetic_run_config(runs_dir: str, *, quick: bool):
    """The shipped synthetic-tiny example run (configs/synthetic-tiny.yaml); smaller when quick."""
    values: dict[str, Any] = {"run.runs_dir": runs_dir}
    if quick:
        values.update({"data.synthetic.num_samples": 120, "model.prompt_tokens": 2, "train.epochs.unfreeze": 0,
                       "train.epochs.global": 1, "train.batch_size": 16})
    return load_run_config(SYNTHETIC_TINY, values)


def _speed(backbone, device: str, quick: bool) -> dict:
    info = backbone.info
    torch.manual_seed(0)
    model = build_model(backbone, ["anger", "disgust", "fear", "joy", "sadness", "surprise"],
                        CascadeConfig.from_preset("b32-4stage")).eval()
    x = torch.randn(1, 3, info.image_size, info.image_size, generator=torch.Generator().manual_seed(0))
    out: dict[str, Any] = {"model": info.name, "random_weights": info.random_weights, "preset": "b32-4stage",
                           "stages": model.num_stages, "images": 1}

    def timed(m, dev: torch.device) -> dict:
        xd = x.to(dev)

        def plain():
            with torch.no_grad():
                m(xd)

        t = compare({"explain": lambda: stage_relevance(m, xd), "forward": plain}, warmup=1,
                    repeats=2 if quick else 5, sync=synchronizer(dev))
        return {"seconds_median": t["explain"].median, "cpu_seconds_median": t["explain"].cpu_median,
                "forward_seconds_median": t["forward"].median,
                "explain_vs_forward": t["explain"].median / t["forward"].median, "spread": t["explain"].spread}

    on_gpu = torch.device(device).type == "cuda"
    # The backbone is shared with the other figures: time the CPU on a copy when it lives on the GPU.
    cpu_model = copy.deepcopy(model).cpu() if on_gpu else model
    # The target's setting is 2 threads; one thread is timed too (full runs), as it is a steadier
    # measure on a machine shared with other jobs. A quick run times one thread only.
    for n in (1,) if quick else (2, 1):
        with torch_threads(n):
            row = timed(cpu_model, torch.device("cpu"))
        out["cpu" if n == (1 if quick else 2) else f"cpu_{n}_thread"] = {**row, "threads": n}
    cpu = out["cpu"]
    target = info.name == "ViT-B-32" and not quick
    verdict = ("PASS" if cpu["seconds_median"] < SPEED_TARGET_CPU_S else "FAIL") if target else \
        "n/a (ViT-B-32, full run only)"
    one = out.get("cpu_1_thread")
    summary = (f"{info.name} b32-4stage, 1 image, {model.num_stages} stages + fused: "
               f"{cpu['seconds_median']:.3f} s median on CPU ({cpu['threads']} thread{'s' * (cpu['threads'] > 1)}"
               + (f"; 1 thread {one['seconds_median']:.3f} s, process CPU {one['cpu_seconds_median']:.2f} s" if one else
                  f"; process CPU {cpu['cpu_seconds_median']:.2f} s")
               + f"), {cpu['explain_vs_forward']:.1f}x the no-grad forward ({cpu['forward_seconds_median']:.3f} s); "
               f"target < {SPEED_TARGET_CPU_S:g} s: {verdict}")
    if on_gpu:
        del cpu_model
        gpu = timed(model, torch.device(device))
        out["gpu"] = gpu
        gv = ("PASS" if gpu["seconds_median"] < SPEED_TARGET_GPU_S else "FAIL") if target else "n/a"
        summary += (f"; GPU fp32 {gpu['seconds_median'] * 1e3:.1f} ms ({gpu['explain_vs_forward']:.1f}x forward), "
                    f"target < {SPEED_TARGET_GPU_S * 1e3:g} ms: {gv}")
    else:
        summary += "; GPU figure not measured (device cpu)"
    out["summary"] = summary
    return out


def _deletion(quick: bool) -> dict:
    orders = 2 if quick else 10
    rows: dict[str, Any] = {}
    # The tiny model runs several times faster on one thread (two spin-wait on a busy machine).
    with torch_threads(1), tempfile.TemporaryDirectory(prefix="cascade-explain-bench-") as tmp:
        path = train(synthetic_run_config(tmp, quick=quick), quiet=True)
        run = load_run(path, "best", "cpu")
        centered, _ = run_deletion(run, random_orders=orders, seed=0)
        logit, _ = run_deletion(run, random_orders=orders, seed=0, score="logit")
    for c, lg in zip(centered.rows(), logit.rows()):
        rows[f"deletion {c['map']}"] = {
            **c, "auc_relevance_logit": lg["auc_relevance"], "images_lower_logit": lg["images_lower"],
            "summary": (f"deletion AUC, relevance order {c['auc_relevance']:.3f} vs random {c['auc_random']:.3f} "
                        f"({c['images_lower']}/{c['images']} images lower; {c['random_orders']} random orders); "
                        f"raw-logit maps {lg['auc_relevance']:.3f} ({lg['images_lower']}/{lg['images']} lower)"),
        }
    rows["deletion setup"] = {
        "summary": (f"cascade-tiny (random backbone) trained on {'120' if quick else '360'} synthetic faces, "
                    f"{centered.num_images} val images, patches blanked to the train mean; lower AUC = more faithful"),
        "images": centered.num_images, "random_orders": orders, "quick": quick,
    }
    return rows


def bench_explain(*, quick: bool, device: str, backbone) -> dict:
    """The ``explain`` figure: a speed row and one deletion row per map (see the module docstring)."""
    res: dict[str, Any] = {}
    try:
        res["speed"] = _speed(backbone, device, quick)
    except Exception as exc:  # noqa: BLE001 - one failing row must not lose the other
        res["speed"] = {"available": False, "summary": f"failed: {exc.__class__.__name__}: {exc}"}
    try:
        res.update(_deletion(quick))
    except Exception as exc:  # noqa: BLE001
        res["deletion"] = {"available": False, "summary": f"failed: {exc.__class__.__name__}: {exc}"}
    return res


def figures() -> dict[str, Callable[..., dict]]:
    """``cascade bench --figures NAME`` for each name here."""
    return {"analysis": bench_analysis, "explain": bench_explain}

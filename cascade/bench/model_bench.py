"""Model figures: inference and training throughput per variant, the prefix cache, memory."""
from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from typing import Callable

import torch

from ..config import CascadeConfig
from ..losses import cascade_loss
from ..model import CascadeCLIP, build_model, compile_model
from ..flops import cascade_flops, plain_flops
from .timing import compare, measure_peak, synchronizer

CLASSES = ["anger", "disgust", "fear", "joy", "sadness", "surprise"]

# name -> preset. "cascade" is the method (b32-4stage, M = 16 per stage); the others
# are the baselines it is compared against.
VARIANTS: dict[str, str] = {
    "cascade": "b32-4stage",
    "shallow": "shallow",
    "vpt-deep": "vpt-deep",
}


@dataclass
class BenchContext:
    backbone: object
    device: torch.device
    batch_size: int
    precision: str = "fp32"        # fp32 | bf16 (autocast)
    warmup: int = 1
    repeats: int = 3
    seed: int = 0

    @property
    def sync(self) -> Callable[[], None]:
        return synchronizer(self.device)

    def autocast(self):
        if self.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def images(self, n: int | None = None) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed)
        s = self.backbone.info.image_size
        return torch.randn(n or self.batch_size, 3, s, s, generator=g).to(self.device)

    def labels(self, n: int | None = None) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed + 1)
        return torch.randint(0, len(CLASSES), (n or self.batch_size,), generator=g).to(self.device)


def build_variants(ctx: BenchContext, names: list[str] | None = None) -> dict[str, CascadeCLIP]:
    out = {}
    for name in names or list(VARIANTS):
        model = build_model(ctx.backbone, CLASSES, CascadeConfig.from_preset(VARIANTS.get(name, name)))
        out[name] = model.to(ctx.device).eval()
    return out


def frozen_bf16_variant(ctx: BenchContext, name: str = "cascade") -> CascadeCLIP:
    """Variant ``name`` on a copy of the backbone stored in bf16 (``train.frozen_dtype: bf16``)."""
    model = build_model(copy.deepcopy(ctx.backbone), CLASSES, CascadeConfig.from_preset(VARIANTS.get(name, name)))
    return model.to(ctx.device).eval().set_frozen_dtype("bf16")


def plain_forward(ctx: BenchContext, x: torch.Tensor) -> Callable[[], object]:
    model = ctx.backbone.model

    def run():
        with torch.no_grad(), ctx.autocast():
            return model.encode_image(x)
    return run


def inference(ctx: BenchContext, model: CascadeCLIP, x: torch.Tensor, fast: bool = True) -> Callable[[], object]:
    def run():
        getattr(model, "_orig_mod", model).use_fast_blocks = fast  # the module under torch.compile
        with torch.no_grad(), ctx.autocast():
            return model(x)
    return run


def train_step(ctx: BenchContext, model: CascadeCLIP, x: torch.Tensor | None, y: torch.Tensor, *,
               prefix_tokens: torch.Tensor | None = None, fast: bool = True) -> Callable[[], object]:
    """One optimisation step: forward, the dual-task loss, backward, AdamW (backbone frozen)."""
    params = [p for p in model.parameters() if p.requires_grad]
    kwargs = {"fused": True} if ctx.device.type == "cuda" else {}
    opt = torch.optim.AdamW(params, lr=1e-4, **kwargs)

    def run():
        getattr(model, "_orig_mod", model).use_fast_blocks = fast  # the module under torch.compile
        if hasattr(model, "_orig_mod"):
            torch.compiler.cudagraph_mark_step_begin()   # one training iteration per call
        model.train()
        with ctx.autocast():
            out = model(x, prefix_tokens=prefix_tokens) if prefix_tokens is not None else model(x)
            loss = cascade_loss(out, y)["total"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        model.eval()
        return loss
    return run


def image_row(t) -> dict:
    """A timing's figures, with its throughput named in images."""
    row = t.to_dict()
    row["images_per_second"] = row.pop("items_per_second")
    return row


def _rows(timings, items, base: str, flops: dict[str, float] | None = None) -> dict:
    rows = {}
    for name, t in timings.items():
        row = image_row(t)
        row["ratio_to_plain"] = t.median / timings[base].median
        row["cpu_ratio_to_plain"] = t.cpu_median / timings[base].cpu_median if timings[base].cpu_median > 0 else None
        if flops and name in flops:
            row["gflop_per_image"] = flops[name] / 1e9
            row["achieved_tflops"] = flops[name] * items / t.median / 1e12
        rows[name] = row
    return rows


def _measure_variants(ctx: BenchContext, models: dict[str, CascadeCLIP], make_fn, flop_kind: str,
                      reference: bool) -> tuple[dict, dict]:
    """Time plain ``encode_image`` and every variant side by side; rows with FLOPs and ratios.

    ``reference`` adds the cascade model run through open_clip's own block modules
    (the code before the fast path), the before/after of this package's model change.
    """
    x = ctx.images()
    fns = {"plain": plain_forward(ctx, x)}
    for name, m in models.items():
        fns[name] = make_fn(m, x, True)
    if reference and "cascade" in models:
        fns["cascade (open_clip blocks)"] = make_fn(models["cascade"], x, False)
    t = compare(fns, items=ctx.batch_size, warmup=ctx.warmup, repeats=ctx.repeats, sync=ctx.sync)
    if "cascade" in models:
        models["cascade"].use_fast_blocks = True
    flops = {"plain": plain_flops(ctx.backbone.info, ctx.backbone.visual).forward}
    for name, m in models.items():
        flops[name] = getattr(cascade_flops(m, batch_size=ctx.batch_size), flop_kind)
    if "cascade (open_clip blocks)" in fns:
        flops["cascade (open_clip blocks)"] = getattr(
            cascade_flops(models["cascade"], fast=False, batch_size=ctx.batch_size), flop_kind)
    return t, _rows(t, ctx.batch_size, "plain", flops)


def bench_inference(ctx: BenchContext, models: dict[str, CascadeCLIP], *, reference: bool = True) -> dict:
    """Figure 1: images/s of plain encode_image and each variant, side by side."""
    t, rows = _measure_variants(ctx, models, lambda m, x, fast: inference(ctx, m, x, fast=fast), "forward", reference)
    out = {"variants": rows, "batch_size": ctx.batch_size, "precision": ctx.precision}
    tokens = 1 + ctx.backbone.info.num_patches
    if "cascade" in models:
        m = models["cascade"].prompts.tokens[0] if models["cascade"].prompts is not None else 0
        out["token_bound_ratio"] = (tokens + m) / tokens
        out["cascade_vs_plain"] = rows["cascade"]["ratio_to_plain"]
        if "shallow" in rows:
            out["cascade_vs_shallow"] = t["cascade"].median / t["shallow"].median
    return out


def bench_training(ctx: BenchContext, models: dict[str, CascadeCLIP], *, reference: bool = True) -> dict:
    """Figure 2: training-step images/s per variant, as a ratio to plain forward time."""
    y = ctx.labels()
    variants = dict(models)
    if "cascade" in models and ctx.precision == "fp32":
        # The trainer's train.frozen_dtype=bf16 (on CUDA, figure 6 times it at batch 256).
        variants["cascade (frozen bf16)"] = frozen_bf16_variant(ctx)
    _, rows = _measure_variants(ctx, variants, lambda m, x, fast: train_step(ctx, m, x, y, fast=fast),
                                "train_step", reference)
    rows["plain"]["what"] = "encode_image forward (no grad), the reference"
    out = {"variants": rows, "batch_size": ctx.batch_size, "precision": ctx.precision}
    if "cascade" in models:
        out["cascade_train_vs_plain_forward"] = rows["cascade"]["ratio_to_plain"]
        out["frozen_backbone"] = frozen_check(models["cascade"], ctx.images(), y, ctx)
    return out


def bench_compiled_training(ctx: BenchContext, model: CascadeCLIP, mode: str, backend: str = "inductor") -> dict:
    """The cascade training step eager and through ``torch.compile`` (``train.compile``), side by side.

    Run after every other figure: timed among them, in the same process, compiled code
    slowed the figures that followed (on 2 cores the prefix-cache saving read 22 % instead
    of 27 %).
    """
    x, y = ctx.images(), ctx.labels()
    fns = {"cascade": train_step(ctx, model, x, y),
           "cascade (torch.compile)": train_step(ctx, compile_model(model, mode, backend), x, y)}
    t = compare(fns, items=ctx.batch_size, warmup=ctx.warmup + 1, repeats=ctx.repeats, sync=ctx.sync)
    rows = {name: image_row(tm) for name, tm in t.items()}
    return {"mode": mode, "backend": backend, "variants": rows,
            "compiled_vs_eager": t["cascade (torch.compile)"].median / t["cascade"].median}


def frozen_check(model: CascadeCLIP, x: torch.Tensor, y: torch.Tensor, ctx: BenchContext) -> dict:
    """After a backward: no backbone weight requires or received a gradient."""
    model.zero_grad(set_to_none=True)
    with ctx.autocast():
        loss = cascade_loss(model(x[:2]), y[:2])["total"]
    loss.backward()
    visual = list(model.visual.parameters())
    out = {
        "backbone_params_requiring_grad": sum(p.requires_grad for p in visual),
        "backbone_params_with_grad": sum(p.grad is not None for p in visual),
        "trainable_params_with_grad": sum(p.grad is not None for p in model.parameters() if p.requires_grad),
    }
    model.zero_grad(set_to_none=True)
    return out


def bench_prefix_cache(ctx: BenchContext, preset: str = "b16-3stage") -> dict:
    """Training steps of ``preset`` on cached prefix tokens vs from images (same model)."""
    model = build_model(ctx.backbone, CLASSES, CascadeConfig.from_preset(preset)).to(ctx.device).eval()
    x, y = ctx.images(), ctx.labels()
    with torch.no_grad(), ctx.autocast():
        cache = model.forward_prefix(x)
        direct = model(x).logits
        cached = model(prefix_tokens=cache).logits
    identical = bool(torch.equal(direct, cached))
    fns = {
        "uncached": train_step(ctx, model, x, y),
        "cached": train_step(ctx, model, None, y, prefix_tokens=cache),
    }
    t = compare(fns, items=ctx.batch_size, warmup=ctx.warmup, repeats=ctx.repeats, sync=ctx.sync)
    rows = {k: image_row(v) for k, v in t.items()}
    saving = 1 - t["cached"].median / t["uncached"].median
    cpu_saving = 1 - t["cached"].cpu_median / t["uncached"].cpu_median if t["uncached"].cpu_median > 0 else None
    f_unc = cascade_flops(model, batch_size=ctx.batch_size).train_step
    f_cac = cascade_flops(model, cached_prefix=True, batch_size=ctx.batch_size).train_step
    cache_mb = cache.numel() * cache.element_size() / 2**20
    return {
        "preset": preset,
        "frozen_prefix_blocks": model.frozen_prefix,
        "variants": rows,
        "step_time_saving": saving,
        "cpu_time_saving": cpu_saving,
        "flop_saving": 1 - f_cac / f_unc,
        "identical_logits": identical,
        "cache_mb_per_image": cache_mb / ctx.batch_size,
        "note": ("training steps only; an epoch on the cache also skips JPEG decoding and "
                 "preprocessing (see the data figure)"),
    }


def bench_memory(ctx: BenchContext, models: dict[str, CascadeCLIP]) -> dict:
    """Figure 3: peak memory of one inference call and one training step per variant."""
    x, y = ctx.images(), ctx.labels()
    out = {}
    out["plain"] = {"inference": measure_peak(plain_forward(ctx, x), ctx.device)}
    for name, m in models.items():
        out[name] = {
            "inference": measure_peak(inference(ctx, m, x), ctx.device),
            "train_step": measure_peak(train_step(ctx, m, x, y), ctx.device),
        }
    return out

"""Per-stage and fused emotion probabilities for image files (CLI ``predict``, dashboard)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from PIL import Image

from .backbone import load_backbone
from .config import CascadeConfig
from .data import EMOTION6_CLASSES, load_rgb
from .data.transforms import eval_transform_for
from .model import build_model
from .runfolder import load_run

@dataclass
class Predictor:
    model: Any
    preprocess: Callable[[Image.Image], torch.Tensor]
    source: str            # run folder + checkpoint, or "<model> / <pretrained> zero-shot"
    random_weights: bool

    def __call__(self, images: Sequence[Any], **kw: Any) -> list[dict[str, Any]]:
        return predict_images(self.model, self.preprocess, images, **kw)


def load_predictor(run: str | os.PathLike | None = None, *, checkpoint: str = "best", model_name: str | None = None,
                   pretrained: str | None = "openai", classes: Sequence[str] | None = None,
                   preset: str = "zeroshot", device: str | torch.device = "cpu", seed: int = 0,
                   quick_gelu: bool | None = None) -> Predictor:
    """A run's checkpoint, or zero-shot CLIP (``model_name``/``pretrained``, ``quick_gelu`` as
    :func:`cascade.backbone.load_backbone` takes it) for ``classes``."""
    if run is not None:
        loaded = load_run(run, checkpoint, device)
        model = loaded.model
        source = f"{run} ({'linear_probe' if loaded.linear_probe else checkpoint})"
    else:
        backbone = load_backbone(model_name or "ViT-B-32", pretrained, device=device, seed=seed, quick_gelu=quick_gelu)
        torch.manual_seed(seed)
        model = build_model(backbone, list(classes or EMOTION6_CLASSES), CascadeConfig.from_preset(preset))
        gelu = "QuickGELU" if backbone.info.quick_gelu else "GELU"
        source = (f"{backbone.info.name} / {backbone.info.pretrained or 'random'} ({preset}, {gelu}"
                  f"{', assumed' if backbone.info.quick_gelu_source == 'assumed' else ''})")
    model.eval()
    return Predictor(model, eval_transform_for(model), source, bool(model.backbone_info.random_weights))


def _name_of(item: Any, i: int) -> str:
    if isinstance(item, tuple):
        return str(item[0])
    if isinstance(item, Image.Image):
        return getattr(item, "filename", None) or f"image[{i}]"
    return str(item)


def _open(item: Any, max_pixels: int | None) -> Image.Image:
    if isinstance(item, tuple):
        item = item[1]
    if isinstance(item, Image.Image):
        return item.convert("RGB") if item.mode != "RGB" else item
    return load_rgb(item, max_pixels=max_pixels)


def prepare_images(images: Sequence[Any], preprocess: Callable[[Image.Image], torch.Tensor], *,
                   max_pixels: int | None = 89_478_485
                   ) -> tuple[list[tuple[int, str, torch.Tensor]], list[tuple[int, dict[str, Any]]]]:
    """Open and preprocess each input (a path, a PIL image or a ``(name, PIL image)`` pair).

    Returns ``(ready, failed)``: ``(position, name, tensor)`` for each image that could be
    read, and ``(position, {"image", "ok": False, "error"})`` (the error names the image) for
    each that could not, so one bad file never stops the others.
    """
    ready, failed = [], []
    for i, item in enumerate(images):
        name = _name_of(item, i)
        try:
            ready.append((i, name, preprocess(_open(item, max_pixels))))
        except Exception as exc:  # noqa: BLE001 - any decoder error is reported per image
            reason = str(exc) or type(exc).__name__
            if isinstance(exc, FileNotFoundError):
                reason = "no such file"
            failed.append((i, {"image": name, "ok": False, "error": f"{name}: cannot read image ({reason})"}))
    return ready, failed


@torch.no_grad()
def predict_images(model, preprocess: Callable[[Image.Image], torch.Tensor], images: Sequence[Any], *,
                   batch_size: int = 16, device: str | torch.device | None = None,
                   max_pixels: int | None = 89_478_485) -> list[dict[str, Any]]:
    """One dict per input, in order.

    Inputs are paths, PIL images, or ``(name, PIL image)`` pairs. A good image gives
    ``{"image", "ok": True, "prediction", "confidence", "fused": {class: p},
    "stages": [{class: p}, ...], "fusion_weights": [...] or None}`` (None under concat fusion, which has no λ); one that cannot be read gives
    ``{"image", "ok": False, "error"}`` and the others are still processed.
    """
    device = torch.device(device) if device is not None else next(
        (p.device for p in model.parameters()), torch.device("cpu"))
    classes = list(model.classnames)
    results: list[dict[str, Any] | None] = [None] * len(images)
    prepared, failed = prepare_images(images, preprocess, max_pixels=max_pixels)
    ready = [(i, t) for i, _, t in prepared]
    for i, r in failed:
        results[i] = r
    was = model.training
    model.eval()
    try:
        for start in range(0, len(ready), batch_size):
            chunk = ready[start:start + batch_size]
            x = torch.stack([t for _, t in chunk]).to(device)
            out = model(x)
            fused = out.logits.float().softmax(-1).cpu()
            stages = out.stage_logits.float().softmax(-1).cpu()
            lam = getattr(out, "fusion_weights", None)
            lam = None if lam is None else [float(v) for v in lam.detach().cpu()]
            for row, (i, _) in enumerate(chunk):
                probs = fused[row]
                top = int(probs.argmax())
                results[i] = {
                    "image": _name_of(images[i], i), "ok": True, "prediction": classes[top],
                    "confidence": float(probs[top]),
                    "fused": {c: float(p) for c, p in zip(classes, probs)},
                    "stages": [{c: float(p) for c, p in zip(classes, stages[s, row])} for s in range(stages.shape[0])],
                    "fusion_weights": lam,
                }
    finally:
        model.train(was)
    return [r for r in results if r is not None]


def format_table(results: list[dict[str, Any]], classnames: Sequence[str]) -> str:
    """A plain-text table: one block per image, a row for the fused prediction and each stage."""
    classes = list(classnames)
    width = max([8] + [len(c) for c in classes])
    head = f"{'':<10}" + "".join(f"{c:>{width + 1}}" for c in classes) + f"  {'top':<{width}}"
    lines = []
    for r in results:
        lines.append(f"== {r['image']}")
        if not r["ok"]:
            lines.append(f"   ERROR {r['error']}")
            continue
        lines.append(head)
        rows = [("fused", r["fused"])] + [(f"stage {s + 1}", d) for s, d in enumerate(r["stages"])]
        for label, d in rows:
            top = max(d, key=d.get)
            lines.append(f"{label:<10}" + "".join(f"{d[c]:>{width + 1}.3f}" for c in classes) + f"  {top:<{width}}")
    return "\n".join(lines)

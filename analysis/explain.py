"""Where each stage looks: per-stage explanation maps of a cascade model.

Gradient-weighted attention rollout (Chefer, Gur & Wolf, ICCV 2021). For
block b with attention probabilities A_b [heads, T, T] and their gradient ∇A_b with
respect to the explained logit, Ā_b = mean over heads of (∇A_b ⊙ A_b) clamped at 0, and
R ← R + Ā_b R starting from R = I. The relevance of every input token for the pooled
output is the pooled row of R (CLS, or the mean of the patch rows for mean pooling).

- Stage s's map explains stage s's logit, rolled out through the blocks up to the end
  of stage s. Every block of the stage feeds that logit through NGA, so the NGA weights
  enter through the gradient.
- The fused map explains the fused logit, through the last block of the fused stages.
- Prompt tokens are tokens of their own in the rollout (one column each), entering
  where they enter the sequence. In ``replace`` mode the rows of the tokens they replace
  are dropped: what those tokens carried lives on in the rows that attended to them.
  ``prompt_share`` is the share of relevance on prompt columns rather than patch
  columns (CLS's own column excluded).

The explained score is, by default, the target logit minus the mean logit over the
classes (``score="centered"``). Softmax probabilities, and so every prediction, are
unchanged when all logits shift together; with CLIP's cosine classifier the class text
embeddings share a large common direction, and the raw logit's gradient is mostly that
shared part, which no probability depends on (in the synthetic-faces example run the
class vectors have a mean pairwise cosine of 0.87, and the mean logit's gradient with
respect to the embedding is 97 % as large as the target logit's). Centering removes it.
On that run, maps of the raw logit (``score="logit"``, Chefer et al.'s choice) deleted
no faster than random orders while centered ones did, at every stage (see the README
and ``cascade bench --figures explain``). ``score="logprob"`` explains log p(target).

Maps are min-max normalised per map (each stage of each image spans [0, 1]), so their
shapes compare across stages; ``raw`` keeps the unnormalised values and ``prompt_share``
the scale between prompts and patches.
"""
from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cascade.data.transforms import backbone_normalisation, eval_transform_for
from cascade.fileio import atomic_write_bytes
from cascade.model import stage_names
from cascade.predict import prepare_images

__all__ = [
    "Explained",
    "Relevance",
    "SCORES",
    "explained_score",
    "explain_images",
    "relevance_npz_bytes",
    "relevance_table",
    "resolve_targets",
    "rollout",
    "save_relevance_npz",
    "stage_relevance",
    "to_display",
    "upsample",
    "val_images",
]

TargetSpec = int | str | Sequence[int | str] | None
SCORES = ("centered", "logit", "logprob")


@dataclass
class Relevance:
    """Explanation maps of B images: one per stage, then the fused prediction (S + 1 maps)."""

    maps: np.ndarray                   # [S+1, B, gh, gw] patch relevance, each map min-max normalised to [0, 1]
    raw: np.ndarray                    # [S+1, B, gh, gw] patch relevance before normalisation
    prompt_share: np.ndarray           # [S+1, B] prompt / (prompt + patch) relevance; NaN when both are 0
    prompt_share_by_point: np.ndarray  # [S+1, B, P] the same share split by prompt insertion point
    target: np.ndarray                 # [B] class index every map of the image explains
    probs: np.ndarray                  # [S+1, B, C] class probabilities of each stage, then fused
    classnames: list[str]
    names: list[str]                   # "stage 1 (blocks 1-4)", ..., "fused"
    rollout_blocks: list[int]          # 1-based last block each map is rolled out through
    prompt_blocks: list[int]           # 1-based block where each prompt set enters
    score: str = "centered"            # the explained score (see SCORES)

    @property
    def num_images(self) -> int:
        return int(self.maps.shape[1])

    @property
    def target_names(self) -> list[str]:
        return [self.classnames[int(t)] for t in self.target]

    @property
    def target_prob(self) -> np.ndarray:
        """[S+1, B] probability each stage (and the fused prediction) gives the explained class."""
        return np.take_along_axis(self.probs, self.target[None, :, None], axis=2)[..., 0]

    def upsampled(self, size: tuple[int, int] | int) -> np.ndarray:
        """The normalised maps bilinearly upsampled to ``size`` (H, W) for display, [S+1, B, H, W]."""
        return upsample(self.maps, size)

    def arrays(self) -> dict[str, np.ndarray]:
        """Everything as plain arrays (strings as unicode arrays: an NPZ that loads without pickle)."""
        return {
            "maps": self.maps, "raw": self.raw, "prompt_share": self.prompt_share,
            "prompt_share_by_point": self.prompt_share_by_point, "target": self.target,
            "target_names": np.array(self.target_names, dtype=str), "probs": self.probs,
            "target_prob": self.target_prob, "classnames": np.array(self.classnames, dtype=str),
            "map_names": np.array(self.names, dtype=str), "rollout_blocks": np.array(self.rollout_blocks),
            "prompt_blocks": np.array(self.prompt_blocks, dtype=np.int64), "score": np.array(self.score),
        }

    @classmethod
    def concat(cls, parts: Sequence["Relevance"]) -> "Relevance":
        """Join the relevance of several batches of images (same model) along the image axis."""
        first = parts[0]
        cat = lambda name, axis: np.concatenate([getattr(p, name) for p in parts], axis=axis)  # noqa: E731
        return cls(maps=cat("maps", 1), raw=cat("raw", 1), prompt_share=cat("prompt_share", 1),
                   prompt_share_by_point=cat("prompt_share_by_point", 1), target=cat("target", 0),
                   probs=cat("probs", 1), classnames=first.classnames, names=first.names,
                   rollout_blocks=first.rollout_blocks, prompt_blocks=first.prompt_blocks, score=first.score)


# ---------------------------------------------------------------------------
# the rollout
# ---------------------------------------------------------------------------


def rollout(attention: Sequence[torch.Tensor], grads: Sequence[torch.Tensor | None], *, num_patches: int,
            prompt_entries: dict[int, int] | None = None, mode: str = "replace", pooling: str = "cls") -> torch.Tensor:
    """Gradient-weighted attention rollout through ``len(attention)`` blocks, [B, K].

    ``attention[i]`` / ``grads[i]``: block i + 1's probabilities and their gradients,
    [B, heads, T, T] (a None gradient: the explained output does not depend on that
    block's attention, so Ā = 0). ``prompt_entries``: 1-based block → number of prompt
    tokens entering before it, in the model's ``mode`` (``replace`` or ``append``, new
    tokens right after CLS). The K source columns are CLS, the ``num_patches`` patches,
    then each prompt set's tokens in the order they enter. Returns the pooled row of R.
    """
    entries = prompt_entries or {}
    if mode not in ("replace", "append"):
        raise ValueError(f"prompt mode: expected replace or append, got {mode!r}")
    first = attention[0]
    b, dev = first.shape[0], first.device
    blocks = len(attention)
    total = 1 + num_patches + sum(m for blk, m in entries.items() if blk <= blocks)
    r = torch.zeros(b, 1 + num_patches, total, device=dev)
    r[:, :, :1 + num_patches] = torch.eye(1 + num_patches, device=dev)
    n_prompt, col = 0, 1 + num_patches
    for i in range(blocks):
        m = entries.get(i + 1, 0)
        if m:
            new = torch.zeros(b, m, total, device=dev)
            rows = torch.arange(m, device=dev)
            new[:, rows, col + rows] = 1.0
            col += m
            keep_from = 1 + n_prompt if mode == "replace" else 1
            r = torch.cat([r[:, :1], new, r[:, keep_from:]], dim=1)
            n_prompt = m if mode == "replace" else n_prompt + m
        a, g = attention[i], grads[i]
        if a.shape[-1] != r.shape[1]:
            raise ValueError(f"block {i + 1}: attention over {a.shape[-1]} tokens, the rollout expects {r.shape[1]} "
                             f"(1 CLS + {n_prompt} prompt + {num_patches} patch tokens)")
        if g is None:
            continue
        abar = (g.float() * a.float()).clamp(min=0).mean(dim=1)
        r = r + abar @ r
    if pooling == "cls":
        return r[:, 0]
    if pooling == "mean":
        return r[:, 1 + n_prompt:].mean(dim=1)
    raise ValueError(f"pooling: expected cls or mean, got {pooling!r}")


def _normalise(raw: torch.Tensor) -> torch.Tensor:
    """Min-max per map over the last two dimensions; a constant map becomes 0."""
    flat = raw.flatten(-2)
    lo, hi = flat.min(-1, keepdim=True).values, flat.max(-1, keepdim=True).values
    span = hi - lo
    out = torch.where(span > 0, (flat - lo) / span.clamp_min(torch.finfo(flat.dtype).tiny), torch.zeros_like(flat))
    return out.view_as(raw)


def upsample(maps: np.ndarray | torch.Tensor, size: tuple[int, int] | int) -> np.ndarray:
    """Bilinear upsampling of [..., gh, gw] maps to [..., H, W] (values stay within the maps' range)."""
    t = torch.as_tensor(np.asarray(maps), dtype=torch.float32)
    h, w = (size, size) if isinstance(size, int) else size
    lead = t.shape[:-2]
    out = F.interpolate(t.reshape(-1, 1, *t.shape[-2:]), size=(h, w), mode="bilinear", align_corners=False)
    return out.reshape(*lead, h, w).numpy()


# ---------------------------------------------------------------------------
# explaining a model
# ---------------------------------------------------------------------------


def resolve_targets(target: TargetSpec, classnames: Sequence[str], n: int) -> list[int | None]:
    """One class index (or None: the fused prediction) per image from an int, a class name or a list."""
    if target is None:
        return [None] * n
    single = isinstance(target, (str, int, np.integer))
    items = [target] * n if single else list(target)
    if len(items) != n:
        raise ValueError(f"target: {len(items)} values for {n} images")
    names = list(classnames)
    lower = {c.lower(): i for i, c in enumerate(names)}
    out: list[int | None] = []
    for t in items:
        if t is None:
            out.append(None)
        elif isinstance(t, str):
            if t in names:
                out.append(names.index(t))
            elif t.lower() in lower:
                out.append(lower[t.lower()])
            else:
                raise ValueError(f"target: unknown class {t!r}; the model's classes are {', '.join(names)}")
        elif isinstance(t, (int, np.integer)) and not isinstance(t, bool):
            if not 0 <= int(t) < len(names):
                raise ValueError(f"target: class index {int(t)} outside 0..{len(names) - 1} ({', '.join(names)})")
            out.append(int(t))
        else:
            raise ValueError(f"target: expected a class name or index, got {t!r}")
    return out


def _prompt_entries(model) -> tuple[dict[int, int], list[int]]:
    """1-based block → prompt tokens entering there, and the blocks in order."""
    if model.prompts is None:
        return {}, []
    entries = {b: int(m) for b, m in zip(model.prompt_points, model.prompts.tokens)}
    return entries, list(model.prompt_points)


def map_names(model) -> list[str]:
    return stage_names(model.stage_blocks) + ["fused"]


def explained_score(logits: torch.Tensor, score: str) -> torch.Tensor:
    """[B, C] scores whose gradient is explained: centered logits, raw logits or log-probabilities."""
    if score == "centered":
        return logits - logits.mean(-1, keepdim=True)
    if score == "logprob":
        return logits.log_softmax(-1)
    if score == "logit":
        return logits
    raise ValueError(f"score: expected one of {', '.join(SCORES)}, got {score!r}")


def _explain_batch(model, x: torch.Tensor, targets: list[int | None], score: str) -> Relevance:
    out, attention = model.forward_explain(x)
    logits = list(out.stage_logits.unbind(0)) + [out.logits]
    predicted = out.logits.detach().argmax(-1)  # ties: the lowest index, as cascade.metrics
    t = torch.tensor([int(predicted[i]) if v is None else v for i, v in enumerate(targets)], device=x.device)
    ends = [hi for _, hi in model.stage_ranges] + [max(model.stage_ranges[s][1] for s in model.fused_stages)]
    entries, points = _prompt_entries(model)
    patch = model.backbone_info.patch_size
    gh, gw = x.shape[-2] // patch, x.shape[-1] // patch
    n = gh * gw
    # One batched backward pass gives the gradients of all S+1 explained logits (row k of
    # the identity picks logit k); images are independent, so summing over the batch is
    # the per-image gradient.
    y = torch.stack([explained_score(lg, score).gather(1, t[:, None]).sum() for lg in logits])
    grads = torch.autograd.grad(y, attention, grad_outputs=torch.eye(len(logits), dtype=y.dtype, device=y.device),
                                is_grads_batched=True, allow_unused=True)
    attention = [a.detach() for a in attention]
    pooled = []
    for k, end in enumerate(ends):
        pooled.append(rollout(attention[:end], [None if g is None else g[k] for g in grads[:end]], num_patches=n,
                              prompt_entries=entries, mode=model.config.prompt_mode, pooling=model.config.pooling))
    width = max(p.shape[1] for p in pooled)
    rel = torch.stack([F.pad(p, (0, width - p.shape[1])) for p in pooled])   # [S+1, B, K]
    patches = rel[..., 1:1 + n]
    prompts = rel[..., 1 + n:]
    total = patches.sum(-1) + prompts.sum(-1)
    share = torch.where(total > 0, prompts.sum(-1) / total.clamp_min(1e-30), torch.full_like(total, float("nan")))
    by_point, col = [], 0
    for b in points:
        m = entries[b]
        part = prompts[..., col:col + m].sum(-1)
        by_point.append(torch.where(total > 0, part / total.clamp_min(1e-30), torch.full_like(total, float("nan"))))
        col += m
    by_point_t = torch.stack(by_point, -1) if by_point else share.new_zeros(*share.shape, 0)
    raw = patches.reshape(*patches.shape[:2], gh, gw)
    probs = torch.stack([lg.detach().float().softmax(-1) for lg in logits])
    return Relevance(
        maps=_normalise(raw).cpu().numpy(), raw=raw.cpu().numpy(), prompt_share=share.cpu().numpy(),
        prompt_share_by_point=by_point_t.cpu().numpy(), target=t.cpu().numpy().astype(np.int64),
        probs=probs.cpu().numpy(), classnames=list(model.classnames), names=map_names(model),
        rollout_blocks=ends, prompt_blocks=points, score=score)


def stage_relevance(model, images: torch.Tensor, target: TargetSpec = None, *, score: str = "centered",
                    batch_size: int = 8) -> Relevance:
    """Explanation maps of every stage and of the fused prediction for preprocessed ``images``.

    Args:
        model: a :class:`cascade.model.CascadeCLIP` (put in eval mode for the call).
        images: [B, 3, H, W], normalised as the model expects (see :func:`explain_images` for files).
        target: the class each image's maps explain: None (the fused prediction), a class
            index or name for all images, or one per image (None entries: predicted).
        score: what the maps explain: ``centered`` (target logit minus the mean logit, the
            default), ``logit`` or ``logprob`` (see the module docstring).
        batch_size: images per explain-mode forward pass (memory grows with it).
    """
    if images.dim() != 4:
        raise ValueError(f"images: expected [B, 3, H, W], got shape {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise ValueError("images: no images to explain")
    if score not in SCORES:
        raise ValueError(f"score: expected one of {', '.join(SCORES)}, got {score!r}")
    targets = resolve_targets(target, model.classnames, images.shape[0])
    device = next(model.parameters()).device
    was = model.training
    model.eval()
    try:
        parts = [_explain_batch(model, images[i:i + batch_size].to(device), targets[i:i + batch_size], score)
                 for i in range(0, images.shape[0], batch_size)]
    finally:
        model.train(was)
    return parts[0] if len(parts) == 1 else Relevance.concat(parts)


# ---------------------------------------------------------------------------
# image files, display, NPZ
# ---------------------------------------------------------------------------


@dataclass
class Explained:
    """Images explained together: what the model saw, their maps, and the inputs that failed."""

    names: list[str]
    images: np.ndarray        # [B, H, W, 3] uint8: each image as the model saw it (resized, centre-cropped)
    relevance: Relevance
    failed: list[str]         # one message per input that could not be read (it names the input)
    random_weights: bool = False


def to_display(x: torch.Tensor, model) -> np.ndarray:
    """Preprocessed images [B, 3, H, W] back to uint8 RGB [B, H, W, 3] (the model's crop of each)."""
    _, mean, std = backbone_normalisation(model)
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    rgb = (x.detach().float().cpu() * s + m).clamp(0, 1)
    return (rgb * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def explain_images(model, images: Sequence[Any], target: TargetSpec = None, *, score: str = "centered",
                   batch_size: int = 8) -> Explained:
    """Explain image files, PIL images or ``(name, PIL image)`` pairs with the model's own preprocessing.

    Inputs that cannot be read are skipped and listed in ``failed``; if none can be
    read, ``ValueError`` lists why.
    """
    ready, failed = prepare_images(images, eval_transform_for(model))
    messages = [r["error"] for _, r in failed]
    if not ready:
        raise ValueError("no image could be read: " + "; ".join(messages) if messages else "no images given")
    if target is not None and not isinstance(target, (str, int, np.integer)):
        keep = {i for i, _, _ in ready}
        target = [t for i, t in enumerate(target) if i in keep]
    x = torch.stack([t for _, _, t in ready])
    rel = stage_relevance(model, x, target, score=score, batch_size=batch_size)
    return Explained(names=[name for _, name, _ in ready], images=to_display(x, model), relevance=rel,
                     failed=messages, random_weights=bool(model.backbone_info.random_weights))


def relevance_table(explained: Explained):
    """One row per image and map: the explained class, its probability, the prompt share (a DataFrame)."""
    import pandas as pd

    rel = explained.relevance
    p = rel.target_prob
    return pd.DataFrame([
        {"image": name, "map": rel.names[k], "explains": rel.target_names[b], "probability": float(p[k, b]),
         "prompt_share": float(rel.prompt_share[k, b]), "score": rel.score}
        for b, name in enumerate(explained.names) for k in range(len(rel.names))])


def relevance_npz_bytes(explained: Explained) -> bytes:
    """The maps and everything that labels them as NPZ bytes (loads with ``allow_pickle=False``)."""
    arrays = explained.relevance.arrays()
    arrays["image_names"] = np.array(explained.names, dtype=str)
    arrays["images"] = explained.images
    arrays["random_weights"] = np.array(explained.random_weights)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def save_relevance_npz(explained: Explained, path: str | os.PathLike) -> Path:
    return atomic_write_bytes(path, relevance_npz_bytes(explained))


# ---------------------------------------------------------------------------
# runs (CLI, report)
# ---------------------------------------------------------------------------


def val_images(run, n: int = 4, split: str = "val") -> list[tuple[str, Any]]:
    """Up to ``n`` images of a run's split as ``(key, PIL image)``: one per class in class order,
    then the next of each class again, so a small grid shows several emotions."""
    idx = list(run.splits[split])
    if not idx:
        raise ValueError(f"split {split!r} of {run.run_dir} is empty")
    labels = run.index.labels
    by_class: dict[int, list[int]] = {}
    for i in idx:
        by_class.setdefault(int(labels[i]), []).append(i)
    chosen: list[int] = []
    depth = 0
    while len(chosen) < min(n, len(idx)):
        for c in sorted(by_class):
            if depth < len(by_class[c]) and len(chosen) < n:
                chosen.append(by_class[c][depth])
        depth += 1
    keys = run.index.keys
    return [(keys[i], run.index.load_image(i, max_pixels=run.config.data.max_image_pixels)) for i in chosen]

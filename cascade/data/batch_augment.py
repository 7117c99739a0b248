"""The training augmentation of :func:`cascade.data.transforms.train_transform` as batched
tensor ops, on whatever device the images are (the input pipeline runs it on the GPU).

Per image the CPU transform draws a RandomResizedCrop box, a horizontal flip, and the
ColorJitter factors in a random order; here the same draws are made for a whole batch:

- crop boxes follow torchvision's ``RandomResizedCrop.get_params`` (ten tries of a
  uniform area fraction and a log-uniform aspect ratio, integer rounding, then the
  centre-crop fallback), in the image's original pixels;
- the crop is resampled with the antialiased bicubic kernel PIL and
  ``F.interpolate(..., antialias=True)`` use (a = -0.5), from the decoded cache;
- flip with probability ``hflip``; with probability ``jitter_p`` brightness, contrast and
  saturation blend with black, the grey mean and the grey image, hue shifts in HSV, each
  clamped to [0, 1], in an order drawn per image; with probability ``grayscale`` the image
  becomes its luma in all three channels; with probability ``blur_p`` a Gaussian blur of a
  uniform σ in ``blur_sigma`` (reflect padding, as torchvision's); then the CLIP normalisation.

Random numbers come from a counter-based generator (splitmix64 over ``(key, draw)``),
with one key per image, :func:`cascade.train.batches.epoch_seed` ``(seed, epoch, 1 + item)``:
every image's augmentation is a pure function of (seed, epoch, item), whatever the batch,
the worker count, the process count or the resume point.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .transforms import AugmentConfig

CROP_TRIES = 10          # torchvision's RandomResizedCrop tries this many boxes before its fallback
# Columns of the uniform draws of one image.
_CROP = slice(0, 2 * CROP_TRIES)            # (area fraction, log aspect) per try
_TOP, _LEFT, _FLIP = 2 * CROP_TRIES, 2 * CROP_TRIES + 1, 2 * CROP_TRIES + 2
_ORDER = slice(_FLIP + 1, _FLIP + 5)        # jitter order: argsort of four uniforms
_FACTORS = slice(_FLIP + 5, _FLIP + 9)      # brightness, contrast, saturation, hue
# The strong view's extra draws: jitter applied, grayscale, blur applied, blur σ (columns
# appended after the others, so the draws of the plain augmentation stay as they were).
_JITTER_ON, _GREY_ON, _BLUR_ON, _BLUR_SIGMA = _FLIP + 9, _FLIP + 10, _FLIP + 11, _FLIP + 12
DRAWS = _FLIP + 13

GREY = (0.2989, 0.587, 0.114)               # ITU-R 601 luma, as torchvision's rgb_to_grayscale

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _splitmix(z: np.ndarray) -> np.ndarray:
    z = z ^ (z >> np.uint64(30))
    z = z * _M1
    z = z ^ (z >> np.uint64(27))
    z = z * _M2
    return z ^ (z >> np.uint64(31))


def uniforms(keys: Sequence[int] | np.ndarray, n: int = DRAWS) -> np.ndarray:
    """``[len(keys), n]`` floats in [0, 1): column j of row b depends on ``(keys[b], j)`` only."""
    k = np.asarray(keys, dtype=np.uint64).reshape(-1, 1)
    with np.errstate(over="ignore"):
        base = _splitmix(k + _GOLDEN)
        state = base + _GOLDEN * np.arange(1, n + 1, dtype=np.uint64)
        bits = _splitmix(state) >> np.uint64(11)
    return bits.astype(np.float64) * (1.0 / (1 << 53))


def crop_boxes(u: np.ndarray, heights: np.ndarray, widths: np.ndarray, scale: Sequence[float],
               ratio: Sequence[float]) -> np.ndarray:
    """RandomResizedCrop boxes ``[B, 4]`` (top, left, height, width) in the images' pixels.

    ``u`` holds each image's uniforms (:data:`DRAWS` columns). Same rule as torchvision:
    the first of ten tries that fits, else the whole image cut to the nearest allowed
    aspect ratio, centred.
    """
    H = np.asarray(heights, dtype=np.float64)
    W = np.asarray(widths, dtype=np.float64)
    tries = u[:, _CROP].reshape(-1, CROP_TRIES, 2)
    area = (H * W)[:, None] * (scale[0] + (scale[1] - scale[0]) * tries[..., 0])
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = np.exp(lo + (hi - lo) * tries[..., 1])
    w = np.rint(np.sqrt(area * aspect))
    h = np.rint(np.sqrt(area / aspect))
    fits = (w > 0) & (w <= W[:, None]) & (h > 0) & (h <= H[:, None])
    first = fits.argmax(axis=1)
    rows = np.arange(len(H))
    found = fits[rows, first]
    cw, ch = w[rows, first], h[rows, first]
    top = np.floor(u[:, _TOP] * (H - ch + 1))
    left = np.floor(u[:, _LEFT] * (W - cw + 1))
    # Fallback: the whole image, cut to the nearest allowed aspect ratio, centred.
    in_ratio = W / H
    narrow, wide = in_ratio < min(ratio), in_ratio > max(ratio)
    fw = np.where(wide, np.rint(H * max(ratio)), W)
    fh = np.where(narrow, np.rint(W / min(ratio)), H)
    box = np.stack([np.where(found, top, (H - fh) // 2), np.where(found, left, (W - fw) // 2),
                    np.where(found, ch, fh), np.where(found, cw, fw)], axis=1)
    return box.astype(np.int64)


@dataclass
class AugmentDraws:
    """One batch's augmentation parameters (host arrays)."""

    boxes: np.ndarray      # [B, 4] int64: top, left, height, width in original pixels
    flip: np.ndarray       # [B] bool
    order: np.ndarray      # [B, 4] int64: jitter op per position (0 brightness, 1 contrast, 2 saturation, 3 hue)
    factors: np.ndarray    # [B, 4] float64: brightness, contrast, saturation factors, hue shift
    jitter_on: np.ndarray | None = None   # [B] bool: the jitter runs (None: for every image)
    grey: np.ndarray | None = None        # [B] bool: turned grey (None: none)
    blur_sigma: np.ndarray | None = None  # [B] float64: blur σ, 0 for no blur (None: none)


def draw_augmentation(keys: Sequence[int] | np.ndarray, heights: np.ndarray, widths: np.ndarray,
                      aug: AugmentConfig) -> AugmentDraws:
    u = uniforms(keys)
    boxes = crop_boxes(u, heights, widths, aug.scale, aug.ratio)
    flip = u[:, _FLIP] < aug.hflip
    order = np.argsort(u[:, _ORDER], axis=1, kind="stable")
    f = u[:, _FACTORS]
    factors = np.empty_like(f)
    for j, amount in enumerate((aug.brightness, aug.contrast, aug.saturation)):
        lo = max(0.0, 1.0 - amount)
        factors[:, j] = lo + (1.0 + amount - lo) * f[:, j]
    factors[:, 3] = aug.hue * (2.0 * f[:, 3] - 1.0)
    jitter_on = u[:, _JITTER_ON] < aug.jitter_p if aug.jitter_p < 1 else None
    grey = u[:, _GREY_ON] < aug.grayscale if aug.grayscale > 0 else None
    sigma = None
    if aug.blur_sigma is not None and aug.blur_p > 0:
        lo, hi = aug.blur_sigma
        sigma = np.where(u[:, _BLUR_ON] < aug.blur_p, lo + (hi - lo) * u[:, _BLUR_SIGMA], 0.0)
    return AugmentDraws(boxes, flip, order, factors, jitter_on, grey, sigma)


def jitter_enabled(aug: AugmentConfig) -> tuple[bool, bool, bool, bool]:
    return aug.brightness > 0, aug.contrast > 0, aug.saturation > 0, aug.hue > 0


# ---- resampling --------------------------------------------------------------------------
def _cubic(x: torch.Tensor, a: float = -0.5) -> torch.Tensor:
    x = x.abs()
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * a
    return torch.where(x < 1, near, torch.where(x < 2, far, torch.zeros_like(x)))


def resample_weights(start: torch.Tensor, length: torch.Tensor, out_size: int, extent: int) -> torch.Tensor:
    """``[B, out_size, extent]``: rows of antialiased bicubic weights that resample pixels
    ``[start, start + length)`` of an axis ``extent`` long to ``out_size`` pixels.

    The kernel of PIL and of ``F.interpolate(mode="bicubic", antialias=True)``: output
    pixel o is centred at ``start + (o + 0.5)·s`` (s = length / out_size), the cubic is
    stretched by s when shrinking, taps outside the window are dropped, rows sum to 1.
    """
    start = start.to(torch.float32)
    length = length.to(torch.float32)
    s = length / out_size
    stretch = s.clamp(min=1.0)
    o = torch.arange(out_size, device=start.device, dtype=torch.float32)
    centre = start[:, None] + (o[None] + 0.5) * s[:, None]
    j = torch.arange(extent, device=start.device, dtype=torch.float32)
    w = _cubic((j[None, None] + 0.5 - centre[:, :, None]) / stretch[:, None, None])
    inside = (j[None] >= start[:, None]) & (j[None] < (start + length)[:, None])
    w = w * inside[:, None, :]
    return w / w.sum(-1, keepdim=True)


def resample_batch(pixels: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Resample a batch of HWC images ``[B, H, W, 3]`` (any dtype) with per-image row and
    column weights (``[B, S, H]``, ``[B, S, W]``) into ``[B, 3, S, S]`` float32: two batched
    matmuls, the form that suits a GPU (a CPU resizes each crop with ``F.interpolate``, the
    same kernel)."""
    b, h, w, c = pixels.shape
    s = rows.shape[1]
    x = pixels.to(torch.float32).reshape(b, h, w * c)
    t = torch.bmm(rows, x).reshape(b, s, w, c).permute(0, 3, 1, 2).reshape(b, c * s, w)
    return torch.bmm(t, cols.transpose(1, 2)).reshape(b, c, s, s)


# ---- colour -----------------------------------------------------------------------------
def _grey(img: torch.Tensor) -> torch.Tensor:
    """[B, 1, H, W] luma of [B, 3, H, W], accumulated in place (one pass over the image)."""
    grey = torch.mul(img[:, 0:1], GREY[0])
    grey.add_(img[:, 1:2], alpha=GREY[1])
    return grey.add_(img[:, 2:3], alpha=GREY[2])


def rgb_to_hsv(img: torch.Tensor) -> torch.Tensor:
    """``[..., 3, H, W]`` RGB in [0, 1] → HSV with hue in [0, 1)."""
    r, g, b = img.unbind(-3)
    v, _ = img.max(-3)
    lo, _ = img.min(-3)
    chroma = v - lo
    grey = chroma == 0
    safe = torch.where(grey, torch.ones_like(chroma), chroma)
    sat = torch.where(v > 0, chroma / torch.where(v > 0, v, torch.ones_like(v)), torch.zeros_like(v))
    # Sector of the hue circle by which channel is the maximum (red wins ties, then green).
    h = torch.where(v == r, (g - b) / safe,
                    torch.where(v == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    h = torch.where(grey, torch.zeros_like(h), h)
    return torch.stack([torch.remainder(h / 6.0, 1.0), sat, v], dim=-3)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_hsv`: channel n of RGB is v - v·s·clamp(min(k, 4 - k), 0, 1),
    k = (n + 6h) mod 6 with n = 5, 3, 1 for red, green, blue."""
    h, s, v = hsv.unbind(-3)
    out = []
    for n in (5.0, 3.0, 1.0):
        k = torch.remainder(n + 6.0 * h, 6.0)
        out.append(v - v * s * torch.minimum(k, 4.0 - k).clamp(0.0, 1.0))
    return torch.stack(out, dim=-3)


@dataclass
class JitterPlan:
    """One batch's colour jitter as per-position coefficients, worked out on the host (so a
    GPU never has to report back which branch to take).

    At position p image b becomes ``a·img + g·grey(img) + m·mean(grey(img))`` with
    ``blend[p, :, b] = (a, g, m)``: brightness (f, 0, 0), contrast (f, 0, 1 - f), saturation
    (f, 1 - f, 0), anything else (1, 0, 0), itself. ``hue_items[p]``: the images whose hue
    shifts (by ``hue_shift``) at position p.
    """

    blend: np.ndarray             # [4, 3, B] float32
    active: list[bool]            # positions where some image blends
    hue_items: list[np.ndarray]
    hue_shift: np.ndarray         # [B] float32


def jitter_plan(order: np.ndarray, factors: np.ndarray, enabled: tuple[bool, bool, bool, bool],
                apply: np.ndarray | None = None) -> JitterPlan | None:
    """None when no jitter op is enabled. ``apply``: [B] bool, the images jittered at all
    (None: every image)."""
    if not any(enabled):
        return None
    order, factors = np.asarray(order), np.asarray(factors, dtype=np.float64)
    rows = np.arange(len(order))
    on_ops = np.asarray(enabled)
    apply = np.ones(len(order), dtype=bool) if apply is None else np.asarray(apply, dtype=bool)
    blend = np.zeros((4, 3, len(order)), dtype=np.float32)
    active, hue_items = [], []
    for p in range(4):
        op = order[:, p]
        f = factors[rows, op]
        on = on_ops[op] & apply
        mix = on & (op < 3)
        blend[p, 0] = np.where(mix, f, 1.0)
        blend[p, 1] = np.where(mix & (op == 2), 1.0 - f, 0.0)
        blend[p, 2] = np.where(mix & (op == 1), 1.0 - f, 0.0)
        active.append(bool(mix.any()))
        hue_items.append(np.flatnonzero(on & (op == 3)))
    return JitterPlan(blend, active, hue_items, factors[:, 3].astype(np.float32))


def apply_jitter(img: torch.Tensor, plan: JitterPlan, *, white: float = 1.0, blend: torch.Tensor | None = None,
                 inplace: bool = False) -> torch.Tensor:
    """Run ``plan`` on ``[B, 3, H, W]`` in [0, white]: one fused blend and clamp per position, in
    place. ``blend``: ``plan.blend`` already on the device; ``white`` = 255 jitters 0..255 values
    without rescaling them (the clamps scale with it; hue and saturation do not depend on it)."""
    img = img if inplace else img.clone()
    if blend is None:
        blend = torch.as_tensor(plan.blend, device=img.device)
    view = (img.shape[0], 1, 1, 1)
    for p in range(4):
        if plan.active[p]:
            a, grey_w, mean_w = (blend[p, k].view(view) for k in range(3))
            grey = _grey(img)
            shift = mean_w * grey.mean((-3, -2, -1), keepdim=True)
            torch.addcmul(shift, img, a, out=img)
            img.addcmul_(grey, grey_w).clamp_(0.0, white)
        items = plan.hue_items[p]
        if len(items):
            idx = torch.as_tensor(items, device=img.device)
            hsv = rgb_to_hsv(img.index_select(0, idx))
            shift = torch.as_tensor(plan.hue_shift[items], device=img.device).view(-1, 1, 1)
            hsv = torch.stack([torch.remainder(hsv[:, 0] + shift, 1.0), hsv[:, 1], hsv[:, 2]], dim=1)
            img.index_copy_(0, idx, hsv_to_rgb(hsv))
    return img


def color_jitter(img: torch.Tensor, order, factors, enabled: tuple[bool, bool, bool, bool], white: float = 1.0,
                 inplace: bool = False) -> torch.Tensor:
    """ColorJitter on ``[B, 3, H, W]`` in [0, white], each image with its own op order (``[B, 4]``)
    and factors (``[B, 4]``: brightness, contrast, saturation, hue), as torchvision's functional
    ops in that order would do, clamps included. Disabled ops are skipped."""
    to_host = lambda t: t.detach().cpu().numpy() if torch.is_tensor(t) else np.asarray(t)  # noqa: E731
    plan = jitter_plan(to_host(order), to_host(factors), enabled)
    return img if plan is None else apply_jitter(img, plan, white=white, inplace=inplace)


def to_grey(img: torch.Tensor, grey: np.ndarray | None) -> torch.Tensor:
    """Images of ``[B, 3, H, W]`` where ``grey`` is set replaced by their luma in all three
    channels (torchvision's ``rgb_to_grayscale`` with three output channels), in place."""
    if grey is None or not grey.any():
        return img
    idx = torch.as_tensor(np.flatnonzero(grey), device=img.device)
    img.index_copy_(0, idx, _grey(img.index_select(0, idx)).expand(-1, 3, -1, -1).contiguous())
    return img


def gaussian_blur(img: torch.Tensor, sigma: np.ndarray | None, kernel_size: int) -> torch.Tensor:
    """A separable Gaussian blur of ``kernel_size`` taps and σ ``sigma[b]`` for image b of
    ``[B, 3, H, W]`` (σ 0: left as it is), reflect padding, as torchvision's ``gaussian_blur``."""
    if sigma is None or not (sigma > 0).any():
        return img
    items = np.flatnonzero(sigma > 0)
    idx = torch.as_tensor(items, device=img.device)
    x = img.index_select(0, idx)
    b, c, h, w = x.shape
    half = (kernel_size - 1) / 2
    taps = torch.linspace(-half, half, kernel_size, device=img.device, dtype=torch.float32)
    s = torch.as_tensor(sigma[items], device=img.device, dtype=torch.float32).view(-1, 1)
    k = torch.exp(-0.5 * (taps.view(1, -1) / s) ** 2)
    k = (k / k.sum(-1, keepdim=True)).repeat_interleave(c, 0)            # [b·c, k]
    r = kernel_size // 2
    x = F.pad(x.to(torch.float32), (r, r, r, r), mode="reflect").reshape(1, b * c, h + 2 * r, w + 2 * r)
    x = F.conv2d(x, k.view(b * c, 1, kernel_size, 1), groups=b * c)
    x = F.conv2d(x, k.view(b * c, 1, 1, kernel_size), groups=b * c)
    img.index_copy_(0, idx, x.reshape(b, c, h, w).to(img.dtype))
    return img


def normalise(img: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(img - mean) / std`` per channel, as ``transforms.Normalize`` (same two operations)."""
    m = torch.as_tensor(mean, dtype=img.dtype, device=img.device).view(-1, 1, 1)
    s = torch.as_tensor(std, dtype=img.dtype, device=img.device).view(-1, 1, 1)
    return img.sub(m).div(s)


def normalise_255(img: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(img / 255 - mean) / std`` for ``img`` in 0..255, as one multiply-add (training batches;
    evaluation keeps :func:`normalise`'s exact arithmetic)."""
    s = torch.as_tensor(std, dtype=torch.float32, device=img.device).view(-1, 1, 1)
    m = torch.as_tensor(mean, dtype=torch.float32, device=img.device).view(-1, 1, 1)
    return torch.addcmul(-m / s, img, 1.0 / (255.0 * s))

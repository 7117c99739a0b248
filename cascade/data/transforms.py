"""Image transforms: CLIP's evaluation preprocessing and a configurable training augmentation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field
from torchvision import transforms as T

# CLIP's normalisation constants (the same values open_clip ships as OPENAI_DATASET_MEAN/STD).
CLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)

Transform = Callable[[Image.Image], torch.Tensor]


class AugmentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scale: tuple[float, float] = (0.8, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = Field(0.5, ge=0.0, le=1.0)
    brightness: float = Field(0.1, ge=0.0)
    contrast: float = Field(0.1, ge=0.0)
    saturation: float = Field(0.1, ge=0.0)
    hue: float = Field(0.0, ge=0.0, le=0.5)
    jitter_p: float = Field(1.0, ge=0.0, le=1.0, description="probability that the colour jitter runs at all")
    grayscale: float = Field(0.0, ge=0.0, le=1.0, description="probability of a grey (3-channel) image")
    blur_sigma: tuple[float, float] | None = Field(None, description="Gaussian blur σ drawn uniformly in this "
                                                                     "range (pixels of the output); null: no blur")
    blur_p: float = Field(1.0, ge=0.0, le=1.0, description="probability of the blur (when blur_sigma is set)")


def strong_view() -> AugmentConfig:
    """The strong view a student learns pseudo-labels from (LaFTer's, after SimCLR): random
    resized crop 0.2-1, flip, colour jitter 0.4/0.4/0.4/0.1 with p 0.8, grayscale p 0.2,
    Gaussian blur with σ in [0.1, 2] with p 0.5."""
    return AugmentConfig(scale=(0.2, 1.0), hflip=0.5, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1,
                         jitter_p=0.8, grayscale=0.2, blur_sigma=(0.1, 2.0), blur_p=0.5)


def blur_kernel_size(image_size: int) -> int:
    """Odd Gaussian-blur kernel of about a tenth of the image side (at least 3 taps)."""
    return max(3, (image_size // 10) // 2 * 2 + 1)


def _rgb(im: Image.Image) -> Image.Image:
    return im if im.mode == "RGB" else im.convert("RGB")


def eval_geometry(image_size: int) -> Callable[[Image.Image], Image.Image]:
    """The pixel part of :func:`eval_transform` (PIL in, PIL out): bicubic resize of the
    shorter side, centre crop, RGB. The input pipeline caches its output as uint8."""
    return T.Compose([T.Resize(image_size, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(image_size), _rgb])


def eval_transform(
    image_size: int, mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD
) -> Transform:
    """CLIP's test-time preprocessing: bicubic resize of the shorter side, centre crop, normalise."""
    return T.Compose([eval_geometry(image_size), T.ToTensor(), T.Normalize(mean, std)])


def backbone_normalisation(model) -> tuple[int, tuple[float, ...], tuple[float, ...]]:
    """``(image size, mean, std)`` a model's backbone expects: the size from its ``backbone_info``, the
    normalisation its ``visual`` tower declares (CLIP's values where it declares none)."""
    visual = model.visual
    mean = tuple(getattr(visual, "image_mean", None) or CLIP_MEAN)
    std = tuple(getattr(visual, "image_std", None) or CLIP_STD)
    return model.backbone_info.image_size, mean, std


def eval_transform_for(model) -> Transform:
    """The evaluation preprocessing of ``model`` (a cascade model or anything with ``visual`` and
    ``backbone_info``): :func:`eval_transform` at its image size and normalisation."""
    size, mean, std = backbone_normalisation(model)
    return eval_transform(size, mean, std)


def augment_config(augment: bool | dict[str, Any] | AugmentConfig = True) -> AugmentConfig | None:
    """The augmentation a ``train.augment``-style value asks for (None: no augmentation)."""
    if augment is False:
        return None
    if augment is True:
        return AugmentConfig()
    return augment if isinstance(augment, AugmentConfig) else AugmentConfig(**augment)


def train_transform(
    image_size: int,
    mean: Sequence[float] = CLIP_MEAN,
    std: Sequence[float] = CLIP_STD,
    augment: bool | dict[str, Any] | AugmentConfig = True,
) -> Transform:
    """Training preprocessing; augment=False gives exactly `eval_transform`, a dict overrides AugmentConfig fields."""
    aug = augment_config(augment)
    if aug is None:
        return eval_transform(image_size, mean, std)
    steps: list[Any] = [
        T.RandomResizedCrop(image_size, scale=aug.scale, ratio=aug.ratio, interpolation=T.InterpolationMode.BICUBIC)
    ]
    if aug.hflip > 0:
        steps.append(T.RandomHorizontalFlip(aug.hflip))
    if any(v > 0 for v in (aug.brightness, aug.contrast, aug.saturation, aug.hue)) and aug.jitter_p > 0:
        jitter = T.ColorJitter(aug.brightness, aug.contrast, aug.saturation, aug.hue)
        steps.append(jitter if aug.jitter_p >= 1 else T.RandomApply([jitter], p=aug.jitter_p))
    if aug.grayscale > 0:
        steps.append(T.RandomGrayscale(aug.grayscale))
    if aug.blur_sigma is not None and aug.blur_p > 0:
        blur = T.GaussianBlur(blur_kernel_size(image_size), sigma=aug.blur_sigma)
        steps.append(blur if aug.blur_p >= 1 else T.RandomApply([blur], p=aug.blur_p))
    steps += [_rgb, T.ToTensor(), T.Normalize(mean, std)]
    return T.Compose(steps)

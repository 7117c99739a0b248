"""The trainer's input pipeline, ``train.input_pipeline``:

- ``cpu``: every epoch, DataLoader workers decode each JPEG and run the torchvision
  transform (:func:`cascade.train.data.make_sources`);
- ``device``: each image is decoded once into a uint8 store (:mod:`cascade.data.decoded`);
  training batches are cropped, flipped, colour-jittered and normalised on the training
  device (:class:`cascade.train.store_source.StoreSource`), evaluation batches read the
  cached evaluation crops (the same pixels as the CPU transform);
- ``auto``: ``device`` when it pays: the run trains on images for at least two epochs (so
  a decode is saved) and the store fits in ``train.input_cache_gb`` of memory or on disk.

Stores larger than ``train.input_cache_gb`` spill to ``<run>/cache/``; under DDP rank 0
writes the store there and every rank maps the same file.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..data.decoded import (CacheGeometry, build_store, crop_cache_side, disk_free, estimate_bytes, fingerprint,
                            open_store, remove_store)
from ..data.transforms import AugmentConfig, augment_config, backbone_normalisation, strong_view
from .data import WEAK_TRAIN, DataBundle, cache_placement, make_sources, split_of
from .distributed import DistContext
from .store_source import StoreSource

CACHE_FOLDER = "cache"


class InputPipelineError(RuntimeError):
    """``train.input_pipeline: device`` cannot be honoured (the message says why and what to change)."""


@dataclass
class PipelineChoice:
    kind: str                 # "cpu" | "device"
    reason: str
    estimate_bytes: int = 0


@dataclass
class InputPipeline:
    sources: dict[str, Any]
    choice: PipelineChoice
    stems: list[Path] = field(default_factory=list)    # files to remove when the run ends
    details: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        return f"input pipeline: {self.choice.kind} ({self.choice.reason})"

    def record(self) -> dict[str, Any]:
        return {"kind": self.choice.kind, "reason": self.choice.reason, **self.details}

    def close(self) -> None:
        for stem in self.stems:
            remove_store(stem)


class WaitClock:
    """Time the training loop spends waiting for its next batch (host wall time)."""

    def __init__(self):
        self.seconds = 0.0

    def wrap(self, batches: Iterable[Any]) -> Iterator[Any]:
        it = iter(batches)
        while True:
            t0 = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                return
            finally:
                self.seconds += time.perf_counter() - t0
            yield batch

    def fraction(self, elapsed: float) -> float:
        """Share of ``elapsed`` seconds spent waiting since the last call; resets the count."""
        out = self.seconds / elapsed if elapsed > 0 else 0.0
        self.seconds = 0.0
        return round(min(1.0, out), 4)


def train_augmentation(tc) -> AugmentConfig | None:
    """The augmentation of training images: none without ``train.augment``; the strong view
    for label-free training (``train.pseudo.strong_view``); else the default one."""
    if not tc.augment:
        return None
    if tc.supervision == "pseudo" and tc.pseudo.strong_view:
        return strong_view()
    return augment_config(tc.augment)


def _geometries(tc, image_size: int) -> dict[str, CacheGeometry]:
    aug = train_augmentation(tc)
    ev = CacheGeometry("eval", image_size, image_size)
    train = ev if aug is None else CacheGeometry("crop", image_size, crop_cache_side(image_size, aug))
    out = {"train": train, "val": ev, "test": ev}
    if tc.supervision == "pseudo":
        out[WEAK_TRAIN] = ev
    return out


def choose_pipeline(tc, *, trains_on_images: bool, total_epochs: int, sizes: dict[str, int], image_size: int,
                    cache_dir: Path | None) -> PipelineChoice:
    """``train.input_pipeline`` resolved for this run (``auto`` → cpu or device, with the reason)."""
    setting = tc.input_pipeline
    if setting == "cpu":
        return PipelineChoice("cpu", "train.input_pipeline: cpu")
    if not trains_on_images:
        return PipelineChoice("cpu", "no training on images in this run (prefix cache, probe or evaluation only)")
    geo = _geometries(tc, image_size)
    need = sum(estimate_bytes(sizes.get(split_of(s), 0), g) for s, g in geo.items())
    budget = int(tc.input_cache_gb * 2**30)
    free = disk_free(cache_dir) if cache_dir is not None else None
    fits = need <= budget or (free is not None and need * 1.1 <= free)
    where = (f"about {need / 2**30:.2f} GiB of decoded images against train.input_cache_gb={tc.input_cache_gb:g}"
             + (f" and {free / 2**30:.1f} GiB free disk at {cache_dir}" if free is not None else ""))
    if setting == "device":
        if not fits:
            raise InputPipelineError(f"train.input_pipeline: device: {where}: raise train.input_cache_gb, free "
                                     "disk space, or set train.input_pipeline: cpu")
        return PipelineChoice("device", "train.input_pipeline: device", need)
    if total_epochs < 2:
        return PipelineChoice("cpu", "auto: one epoch decodes every image once either way")
    if not fits:
        return PipelineChoice("cpu", f"auto: {where}: the store fits neither")
    return PipelineChoice("device", "auto: each image decoded once instead of every epoch, augmented in batches "
                                    "on the training device", need)


def build_pipeline(bundle: DataBundle, model, tc, device: torch.device, *, trains_on_images: bool, total_epochs: int,
                   run_dir: Path | None, ctx: DistContext | None = None,
                   log: Callable[[str], None] | None = None) -> InputPipeline:
    """The sources of every split for this run's ``train.input_pipeline``."""
    ctx = ctx or DistContext()
    size, mean, std = backbone_normalisation(model)
    cache_dir = run_dir / CACHE_FOLDER if run_dir is not None else None
    choice = choose_pipeline(tc, trains_on_images=trains_on_images, total_epochs=total_epochs,
                             sizes=bundle.sizes(), image_size=size, cache_dir=cache_dir)
    pin = tc.pin_memory and device.type == "cuda"
    if choice.kind == "cpu":
        sources = make_sources(bundle, model, seed=tc.seed, augment=train_augmentation(tc), num_workers=tc.num_workers,
                               pin_memory=pin, weak_train=tc.supervision == "pseudo")
        return InputPipeline(sources, choice)
    budget = int(tc.input_cache_gb * 2**30)
    geo = _geometries(tc, size)
    aug = train_augmentation(tc)
    out = InputPipeline({}, choice)
    t0 = time.perf_counter()
    for split in geo:
        dataset = bundle.dataset(split_of(split))
        g = geo[split]
        stem = cache_dir / f"{split}-{g.kind}" if cache_dir is not None else None
        kwargs = dict(max_pixels=bundle.config.max_image_pixels, threads=tc.num_workers, log=log)
        if ctx.enabled and len(dataset) and stem is not None:
            # One decode for all ranks: rank 0 writes the store to disk, every other rank maps it.
            store = (build_store(bundle.index, dataset.indices, g, memory_limit=0, cache_stem=stem, **kwargs)
                     if ctx.is_main else None)
            ctx.barrier()
            if store is None:
                store = open_store(stem, fingerprint(bundle.index, dataset.indices, g, kwargs["max_pixels"]))
            if store is None:
                raise InputPipelineError(f"{stem}: rank {ctx.rank} cannot read the input store rank 0 wrote")
        else:
            store = build_store(bundle.index, dataset.indices, g, memory_limit=budget, cache_stem=stem, **kwargs)
        if store.path is not None and stem is not None and ctx.is_main:
            out.stems.append(stem)
        place = cache_placement(tc.cache_device, device, store.dense_nbytes)
        out.sources[split] = StoreSource(store, dataset, device, image_size=size, mean=mean, std=std,
                                         augment=aug if split == "train" else None, seed=tc.seed, pixels_on=place)
        budget = max(0, budget - store.nbytes)
    train_src = out.sources["train"]
    out.details = {"seconds": round(time.perf_counter() - t0, 3), "store": train_src.store.geometry.describe(),
                   "bytes": sum(s.store.nbytes for s in out.sources.values()),
                   "pixels_on": train_src.pixels_device, "augment_on": str(device)}
    return out

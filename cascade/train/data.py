"""The trainer's view of :mod:`cascade.data`: index + splits + datasets with seeded
augmentation, and batch sources that yield images or cached prefix tokens."""
from __future__ import annotations

import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from ..data import DataConfig, DatasetIndex, EmotionDataset, load_index, train_transform
from ..data.splits import load_splits, resolve_splits, save_splits
from ..data.transforms import AugmentConfig, backbone_normalisation, eval_transform_for
from .batches import epoch_seed

SPLITS = ("train", "val", "test")
WEAK_TRAIN = "train_weak"   # the training items, unaugmented: what a label-free run's teacher sees


def split_of(source: str) -> str:
    """The split whose items a source (a split name or :data:`WEAK_TRAIN`) serves."""
    return "train" if source == WEAK_TRAIN else source


@dataclass
class DataBundle:
    config: DataConfig
    index: DatasetIndex
    splits: dict[str, list[int]]

    @property
    def classnames(self) -> list[str]:
        return list(self.index.classnames)

    @property
    def num_classes(self) -> int:
        return self.index.num_classes

    def dataset(self, split: str) -> EmotionDataset:
        """PIL images (no transform): the sources apply transforms themselves."""
        return EmotionDataset(self.index, self.splits[split], transform=None,
                              label_smoothing=self.config.label_smoothing,
                              max_pixels=self.config.max_image_pixels)

    def sizes(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.splits.items()}


def load_data(cfg: DataConfig, splits_file: str | os.PathLike | None = None) -> DataBundle:
    """Scan the dataset and fix its split (``splits_file`` wins over ``cfg``)."""
    index = load_index(cfg)
    splits = load_splits(splits_file, index) if splits_file else resolve_splits(cfg, index)
    for name in SPLITS:
        splits.setdefault(name, [])
    if not splits["train"]:
        raise ValueError("data: the train split is empty")
    return DataBundle(cfg, index, splits)


class SeededTransform(Dataset):
    """Applies a transform whose randomness is a pure function of (seed, epoch, item):
    the same augmentation whatever the worker count, process count or resume point."""

    def __init__(self, base: EmotionDataset, transform, seed: int, epoch: int, random_aug: bool):
        self.base, self.transform, self.seed, self.epoch, self.random_aug = base, transform, seed, epoch, random_aug

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, pos: int) -> dict[str, Any]:
        item = self.base[pos]
        if self.random_aug:
            s = epoch_seed(self.seed, self.epoch, 1 + int(item["index"]))
            with torch.random.fork_rng(devices=[]):
                state = random.getstate()
                torch.manual_seed(s)
                random.seed(s)
                try:
                    item["image"] = self.transform(item["image"])
                finally:
                    random.setstate(state)
        else:
            item["image"] = self.transform(item["image"])
        item["pos"] = pos
        return item


class ImageSource:
    """Batches of transformed images read through a DataLoader (workers, pinned memory)."""

    kind = "images"

    def __init__(self, dataset: EmotionDataset, transform, *, seed: int = 0, random_aug: bool = False,
                 num_workers: int = 0, pin_memory: bool = False):
        self.dataset, self.transform, self.seed, self.random_aug = dataset, transform, seed, random_aug
        self.num_workers, self.pin_memory = num_workers, pin_memory

    def __len__(self) -> int:
        return len(self.dataset)

    def iterate(self, batches: list[list[int]], epoch: int = 0) -> Iterator[dict[str, Any]]:
        if not batches:
            return iter(())
        view = SeededTransform(self.dataset, self.transform, self.seed, epoch, self.random_aug)
        loader = DataLoader(view, batch_sampler=batches, num_workers=self.num_workers,
                            pin_memory=self.pin_memory, persistent_workers=False)
        return iter(loader)


class CacheSource:
    """Batches of cached prefix tokens (``model.forward_prefix`` of each image, computed once)."""

    kind = "prefix"

    def __init__(self, prefix: torch.Tensor, labels: torch.Tensor, dists: torch.Tensor, indices: torch.Tensor,
                 frozen: torch.Tensor | None = None):
        self.prefix, self.labels, self.dists, self.indices, self.frozen = prefix, labels, dists, indices, frozen

    def __len__(self) -> int:
        return self.prefix.shape[0]

    def iterate(self, batches: list[list[int]], epoch: int = 0) -> Iterator[dict[str, Any]]:
        for b in batches:
            idx = torch.as_tensor(b, dtype=torch.long)
            on = idx.to(self.prefix.device)   # gather where the tokens live: no host copy when on the GPU
            out = {"prefix": self.prefix[on], "label": self.labels[idx], "dist": self.dists[idx],
                   "index": self.indices[idx], "pos": idx}
            if self.frozen is not None:
                out["frozen"] = self.frozen[on]
            yield out

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.prefix, self.frozen) if t is not None)

    def to(self, device: torch.device | str) -> "CacheSource":
        """The cached tokens (and frozen embeddings) moved to ``device``; labels stay on the host."""
        self.prefix = self.prefix.to(device)
        if self.frozen is not None:
            self.frozen = self.frozen.to(device)
        return self


def cache_placement(setting: str, device: torch.device, nbytes: int, free_bytes: int | None = None) -> torch.device:
    """Where a prefix cache of ``nbytes`` lives: ``host``, ``device``, or ``auto`` (the training
    device when it is a GPU with at least 4× the cache's size free, else the host).
    ``free_bytes``: the GPU's free memory (None: asked of a CUDA device).

    On the GPU each batch is gathered in place; on the host it is gathered and then copied
    over, every step, from pageable memory.
    """
    host = torch.device("cpu")
    if device.type == "cpu" or setting == "host":
        return host
    if setting == "device":
        return device
    if free_bytes is None and device.type == "cuda":
        free_bytes = torch.cuda.mem_get_info(device)[0]
    return device if free_bytes is not None and nbytes * 4 <= free_bytes else host


@torch.no_grad()
def frozen_embedding(model, images: torch.Tensor | None = None, prefix: torch.Tensor | None = None) -> torch.Tensor:
    """Frozen CLIP's image embedding (no prompts), from images or from prefix tokens."""
    visual = model.visual
    x = model.forward_prefix(images) if prefix is None else prefix
    for blk in visual.transformer.resblocks[model.frozen_prefix:]:
        x = blk(x)
    pooled = visual.ln_post(x[:, 0].to(visual.ln_post.weight.dtype))
    return pooled @ visual.proj


@torch.no_grad()
def build_prefix_cache(model, source: ImageSource, device: torch.device, batch_size: int,
                       with_frozen: bool = False, amp_ctx=None) -> CacheSource:
    """Run the frozen prefix once over every item of ``source`` (no augmentation)."""
    n = len(source)
    positions = list(range(n))
    batches = [positions[i:i + batch_size] for i in range(0, n, batch_size)]
    chunks, labels, dists, indices, frozen = [], [], [], [], []
    for batch in source.iterate(batches, 0):
        images = batch["image"].to(device, non_blocking=True)
        p = model.forward_prefix(images)
        # Stored in the residual stream's own dtype (a bf16 backbone halves the cache; under
        # autocast it is what the uncached forward holds after the prefix).
        chunks.append(p.cpu())
        if with_frozen:
            frozen.append(frozen_embedding(model, prefix=p).float().cpu())
        labels.append(batch["label"])
        dists.append(batch["dist"])
        indices.append(torch.as_tensor(batch["index"]))
    if not chunks:
        d = model.backbone_info.width
        empty = torch.zeros((0, 1 + model.backbone_info.num_patches, d))
        return CacheSource(empty, torch.zeros(0, dtype=torch.long), torch.zeros(0, len(model.classnames)),
                           torch.zeros(0, dtype=torch.long), torch.zeros(0, model.backbone_info.embed_dim) if with_frozen else None)
    return CacheSource(torch.cat(chunks), torch.cat(labels), torch.cat(dists), torch.cat(indices),
                       torch.cat(frozen) if with_frozen else None)


def make_sources(bundle: DataBundle, model, *, seed: int, augment: bool | AugmentConfig | None, num_workers: int,
                 pin_memory: bool, weak_train: bool = False) -> dict[str, ImageSource]:
    """One source per split; ``augment`` (True: the default augmentation, or an
    :class:`AugmentConfig`) applies to train. ``weak_train`` adds ``train_weak``: the
    training items through the evaluation transform (a label-free run's teacher view)."""
    size, mean, std = backbone_normalisation(model)
    ev = eval_transform_for(model)
    random_aug = augment is not None and augment is not False
    tr = train_transform(size, mean, std, augment=augment) if random_aug else ev
    out = {}
    for split in SPLITS:
        is_train = split == "train"
        out[split] = ImageSource(bundle.dataset(split), tr if is_train else ev, seed=seed,
                                 random_aug=is_train and random_aug, num_workers=num_workers, pin_memory=pin_memory)
    if weak_train:
        out[WEAK_TRAIN] = ImageSource(bundle.dataset("train"), ev, seed=seed, num_workers=num_workers,
                                      pin_memory=pin_memory)
    return out


def save_split_file(path: Path, bundle: DataBundle) -> None:
    save_splits(path, bundle.splits, bundle.index)


def describe_sizes(bundle: DataBundle) -> str:
    s = bundle.sizes()
    return f"{len(bundle.index)} items ({bundle.num_classes} classes): train {s['train']}, val {s['val']}, test {s['test']}"

"""Per-block features of a frozen or prompted cascade model on a dataset split, cached on disk.

:func:`extract_features` runs a model over a split and returns a
:class:`analysis.feature_cache.FeatureSet`: for every image, the per-block features of
all blocks with the labels and distributions to score them. :func:`run_features` and
:func:`model_features` go through the cache of :mod:`analysis.feature_cache`, so a second
call on the same model, checkpoint, data and split does no forward pass.
:func:`load_run` loads a run folder for the analysis (model, config, data on its split).

Distributed: when ``torch.distributed`` is initialised, :func:`extract_features`
gives each rank a strided shard of the items, then gathers every rank's shard
(:meth:`cascade.train.distributed.DistContext.gather`) and puts them back in dataset order.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from cascade import runfolder
from cascade.backbone import Backbone
from cascade.data import EmotionDataset
from cascade.data.transforms import eval_transform_for
from cascade.model import build_model
from cascade.progress import track
from cascade.run_config import load_run_config
from cascade.train.data import load_data
from cascade.train.distributed import DistContext, current_context

from .feature_cache import FeatureCache, FeatureSet, cached_features, data_key, feature_key, model_key

POOLINGS = ("cls", "mean")

__all__ = [
    "LoadedRun",
    "extract_features",
    "frozen_final_embedding",
    "load_run",
    "loaded_run",
    "model_features",
    "run_features",
    "targets_kind",
    "without_fake_distributions",
    "zero_prompt_model",
]


# ---------------------------------------------------------------------------
# extraction
# ---------------------------------------------------------------------------


def _batch_images(batch: Any) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    if isinstance(batch, dict):
        return batch["image"], batch.get("label"), batch.get("dist"), batch.get("index")
    if isinstance(batch, (list, tuple)):
        images = batch[0]
        labels = batch[1] if len(batch) > 1 else None
        return images, labels, None, None
    return batch, None, None, None


@torch.no_grad()
def extract_features(
    model,
    data: Any,
    *,
    poolings: Sequence[str] | None = None,
    all_blocks: bool = True,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    num_workers: int = 0,
    num_classes: int | None = None,
    classnames: Sequence[str] | None = None,
    progress: bool = True,
    desc: str = "features",
    distributed: bool | None = None,
) -> FeatureSet:
    """Per-block features of ``model`` over ``data``.

    Args:
        model: a :class:`cascade.model.CascadeCLIP` (trained, or :func:`zero_prompt_model`).
        data: a Dataset yielding ``{"image", "label", "dist", "index"}`` (EmotionDataset),
            a DataLoader over one, or an image tensor [N, 3, H, W].
        poolings: any of ``"cls"``, ``"mean"``; default the model's own pooling.
        all_blocks: every block 1..L (default) or only the blocks the head consumes.
        device: where to run; default the model's device. The model is moved back after.
        distributed: shard over ``torch.distributed`` ranks and gather (default: when initialised).

    Returns a :class:`FeatureSet` on the CPU with float32 features [K, N, D].
    """
    poolings = list(poolings) if poolings else [model.config.pooling]
    bad = [p for p in poolings if p not in POOLINGS]
    if bad:
        raise ValueError(f"pooling: unknown {bad}; choose from {POOLINGS}")
    poolings = list(dict.fromkeys(poolings))
    ctx = current_context() if distributed is not False else DistContext()
    world, rank = ctx.world_size, ctx.rank

    own_device = next(model.parameters()).device
    device = torch.device(device) if device is not None else own_device
    modes = [(m, m.training) for m in model.modules()]   # restored exactly (e.g. train() with a frozen eval() tower)

    if isinstance(data, torch.Tensor):
        n_total = data.shape[0]
        dataset: Any = TensorDataset(data)
        positions = torch.arange(n_total)
    elif isinstance(data, DataLoader):
        dataset = data.dataset
        n_total = len(dataset)
        positions = torch.arange(n_total)
    elif isinstance(data, Dataset) or hasattr(data, "__getitem__"):
        dataset = data
        n_total = len(dataset)
        positions = torch.arange(n_total)
    else:
        raise TypeError(f"data: expected a Dataset, DataLoader or image tensor, got {type(data).__name__}")
    if world > 1:
        positions = positions[rank::world]
        dataset = Subset(dataset, positions.tolist())
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=device.type == "cuda") if not (isinstance(data, DataLoader) and world == 1) \
        else data

    feats, labels, dists, idxs = [], [], [], []
    has_index = True
    model.eval()
    if device != own_device:
        model.to(device)
    try:
        try:
            total = len(loader)
        except TypeError:  # an iterable dataset without a length: no progress to show
            total = 0
        bar = track(loader, total, desc, unit="batches", enabled=progress and rank == 0)
        for batch in bar:
            images, y, p, ix = _batch_images(batch)
            images = images.to(device, non_blocking=True)
            bf = model.forward_features(images, all_blocks=all_blocks, poolings=poolings)
            feats.append(bf.features.float().cpu())  # [K, B, P, D]
            block_ids = bf.block_ids
            b = images.shape[0]
            labels.append(torch.as_tensor(y).long().cpu() if y is not None else torch.full((b,), -1))
            if p is not None:
                dists.append(torch.as_tensor(p).float().cpu())
            if ix is None:
                has_index = False
                ix = torch.zeros(b, dtype=torch.long)
            idxs.append(torch.as_tensor(ix).long().cpu())
    finally:
        if device != own_device:
            model.to(own_device)
        for m, t in modes:
            m.train(t)

    if not feats:
        raise ValueError("data holds no items" + (f" for rank {rank} (fewer items than ranks)" if world > 1 else ""))
    f_all = torch.cat(feats, dim=1)                          # [K, n, P, D]
    y_all = torch.cat(labels)
    ix_all = torch.cat(idxs)
    if not has_index:  # no dataset positions: number the items in order
        ix_all = positions.clone()
    n_cls = num_classes or (len(classnames) if classnames else None) or len(model.classnames)
    p_all = torch.cat(dists) if dists else _one_hot_or_nan(y_all, n_cls)
    if world > 1:
        # Gather every rank's shard, then restore the dataset order from the positions.
        pos_all = ctx.gather(positions)
        f_all = ctx.gather(f_all.transpose(0, 1).contiguous()).transpose(0, 1)
        y_all, p_all, ix_all = ctx.gather(y_all), ctx.gather(p_all), ctx.gather(ix_all)
        order = torch.argsort(pos_all)
        f_all, y_all, p_all, ix_all = f_all[:, order], y_all[order], p_all[order], ix_all[order]
    features = {name: f_all[:, :, i].contiguous() for i, name in enumerate(poolings)}
    return FeatureSet(features=features, block_ids=list(block_ids), labels=y_all, dists=p_all, indices=ix_all,
                      classnames=list(classnames or model.classnames), pooling=model.config.pooling
                      if model.config.pooling in features else poolings[0])


def targets_kind(index) -> str:
    return "distributions" if index.has_distributions else "labels only"


def without_fake_distributions(fs: FeatureSet, index) -> FeatureSet:
    """Label-only data has no ground-truth distributions (a one-hot "distribution" would make
    KL the cross-entropy): its ``dists`` become NaN, so distribution metrics are n/a."""
    if not index.has_distributions:
        fs.dists = torch.full_like(fs.dists, float("nan"))
    return fs


def _one_hot_or_nan(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    out = torch.full((labels.shape[0], num_classes), float("nan"))
    ok = labels >= 0
    out[ok] = torch.nn.functional.one_hot(labels[ok], num_classes).float()
    return out


# ---------------------------------------------------------------------------
# frozen CLIP as a zero-prompt cascade model
# ---------------------------------------------------------------------------


def _backbone_shim(model):
    """A :class:`cascade.backbone.Backbone` around a model's frozen visual tower."""
    holder = nn.Module()
    holder.visual = model.visual
    return Backbone(model=holder, preprocess=None, tokenizer=None, info=model.backbone_info)


def zero_prompt_model(like, backbone=None):
    """Frozen CLIP in the cascade code path: ``like``'s stages and pooling, no prompts, CLIP's LayerNorm.

    The visual tower (and the classifier) are shared with ``like``, not copied; the
    returned model never trains. Its per-block features are frozen CLIP's.
    """
    values = like.config.model_dump()
    values.update(prompt_tokens=0, layernorm="clip", fusion="uniform" if values["fusion"] == "concat"
                  else values["fusion"])
    cfg = type(like.config).model_validate(values)
    bb = backbone if backbone is not None else _backbone_shim(like)
    frozen = build_model(bb, like.classnames, cfg, classifier=like.classifier)
    frozen.eval()
    for p in frozen.parameters():
        p.requires_grad_(False)
    return frozen


def frozen_final_embedding(fs: FeatureSet, model) -> torch.Tensor:
    """Frozen CLIP's image embedding [N, E] from a frozen feature set: ln_post(CLS of block L) @ proj.

    This is ``encode_image`` for CLIP's token pooling; uses the set's CLS features if
    present, else its default pooling.
    """
    pooling = "cls" if "cls" in fs.features else fs.pooling
    last = fs.get(pooling, [max(fs.block_ids)])[0]
    proj = model.visual.proj.detach().to(last.device, torch.float32)
    return last.float() @ proj


# ---------------------------------------------------------------------------
# run folders
# ---------------------------------------------------------------------------


@dataclass
class LoadedRun:
    """Everything needed to analyse a run folder."""

    run_dir: Path
    config: Any                 # cascade.run_config.RunConfig
    model: Any                  # CascadeCLIP with the checkpoint loaded
    checkpoint: Path
    data: Any                   # cascade.train.data.DataBundle (index + splits)

    @property
    def index(self):
        return self.data.index

    @property
    def splits(self) -> dict[str, list[int]]:
        return self.data.splits

    def dataset(self, split: str = "val"):
        """The split with the trainer's evaluation transform and targets (as ``cascade eval`` sees it)."""
        if split not in self.splits:
            raise KeyError(f"split {split!r} not in this run's splits ({sorted(self.splits)})")
        if not self.splits[split]:
            raise ValueError(f"split {split!r} of {self.run_dir} is empty")
        return EmotionDataset(self.index, self.splits[split], eval_transform_for(self.model),
                              label_smoothing=self.config.data.label_smoothing,
                              max_pixels=self.config.data.max_image_pixels)

    def item_keys(self, split: str) -> list[str]:
        keys = self.index.keys
        return [keys[i] for i in self.splits[split]]

    def frozen(self):
        return zero_prompt_model(self.model)


def load_run(run_dir: str | os.PathLike, checkpoint: str = "best", device: str | torch.device = "cpu") -> LoadedRun:
    """A run folder's model (:func:`cascade.runfolder.load_run`: the run's frozen dtype applied)
    with its data on the run's saved split.

    ``checkpoint`` is ``best``, ``last``, a σ checkpoint's name or a ``.safetensors`` path.
    """
    folder = runfolder.RunFolder(run_dir)
    folder.require()
    cfg = load_run_config(folder.config)
    if cfg.method == "linear-probe":
        raise ValueError(f"{run_dir}: a linear-probe run has no per-block cascade head to analyse")
    return loaded_run(runfolder.load_run(folder.path, checkpoint, device, config=cfg))


def loaded_run(loaded: runfolder.LoadedModel) -> LoadedRun:
    """A :class:`LoadedRun` around a run's already-loaded model: its data on the run's saved split."""
    data = load_data(loaded.config.data, loaded.splits_file)
    return LoadedRun(run_dir=loaded.run_dir, config=loaded.config, model=loaded.model, checkpoint=loaded.checkpoint,
                     data=data)


def run_features(
    run: LoadedRun | str | os.PathLike,
    split: str = "val",
    *,
    which: str = "run",
    checkpoint: str = "best",
    poolings: Sequence[str] | None = None,
    cache_dir: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 64,
    refresh: bool = False,
    progress: bool = True,
) -> FeatureSet:
    """Cached per-block features (all blocks) of a run's model (``which="run"``) or of
    frozen CLIP on the same backbone (``which="frozen"``) on one split.

    The default cache folder is ``<run>/features``.
    """
    if not isinstance(run, LoadedRun):
        run = load_run(run, checkpoint=checkpoint, device=device)
    if which not in ("run", "frozen"):
        raise ValueError(f"which: expected 'run' or 'frozen', got {which!r}")
    model = run.model if which == "run" else run.frozen()
    poolings = sorted(set(poolings or [run.model.config.pooling]))
    item_keys = run.item_keys(split)
    image_size = run.model.backbone_info.image_size
    key = feature_key(
        model_key(model, run.checkpoint, frozen=which == "frozen"),
        data_key(run.config.data, run.index, split, item_keys, transform=f"eval:{image_size}"),
        poolings,
    )
    cache = FeatureCache(cache_dir if cache_dir is not None else run.run_dir / runfolder.FEATURES)
    key["targets"] = targets_kind(run.index)

    def compute() -> FeatureSet:
        return without_fake_distributions(
            extract_features(model, run.dataset(split), poolings=poolings, batch_size=batch_size, device=device,
                             classnames=run.index.classnames, progress=progress, desc=f"{which} features ({split})"),
            run.index)

    return cached_features(key, compute, cache, refresh=refresh)


def model_features(model, data: Any, *, data_id: dict[str, Any] | str, checkpoint: str | os.PathLike | None = None,
                   frozen: bool = False, poolings: Sequence[str] | None = None,
                   cache_dir: str | os.PathLike | None = None, refresh: bool = False, **kwargs: Any) -> FeatureSet:
    """Cached features for any model and data; ``data_id`` must identify the data (and split)."""
    poolings = sorted(set(poolings or [model.config.pooling]))
    dpart = data_id if isinstance(data_id, dict) else {"id": str(data_id)}
    key = feature_key(model_key(model, checkpoint, frozen=frozen), dpart, poolings)
    return cached_features(key, lambda: extract_features(model, data, poolings=poolings, **kwargs),
                           FeatureCache(cache_dir), refresh=refresh)

"""Per-block features of a frozen or prompted cascade model on a dataset split, cached on disk.

A :class:`FeatureSet` holds, for every image of a split, the per-block features f_i
(CLS token and/or mean of the patch tokens, after the LayerNorm, exactly what
:meth:`cascade.model.CascadeCLIP.forward_features` gives) of *all* blocks 1..L, plus
the labels and ground-truth distributions the σ sweep scores against.

Caching: a feature set is stored as ``<hash>.safetensors`` (tensors) beside
``<hash>.json`` (the full key and the metadata), where ``<hash>`` is the SHA-256 of
the canonical JSON of its key. The key names the backbone, the model config, the
checkpoint (SHA-256 of the file's bytes, or ``"frozen"``), the data (config, source,
the split's item keys), the split and the pooling(s). A hit requires the stored
JSON key to equal the requested one, so a hash collision can never return wrong
features. Nothing is pickled.

Distributed: when ``torch.distributed`` is initialised, :func:`extract_features`
gives each rank a strided shard of the items, then gathers every rank's shard (with
padding, since shards differ by at most one item) and puts them back in dataset order.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from cascade.fileio import atomic_path, atomic_write_text

POOLINGS = ("cls", "mean")
CACHE_FORMAT_VERSION = 1
DEFAULT_CACHE_ENV = "CASCADE_FEATURE_CACHE"

__all__ = [
    "FeatureCache",
    "FeatureSet",
    "LoadedRun",
    "cached_features",
    "checkpoint_sha256",
    "default_cache_dir",
    "extract_features",
    "feature_key",
    "file_sha256",
    "find_checkpoint",
    "frozen_final_embedding",
    "load_run",
    "run_features",
    "zero_prompt_model",
]


# ---------------------------------------------------------------------------
# the feature set
# ---------------------------------------------------------------------------


@dataclass
class FeatureSet:
    """Per-block features of one model on one split, with the targets to score them.

    ``features[pooling]`` is a float32 tensor [K, N, D] over ``block_ids`` (1-based,
    normally all blocks 1..L); ``labels`` [N] int64, ``dists`` [N, C] float32 and
    ``indices`` [N] int64 (positions in the dataset index) follow the same item order.
    ``pooling`` is the model's own pooling, the one its head consumes.
    """

    features: dict[str, torch.Tensor]
    block_ids: list[int]
    labels: torch.Tensor
    dists: torch.Tensor
    indices: torch.Tensor
    classnames: list[str]
    pooling: str = "cls"
    key: dict[str, Any] = field(default_factory=dict)
    cache_path: Path | None = None
    cache_hit: bool = False

    def __post_init__(self) -> None:
        if self.pooling not in self.features:
            self.pooling = next(iter(self.features))
        for name, f in self.features.items():
            if f.ndim != 3 or f.shape[0] != len(self.block_ids) or f.shape[1] != len(self.labels):
                raise ValueError(f"features[{name!r}] has shape {tuple(f.shape)}; expected "
                                 f"[{len(self.block_ids)}, {len(self.labels)}, D]")

    @property
    def num_samples(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_blocks(self) -> int:
        return len(self.block_ids)

    @property
    def width(self) -> int:
        return int(self.get().shape[-1])

    def get(self, pooling: str | None = None, blocks: Sequence[int] | None = None) -> torch.Tensor:
        """Features [K', N, D] for ``pooling`` (default: the model's), optionally only ``blocks`` (1-based)."""
        pooling = pooling or self.pooling
        if pooling not in self.features:
            raise KeyError(f"pooling {pooling!r} was not extracted; this set holds {sorted(self.features)}")
        f = self.features[pooling]
        if blocks is None:
            return f
        missing = [b for b in blocks if b not in self.block_ids]
        if missing:
            raise KeyError(f"blocks {missing} are not in this feature set (it holds {self.block_ids})")
        return f[[self.block_ids.index(b) for b in blocks]]

    def block_features(self, model=None, pooling: str | None = None):
        """A :class:`cascade.model.BlockFeatures` for ``model.forward_head`` (its feature blocks)."""
        from cascade.model import BlockFeatures

        blocks = list(model.feature_blocks) if model is not None else list(self.block_ids)
        if model is not None and pooling is None:
            pooling = model.config.pooling
        return BlockFeatures(self.get(pooling, blocks), blocks)

    def subset(self, items: Sequence[int] | torch.Tensor) -> "FeatureSet":
        """The same set restricted to item positions ``items`` (0-based, in this set's order)."""
        idx = torch.as_tensor(items, dtype=torch.long)
        return FeatureSet(
            features={k: v[:, idx] for k, v in self.features.items()}, block_ids=list(self.block_ids),
            labels=self.labels[idx], dists=self.dists[idx], indices=self.indices[idx],
            classnames=list(self.classnames), pooling=self.pooling, key=dict(self.key),
        )

    # -- (de)serialisation: safetensors + JSON, never pickle -------------------------
    def tensors(self) -> dict[str, torch.Tensor]:
        out = {f"features.{k}": v.detach().cpu().contiguous() for k, v in self.features.items()}
        out["labels"] = self.labels.detach().cpu().to(torch.int64).contiguous()
        out["dists"] = self.dists.detach().cpu().to(torch.float32).contiguous()
        out["indices"] = self.indices.detach().cpu().to(torch.int64).contiguous()
        return out

    def meta(self) -> dict[str, Any]:
        return {
            "format_version": CACHE_FORMAT_VERSION,
            "key": self.key,
            "block_ids": list(self.block_ids),
            "classnames": list(self.classnames),
            "pooling": self.pooling,
            "poolings": sorted(self.features),
            "num_samples": self.num_samples,
            "width": self.width,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``path`` (.safetensors) and its ``.json`` beside it, each atomically."""
        path = Path(path)
        if path.suffix != ".safetensors":
            raise ValueError(f"{path}: feature sets are written as .safetensors")
        with atomic_path(path) as tmp:
            save_file(self.tensors(), str(tmp), metadata={"format": "cascade-features",
                                                           "format_version": str(CACHE_FORMAT_VERSION)})
        # JSON last: a reader that finds the JSON finds the tensors.
        atomic_write_text(path.with_suffix(".json"), json.dumps(self.meta(), indent=1, sort_keys=True))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FeatureSet":
        path = Path(path)
        meta = json.loads(path.with_suffix(".json").read_text())
        tensors = load_file(str(path))
        feats = {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith("features.")}
        return cls(features=feats, block_ids=[int(b) for b in meta["block_ids"]], labels=tensors["labels"],
                   dists=tensors["dists"], indices=tensors["indices"], classnames=list(meta["classnames"]),
                   pooling=meta.get("pooling", "cls"), key=meta.get("key", {}), cache_path=path)


# ---------------------------------------------------------------------------
# cache keys and the cache
# ---------------------------------------------------------------------------


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def checkpoint_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a checkpoint's tensors file (σ, prompts, heads, … all live in it)."""
    return file_sha256(path)


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def key_hash(key: dict[str, Any]) -> str:
    return hashlib.sha256(_canonical(key).encode()).hexdigest()


_DATA_FIELDS_IGNORED = ("scan_workers", "on_bad")


def data_key(data_config: Any = None, index: Any = None, split: str | None = None,
             item_keys: Sequence[str] | None = None, transform: str | None = None) -> dict[str, Any]:
    """The data part of a feature key: config, source, split and a hash of the split's item keys."""
    out: dict[str, Any] = {"split": split}
    if data_config is not None:
        cfg = data_config.model_dump(mode="json") if hasattr(data_config, "model_dump") else dict(data_config)
        for name in _DATA_FIELDS_IGNORED:
            cfg.pop(name, None)
        out["config"] = cfg
    if index is not None:
        out["source"] = getattr(index, "source", None)
    if item_keys is not None:
        out["num_items"] = len(item_keys)
        out["items_sha256"] = hashlib.sha256("\n".join(item_keys).encode()).hexdigest()
    if transform is not None:
        out["transform"] = transform
    return out


def model_key(model, checkpoint: str | os.PathLike | None = None, *, frozen: bool = False) -> dict[str, Any]:
    """The model part of a feature key: backbone identity, model config, checkpoint hash or 'frozen'."""
    info = model.backbone_info.to_dict()
    backbone = {k: info.get(k) for k in ("name", "pretrained", "random_weights", "seed", "quick_gelu",
                                         "depth", "width", "image_size", "patch_size")}
    if frozen:
        return {"backbone": backbone, "checkpoint": "frozen", "pooling": model.config.pooling}
    out: dict[str, Any] = {"backbone": backbone, "config": model.config.model_dump(mode="json")}
    if checkpoint is not None:
        out["checkpoint"] = checkpoint_sha256(checkpoint)
    else:
        # No file: hash the state itself, so an in-memory model still gets a faithful key.
        h = hashlib.sha256()
        for k, v in sorted(model.trainable_state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().float().contiguous().numpy().tobytes())
        out["checkpoint"] = "state:" + h.hexdigest()
    return out


def feature_key(model_part: dict[str, Any], data_part: dict[str, Any], poolings: Sequence[str]) -> dict[str, Any]:
    return {"version": CACHE_FORMAT_VERSION, "model": model_part, "data": data_part,
            "poolings": sorted(poolings)}


def default_cache_dir() -> Path:
    env = os.environ.get(DEFAULT_CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path(os.path.expanduser("~/.cache/cascade/features"))


class FeatureCache:
    """A folder of ``<sha256(key)>.safetensors`` + ``.json`` feature sets."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else default_cache_dir()
        self.hits = 0
        self.misses = 0

    def path_for(self, key: dict[str, Any]) -> Path:
        return self.root / f"{key_hash(key)[:32]}.safetensors"

    def load(self, key: dict[str, Any]) -> FeatureSet | None:
        path = self.path_for(key)
        jpath = path.with_suffix(".json")
        if not (path.is_file() and jpath.is_file()):
            self.misses += 1
            return None
        try:
            meta = json.loads(jpath.read_text())
            if _canonical(meta.get("key")) != _canonical(key):
                self.misses += 1
                return None
            fs = FeatureSet.load(path)
        except (OSError, ValueError, KeyError):
            # A damaged entry is a miss; it is overwritten on save.
            self.misses += 1
            return None
        fs.cache_hit = True
        self.hits += 1
        return fs

    def save(self, key: dict[str, Any], features: FeatureSet) -> Path:
        features.key = key
        path = features.save(self.path_for(key))
        features.cache_path = path
        return path

    def entries(self) -> list[dict[str, Any]]:
        out = []
        for j in sorted(self.root.glob("*.json")):
            try:
                out.append(json.loads(j.read_text()) | {"path": str(j.with_suffix(".safetensors"))})
            except (OSError, ValueError):
                continue
        return out


def cached_features(key: dict[str, Any], compute: Callable[[], FeatureSet],
                    cache: FeatureCache | str | os.PathLike | None = None, *, refresh: bool = False) -> FeatureSet:
    """The feature set stored under ``key``, or ``compute()`` it and store it (rank 0 writes)."""
    cache = cache if isinstance(cache, FeatureCache) else FeatureCache(cache)
    if not refresh:
        hit = cache.load(key)
        if hit is not None:
            return hit
    fs = compute()
    fs.key = key
    fs.cache_hit = False
    if _rank() == 0:
        cache.save(key, fs)
    else:
        fs.cache_path = cache.path_for(key)
    _barrier()
    return fs


# ---------------------------------------------------------------------------
# extraction
# ---------------------------------------------------------------------------


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def _rank() -> int:
    d = _dist()
    return d.get_rank() if d else 0


def _barrier() -> None:
    d = _dist()
    if d:
        d.barrier()


def _batch_images(batch: Any) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    if isinstance(batch, dict):
        return batch["image"], batch.get("label"), batch.get("dist"), batch.get("index")
    if isinstance(batch, (list, tuple)):
        images = batch[0]
        labels = batch[1] if len(batch) > 1 else None
        return images, labels, None, None
    return batch, None, None, None


def _gather(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Concatenate one tensor from every rank along dim 0 (rank order), allowing unequal lengths."""
    d = _dist()
    if d is None:
        return t
    comm_dev = torch.device("cuda", torch.cuda.current_device()) if "nccl" in str(d.get_backend()).lower() \
        else torch.device("cpu")
    n = torch.tensor([t.shape[0]], device=comm_dev)
    sizes = [torch.zeros_like(n) for _ in range(d.get_world_size())]
    d.all_gather(sizes, n)
    sizes_i = [int(s.item()) for s in sizes]
    m = max(sizes_i)
    pad = torch.zeros((m - t.shape[0],) + tuple(t.shape[1:]), dtype=t.dtype)
    local = torch.cat([t.cpu(), pad]).to(comm_dev)
    parts = [torch.empty_like(local) for _ in sizes_i]
    d.all_gather(parts, local)
    return torch.cat([p[:s].cpu() for p, s in zip(parts, sizes_i)])


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
    from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

    poolings = list(poolings) if poolings else [model.config.pooling]
    bad = [p for p in poolings if p not in POOLINGS]
    if bad:
        raise ValueError(f"pooling: unknown {bad}; choose from {POOLINGS}")
    poolings = list(dict.fromkeys(poolings))
    dist = _dist() if distributed is not False else None
    world, rank = (dist.get_world_size(), dist.get_rank()) if dist else (1, 0)

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
        from cascade.progress import track

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
        pos_all = _gather(positions, device)
        f_all = _gather(f_all.transpose(0, 1).contiguous(), device).transpose(0, 1)
        y_all, p_all, ix_all = _gather(y_all, device), _gather(p_all, device), _gather(ix_all, device)
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
    from cascade.backbone import Backbone

    holder = nn.Module()
    holder.visual = model.visual
    return Backbone(model=holder, preprocess=None, tokenizer=None, info=model.backbone_info)


def zero_prompt_model(like, backbone=None):
    """Frozen CLIP in the cascade code path: ``like``'s stages and pooling, no prompts, CLIP's LayerNorm.

    The visual tower (and the classifier) are shared with ``like``, not copied; the
    returned model never trains. Its per-block features are frozen CLIP's.
    """
    from cascade.model import build_model

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
    config: Any                 # cascade.train.run_config.RunConfig
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
        from cascade.data import EmotionDataset, eval_transform
        from cascade.train.data import backbone_normalisation

        if split not in self.splits:
            raise KeyError(f"split {split!r} not in this run's splits ({sorted(self.splits)})")
        if not self.splits[split]:
            raise ValueError(f"split {split!r} of {self.run_dir} is empty")
        size, mean, std = backbone_normalisation(self.model)
        return EmotionDataset(self.index, self.splits[split], eval_transform(size, mean, std),
                              label_smoothing=self.config.data.label_smoothing,
                              max_pixels=self.config.data.max_image_pixels)

    def item_keys(self, split: str) -> list[str]:
        keys = self.index.keys
        return [keys[i] for i in self.splits[split]]

    def frozen(self):
        return zero_prompt_model(self.model)


def find_checkpoint(run_or_checkpoint: str | os.PathLike, which: str = "best") -> Path:
    """A checkpoint path from a run folder (``checkpoints/<which>.safetensors``) or a path itself."""
    p = Path(run_or_checkpoint)
    if p.is_file() or p.suffix == ".safetensors":
        return p
    ck = Path(which)
    if ck.suffix == ".safetensors":
        return ck
    for cand in (p / "checkpoints" / f"{which}.safetensors", p / f"{which}.safetensors"):
        if cand.is_file():
            return cand
    found = sorted((p / "checkpoints").glob("*.safetensors")) if (p / "checkpoints").is_dir() else []
    found = [f.stem for f in found if ".train" not in f.name]
    raise FileNotFoundError(f"{p}: no checkpoint {which!r} (the run has: {found or 'none'})")


def load_run(run_dir: str | os.PathLike, checkpoint: str = "best", device: str | torch.device = "cpu") -> LoadedRun:
    """Load a run folder through the trainer's own loaders (config.yaml, splits.json, checkpoint).

    ``checkpoint`` is ``best``, ``last`` or a ``.safetensors`` path.
    """
    from cascade.evaluate import load_run_model
    from cascade.train.data import load_data
    from cascade.train.run_config import load_run_config
    from cascade.train.runfolder import SPLITS, RunFolder

    folder = RunFolder(run_dir)
    folder.require()
    cfg = load_run_config(folder.config)
    if cfg.method == "linear-probe":
        raise ValueError(f"{run_dir}: a linear-probe run has no per-block cascade head to analyse")
    ckpt = find_checkpoint(folder.path, checkpoint)
    model, cfg = load_run_model(folder.path, str(ckpt), device, cfg)
    model.eval()
    splits_path = folder / SPLITS
    data = load_data(cfg.data, splits_path if splits_path.is_file() else None)
    return LoadedRun(run_dir=folder.path, config=cfg, model=model, checkpoint=ckpt, data=data)


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
    cache = FeatureCache(cache_dir if cache_dir is not None else run.run_dir / "features")
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


def iter_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Every model checkpoint of a run (not the ``*.train`` resume states), ordered by the step
    (or epoch) its JSON records, else by time."""
    run_dir = Path(run_dir)
    folder = run_dir / "checkpoints"
    paths = sorted(p for p in folder.glob("*.safetensors") if ".train" not in p.name) if folder.is_dir() else []

    def order(p: Path) -> tuple:
        try:
            meta = json.loads(p.with_suffix(".json").read_text())
        except (OSError, ValueError):
            meta = {}
        extra = meta.get("extra") or {}
        step = extra.get("step", extra.get("global_step"))
        epoch = extra.get("epoch")
        return (step if isinstance(step, (int, float)) else float("inf"),
                epoch if isinstance(epoch, (int, float)) else float("inf"), p.stat().st_mtime)

    return sorted(paths, key=order)


def training_checkpoints(run_dir: str | os.PathLike) -> list[tuple[Path, str]]:
    """The checkpoints training wrote (``best``, ``last``, ``epoch-<k>``), one per global step, in
    training order, each with a label naming every checkpoint saved at that step
    (e.g. ``epoch-2 = best``).

    Checkpoints the σ tuner saved (their JSON says ``sigma_tuned_on``) are not training
    checkpoints: they carry the step of the checkpoint they were derived from.
    """
    by_step: dict[Any, list[Path]] = {}
    for path in iter_checkpoints(run_dir):
        try:
            meta = json.loads(path.with_suffix(".json").read_text())
        except (OSError, ValueError):
            meta = {}
        if not isinstance(meta, dict) or "sigma_tuned_on" in meta:
            continue
        step = (meta.get("extra") or {}).get("global_step")
        by_step.setdefault(step if isinstance(step, int) else path.stem, []).append(path)
    rank = {"last": 1, "best": 2}   # the point is drawn from an epoch checkpoint, else last, else best
    out = []
    for paths in by_step.values():
        paths = sorted(paths, key=lambda p: (rank.get(p.stem, 0), p.stem))
        out.append((paths[0], " = ".join(p.stem for p in paths)))
    return out

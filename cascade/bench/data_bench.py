"""Figure 4: the input pipelines, ``train.input_pipeline`` cpu against device.

- cpu: JPEG decode + the torchvision transform through a DataLoader, per worker count, read
  from the image files and from one WebDataset tar shard holding the same JPEG bytes;
- device: decode once into the uint8 store (a one-time cost), then the batched
  augmentation on the bench's device, per epoch; evaluation batches from the eval store;
- the trainer itself on the same images with augmentation, each pipeline, with the share
  of step time it waited for data.

Images: Emotion6 when it has enough, else a generated folder of 640×480 JPEGs
(:mod:`.jpeg_folder`).
"""
from __future__ import annotations

import io
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
import webdataset as wds
from torch.utils.data import DataLoader, Dataset

from ..data import EmotionDataset, eval_transform, load_rgb, train_transform
from ..data.decoded import CacheGeometry, build_store, crop_cache_side
from ..data.records import DatasetIndex, Record
from ..data.scan_report import DataReport
from ..data.tar_members import iter_samples, read_member
from ..data.transforms import CLIP_MEAN, CLIP_STD, AugmentConfig
from ..run_config import load_run_config
from ..runfolder import read_metrics
from ..train import train
from ..train.data import cache_placement
from ..train.store_source import StoreSource
from .jpeg_folder import folder_files, jpeg_folder

DEFAULT_EMOTION6 = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "Emotion6"


def emotion6_root(root: str | os.PathLike | None = None) -> Path:
    if root:
        return Path(root)
    env = os.environ.get("CASCADE_EMOTION6")
    return Path(env) if env else DEFAULT_EMOTION6


def _pipeline(image_size: int, augment: bool):
    tf = train_transform(image_size) if augment else eval_transform(image_size)
    return load_rgb, tf, "cascade.data (load_rgb + eval/train_transform)"


class _Files(Dataset):
    def __init__(self, files: list[Path], load, transform):
        self.files, self.load, self.transform = files, load, transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform(self.load(self.files[i]))


def _spread(files: list[Path], n: int) -> list[Path]:
    """``n`` files taken round-robin over the class folders (all when n >= len)."""
    if n >= len(files):
        return files
    by_class: dict[str, list[Path]] = {}
    for f in files:
        by_class.setdefault(f.parent.name, []).append(f)
    out: list[Path] = []
    lists = list(by_class.values())
    i = 0
    while len(out) < n:
        lst = lists[i % len(lists)]
        j = i // len(lists)
        if j < len(lst):
            out.append(lst[j])
        i += 1
    return out


def _rate(n: int, n_after_first: int, t0: float, first: float | None, end: float) -> dict:
    total = end - t0
    steady = (n_after_first / (end - first)) if first is not None and end > first and n_after_first else None
    return {"images": n, "seconds": total, "images_per_second": n / total,
            "steady_images_per_second": steady or n / total, "startup_seconds": (first or end) - t0}


class _Members(Dataset):
    """The same images as samples of a tar shard, read the way the trainer reads them."""

    def __init__(self, members: list, load, transform):
        self.members, self.load, self.transform = members, load, transform

    def __len__(self) -> int:
        return len(self.members)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform(self.load(io.BytesIO(read_member(self.members[i]))))


def write_shard(files: list[Path], folder: str | os.PathLike) -> tuple[Path, list]:
    """``files`` (their bytes, unchanged) as one tar shard in ``folder``; its members in file order."""
    path = Path(folder) / "bench-000000.tar"
    with open(path, "wb") as fh:
        writer = wds.TarWriter(fh, encoder=False, mtime=0)
        for i, f in enumerate(files):
            writer.write({"__key__": f"{i:08d}", f.suffix.lower().lstrip("."): f.read_bytes()})
        writer.close()
    members = [next(m for m, _ in sample.parts.values()) for sample in iter_samples(str(path))]
    return path, members


def time_loader(files: list[Path] | Dataset, load, transform, workers: int, batch_size: int) -> dict:
    dataset = files if isinstance(files, Dataset) else _Files(files, load, transform)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, shuffle=False, drop_last=False)
    t0 = time.perf_counter()
    first = None
    n = n_after_first = 0
    for batch in loader:
        if first is None:
            first = time.perf_counter()
        else:
            n_after_first += batch.shape[0]
        n += batch.shape[0]
    return {"workers": workers, **_rate(n, n_after_first, t0, first, time.perf_counter())}


def image_files(root: str | os.PathLike | None, num_images: int) -> tuple[list[Path], str]:
    """Emotion6 (or ``root``) when it holds ``num_images`` JPEGs, else a generated folder."""
    base = emotion6_root(root)
    for folder in (base / "images", base):
        files = sorted(folder.glob("*/*.jpg")) if folder.is_dir() else []
        if files and (root is not None or len(files) >= num_images):
            return _spread(files, num_images), f"{folder} ({len(files)} JPEGs)"
    made = jpeg_folder(num_images)
    return folder_files(made), f"{made} (generated: {num_images} JPEGs, 640x480)"


def _index_of(files: list[Path]):
    """A DatasetIndex over ``files`` labelled by their folder, without the scan's decode."""
    classes = sorted({f.parent.name for f in files})
    records = [Record(key=str(f), label=classes.index(f.parent.name)) for f in files]
    return DatasetIndex(classes, records, DataReport(source="bench", format="files"), False, "bench")


def bench_device_pipeline(files: list[Path], image_size: int, batch_size: int, device: str, epochs: int = 2) -> dict:
    """Decode once into the stores, then time epochs of augmented and of eval batches."""
    dev = torch.device(device)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    index = _index_of(files)
    items = list(range(len(files)))
    dataset = EmotionDataset(index, items)
    aug = AugmentConfig()
    out: dict = {}
    for kind, geometry, augment in [("augment", CacheGeometry("crop", image_size, crop_cache_side(image_size, aug)), aug),
                                    ("eval", CacheGeometry("eval", image_size, image_size), None)]:
        t0 = time.perf_counter()
        store = build_store(index, items, geometry, memory_limit=64 * 2**30)
        build = time.perf_counter() - t0
        place = cache_placement("auto", dev, store.dense_nbytes)
        src = StoreSource(store, dataset, dev, image_size=image_size, mean=CLIP_MEAN, std=CLIP_STD,
                          augment=augment, seed=0, pixels_on=place)
        batches = [items[i:i + batch_size] for i in range(0, len(items), batch_size)]
        times = []
        for epoch in range(epochs):
            sync()
            t0 = time.perf_counter()
            for b in src.iterate(batches, epoch):
                b["image"].sum()   # consumed on the device, as the model would
            sync()
            times.append(time.perf_counter() - t0)
        steady = min(times[1:] or times)
        out[kind] = {"decode_once_images_per_second": len(items) / build, "decode_once_seconds": build,
                     "epoch_seconds": times, "steady_images_per_second": len(items) / steady,
                     "store_gib": store.nbytes / 2**30, "pixels_on": src.pixels_device,
                     "store": geometry.describe()}
        del src, store
    return out


def bench_trainer_on_folder(images: int, *, model: str, device: str, batch_size: int, epochs: int = 2,
                            compile_mode: str | None = None) -> dict:
    """``cascade train`` with augmentation on a generated folder of ``images`` 640×480 JPEGs,
    once per input pipeline: steady images/s and the share of step time the loop waited
    for its next batch."""
    root = jpeg_folder(images)
    n = images
    steps = max(1, int(n * 0.7) // batch_size)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for pipeline in ("cpu", "device"):
            overrides = {
                "backbone.model_name": model, "backbone.pretrained": "none", "model.preset": "b32-4stage",
                "model.prompt_tokens": 16, "data.format": "imagefolder", "data.root": str(root),
                "train.epochs.warmup": 0, "train.epochs.unfreeze": 0, "train.epochs.global": epochs,
                "train.batch_size": batch_size, "train.device": device, "train.augment": True,
                "train.cache_prefix": False, "train.input_pipeline": pipeline,
                "train.num_workers": min(16, os.cpu_count() or 1), "train.log_every_steps": max(1, steps // 4),
                "train.eval_stages": False, "run.runs_dir": tmp, "run.name": pipeline,
            }
            if compile_mode:
                overrides["train.compile"] = compile_mode
            t0 = time.perf_counter()
            try:
                path = train(load_run_config(None, overrides), quiet=True)
            except Exception as exc:  # noqa: BLE001 - one pipeline's failure keeps the other row
                out[pipeline] = {"error": f"{exc.__class__.__name__}: {exc}"}
                continue
            records = read_metrics(path)
            stepr = [r for r in records if r["kind"] == "step"]
            later = stepr[1:] or stepr
            start = records[0]
            out[pipeline] = {
                "wall_seconds": time.perf_counter() - t0, "images": n, "epochs": epochs, "batch_size": batch_size,
                "images_per_second": statistics.median(r["images_per_s"] for r in later) if later else None,
                "data_wait": statistics.median(r["data_wait"] for r in later) if later else None,
                "input_pipeline": start.get("input_pipeline"), "compile": start.get("compile_plan"),
                "note": "first logged window (warm-up, compilation) left out of the medians",
            }
    return out


def bench_data(image_size: int, *, batch_size: int, workers: list[int], num_images: int,
               root: str | os.PathLike | None = None, model_images_per_second: dict[str, float] | None = None,
               device: str = "cpu", trainer: dict | None = None, epochs: int = 8) -> dict:
    """``trainer``: keyword arguments of :func:`bench_trainer_on_folder` (None: no trainer rows)."""
    files, source = image_files(root, num_images)
    load, tf_eval, pipeline = _pipeline(image_size, augment=False)
    _, tf_train, _ = _pipeline(image_size, augment=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="cascade-bench-shard-") as tmp:
        _, members = write_shard(files, tmp)
        # Interleaved per worker count, so a change in machine load hits both sources alike.
        for w in workers:
            for kind, data in (("folder", files), ("shards", _Members(members, load, tf_eval))):
                r = time_loader(data, load, tf_eval, w, batch_size)
                r["transform"], r["source"] = "eval", kind
                rows.append(r)
    r = time_loader(files, load, tf_train, max(workers), batch_size)
    r["transform"], r["source"] = "train (augment)", "folder"
    rows.append(r)
    best = max(r["steady_images_per_second"] for r in rows if r["transform"] == "eval" and r["source"] == "folder")
    best_shards = max(r["steady_images_per_second"] for r in rows if r["source"] == "shards")
    cpu_train = rows[-1]["steady_images_per_second"]
    out = {
        "available": True,
        "root": source,
        "images": len(files),
        "pipeline": pipeline,
        "image_size": image_size,
        "cpu_count": os.cpu_count(),
        "loaders": rows,
        "best_eval_images_per_second": best,
        "shards": {"best_eval_images_per_second": best_shards, "ratio_to_folder": best_shards / best,
                   "note": "the same JPEG bytes in one uncompressed tar shard, read by positioned reads as "
                           "format webdataset trains; both sources warm in the page cache (just read or "
                           "written), so this compares read paths, not cold storage"},
    }
    dev = bench_device_pipeline(files, image_size, batch_size, device)
    aug = dev["augment"]
    n = len(files)
    cpu_epochs = epochs * n / cpu_train
    dev_epochs = n / aug["decode_once_images_per_second"] + epochs * n / aug["steady_images_per_second"]
    out["device"] = {**dev, "device": device, "epochs": epochs,
                     "per_epoch_speedup": aug["steady_images_per_second"] / cpu_train,
                     f"speedup_over_{epochs}_epochs": cpu_epochs / dev_epochs,
                     "note": (f"cpu: decode + train transform every epoch ({max(workers)} workers); device: one "
                              f"decode, then batched augmentation on {device}")}
    if model_images_per_second:
        out["model_images_per_second"] = dict(model_images_per_second)
        out["starved"] = {k: best < v for k, v in model_images_per_second.items()}
        out["note"] = ("loader measured alone; during training its workers share the same "
                       f"{os.cpu_count()} CPU cores with the model")
    if trainer is not None:
        out["trainer"] = bench_trainer_on_folder(device=device, **trainer)
    return out

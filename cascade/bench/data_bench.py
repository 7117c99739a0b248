"""Figure 4: Emotion6 JPEG decoding + preprocessing throughput through a DataLoader, read from
the image files and from one WebDataset tar shard holding the same JPEG bytes."""
from __future__ import annotations

import io
import os
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

DEFAULT_EMOTION6 = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "Emotion6"


def emotion6_root(root: str | os.PathLike | None = None) -> Path:
    if root:
        return Path(root)
    env = os.environ.get("CASCADE_EMOTION6")
    return Path(env) if env else DEFAULT_EMOTION6


def _pipeline(image_size: int, augment: bool):
    """The project's loader and transforms when present (cascade.data), else PIL + torchvision."""
    try:
        from ..data import eval_transform, load_rgb, train_transform

        tf = train_transform(image_size) if augment else eval_transform(image_size)
        return load_rgb, tf, "cascade.data (load_rgb + eval/train_transform)"
    except ImportError:
        from PIL import Image
        from torchvision import transforms as T

        def load(path):
            with Image.open(path) as im:
                return im.convert("RGB")

        steps = [T.RandomResizedCrop(image_size, interpolation=T.InterpolationMode.BICUBIC)] if augment else \
            [T.Resize(image_size, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(image_size)]
        tf = T.Compose(steps + [T.ToTensor(), T.Normalize((0.48145466, 0.4578275, 0.40821073),
                                                            (0.26862954, 0.26130258, 0.27577711))])
        return load, tf, "fallback (PIL + torchvision): cascade.data not importable"


class _Files(Dataset):
    def __init__(self, files: list[Path], load, transform):
        self.files, self.load, self.transform = files, load, transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform(self.load(self.files[i]))


def _spread(files: list[Path], n: int) -> list[Path]:
    """``n`` files taken round-robin over the emotion folders (all when n >= len)."""
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


class _Members(Dataset):
    """The same images as samples of a tar shard, read the way the trainer reads them."""

    def __init__(self, members: list, load, transform):
        self.members, self.load, self.transform = members, load, transform

    def __len__(self) -> int:
        return len(self.members)

    def __getitem__(self, i: int) -> torch.Tensor:
        from ..data.tar_members import read_member

        return self.transform(self.load(io.BytesIO(read_member(self.members[i]))))


def write_shard(files: list[Path], folder: str | os.PathLike) -> tuple[Path, list]:
    """``files`` (their bytes, unchanged) as one tar shard in ``folder``; its members in file order."""
    import webdataset as wds

    from ..data.tar_members import iter_samples

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
    end = time.perf_counter()
    total = end - t0
    steady = (n_after_first / (end - first)) if first is not None and end > first and n_after_first else None
    return {"workers": workers, "images": n, "seconds": total, "images_per_second": n / total,
            "steady_images_per_second": steady or n / total, "startup_seconds": (first or end) - t0}


def bench_data(image_size: int, *, batch_size: int, workers: list[int], num_images: int,
               root: str | os.PathLike | None = None, model_images_per_second: dict[str, float] | None = None) -> dict:
    root = emotion6_root(root)
    files = sorted((root / "images").glob("*/*.jpg")) if (root / "images").is_dir() else []
    if not files:
        return {"available": False, "skipped": f"Emotion6 not found at {root} (images/<emotion>/<n>.jpg)"}
    load, tf_eval, source = _pipeline(image_size, augment=False)
    _, tf_train, _ = _pipeline(image_size, augment=True)
    files = _spread(files, num_images)
    rows = []
    with tempfile.TemporaryDirectory(prefix="cascade-bench-shard-") as tmp:
        _, members = write_shard(files, tmp)
        # Interleaved per worker count, so a change in machine load hits both sources alike.
        for w in workers:
            for source, data in (("folder", files), ("shards", _Members(members, load, tf_eval))):
                r = time_loader(data, load, tf_eval, w, batch_size)
                r["transform"], r["source"] = "eval", source
                rows.append(r)
    r = time_loader(files, load, tf_train, max(workers), batch_size)
    r["transform"], r["source"] = "train (augment)", "folder"
    rows.append(r)
    best = max(r["steady_images_per_second"] for r in rows if r["transform"] == "eval" and r["source"] == "folder")
    best_shards = max(r["steady_images_per_second"] for r in rows if r["source"] == "shards")
    out = {
        "available": True,
        "root": str(root),
        "pipeline": source,
        "image_size": image_size,
        "cpu_count": os.cpu_count(),
        "loaders": rows,
        "best_eval_images_per_second": best,
        "shards": {"best_eval_images_per_second": best_shards, "ratio_to_folder": best_shards / best,
                   "note": "the same JPEG bytes in one uncompressed tar shard, read by positioned reads as "
                           "format webdataset trains; both sources warm in the page cache (just read or "
                           "written), so this compares read paths, not cold storage"},
    }
    if model_images_per_second:
        out["model_images_per_second"] = dict(model_images_per_second)
        out["starved"] = {k: best < v for k, v in model_images_per_second.items()}
        out["note"] = ("loader measured alone; during training its workers share the same "
                       f"{os.cpu_count()} CPU cores with the model")
    return out

"""Batches from a decoded-image store (:mod:`cascade.data.decoded`), augmented on the
training device with :mod:`cascade.data.batch_augment`.

The same interface as :class:`cascade.train.data.ImageSource`: ``iterate(batches, epoch)``
yields ``{"image", "label", "dist", "index", "pos"}``, here with ``image`` already on the
device and normalised. On a GPU, host work (random draws, gathering pixels from host
memory) runs one batch ahead in a thread; device work is queued from the calling thread,
so nothing else touches the device's streams (CUDA graph capture stays undisturbed).

On a GPU the crop is resampled for the whole batch by two batched matmuls over the
[C, L] box every stored image fits (the store is copied to the GPU when it fits in a
quarter of the free memory, ``train.cache_device``); on a CPU each crop goes through
``F.interpolate`` (same kernel, uint8 like PIL), which is faster there.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..data.batch_augment import (color_jitter, draw_augmentation, jitter_enabled, normalise, normalise_255,
                                  resample_batch, resample_weights)
from ..data.dataset import EmotionDataset
from ..data.decoded import DecodedImages
from ..data.transforms import AugmentConfig
from .batches import epoch_seed


def prefetch(items: Iterable[Any], depth: int = 2) -> Iterator[Any]:
    """Iterate ``items`` computed ``depth`` ahead in a thread (exceptions re-raised in order)."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def work():
        try:
            for x in items:
                while not stop.is_set():
                    try:
                        q.put((x, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put((done, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            q.put((done, exc))

    t = threading.Thread(target=work, name="input-prefetch", daemon=True)
    t.start()
    try:
        while True:
            x, exc = q.get()
            if x is done:
                if exc is not None:
                    raise exc
                return
            yield x
    finally:
        stop.set()
        t.join(timeout=5)


class StoreSource:
    """One split's items from ``store`` (its i-th array is the split's i-th item)."""

    kind = "images"

    def __init__(self, store: DecodedImages, dataset: EmotionDataset, device: torch.device, *, image_size: int,
                 mean, std, augment: AugmentConfig | None, seed: int = 0, pixels_on: torch.device | None = None,
                 batched: bool | None = None):
        if len(store) != len(dataset):
            raise ValueError(f"input store holds {len(store)} images, the split {len(dataset)}")
        if (augment is None) != (store.geometry.kind == "eval"):
            raise ValueError(f"a {store.geometry.kind} store cannot serve "
                             f"{'augmented' if augment is not None else 'unaugmented'} batches")
        self.store, self.device, self.size = store, torch.device(device), image_size
        self.mean, self.std, self.augment, self.seed = tuple(mean), tuple(std), augment, seed
        index = dataset.index
        self.indices = torch.as_tensor(dataset.indices, dtype=torch.long)
        self.labels = torch.as_tensor(dataset.labels, dtype=torch.long)
        dists = [index.distribution(i, dataset.label_smoothing) for i in dataset.indices]
        self.dists = torch.as_tensor(np.stack(dists) if dists else np.zeros((0, index.num_classes)),
                                     dtype=torch.float32)
        self.dense = self._upload(pixels_on) if pixels_on is not None and pixels_on.type != "cpu" else None
        # batched: crops by batched matmuls (default on GPUs), else one F.interpolate per image.
        self.on_gpu_math = self.device.type != "cpu" if batched is None else batched

    def __len__(self) -> int:
        return len(self.store)

    @property
    def pixels_device(self) -> str:
        return "GPU" if self.dense is not None else "host"

    def _upload(self, device: torch.device) -> torch.Tensor:
        """Every stored array in one [N, C, L, 3] uint8 tensor on ``device`` (zero padded)."""
        c, l = self.store.box()
        out = torch.zeros((len(self.store), c, l, 3), dtype=torch.uint8, device=device)
        for start in range(0, len(self.store), 256):
            stop = min(len(self.store), start + 256)
            out[start:stop] = self._gather(range(start, stop), (c, l)).to(device)
        return out

    def _gather(self, items, box: tuple[int, int] | None = None) -> torch.Tensor:
        items = list(items)
        sizes = self.store.stored_sizes[items]
        c, l = box or (int(sizes[:, 0].max()), int(sizes[:, 1].max()))
        out = torch.zeros((len(items), c, l, 3), dtype=torch.uint8)
        for k, i in enumerate(items):
            v = self.store.view(i)
            out[k, :v.shape[0], :v.shape[1]] = torch.from_numpy(np.ascontiguousarray(v))
        return out

    # ---- one batch -----------------------------------------------------------------------
    def iterate(self, batches: list[list[int]], epoch: int = 0) -> Iterator[dict[str, Any]]:
        work = (self._prepare(b, epoch) for b in batches)
        # A CPU trains with every core: a second thread of torch ops would only contend with it.
        for prepared in (prefetch(work) if self.device.type == "cuda" else work):
            yield self._finish(prepared)

    def _prepare(self, positions: list[int], epoch: int) -> dict[str, Any]:
        """Host part: labels, the random draws, pixels gathered from host memory."""
        pos = torch.as_tensor(positions, dtype=torch.long)
        out: dict[str, Any] = {"label": self.labels[pos], "dist": self.dists[pos], "index": self.indices[pos],
                               "pos": pos}
        if self.augment is not None:
            out["boxes"] = self._stored_boxes(positions, epoch)
        if not self.on_gpu_math:
            out["image"] = self._cpu_images(positions, out.get("boxes"))
        elif self.dense is None:
            px = self._gather(positions)
            out["pixels"] = px.pin_memory() if self.device.type == "cuda" else px
        return out

    def _stored_boxes(self, positions: list[int], epoch: int) -> dict[str, np.ndarray]:
        """The augmentation draws, with crop boxes moved from original to stored pixels."""
        keys = [epoch_seed(self.seed, epoch, 1 + int(self.indices[p])) for p in positions]
        orig = self.store.original_sizes[positions].astype(np.float64)
        draws = draw_augmentation(keys, orig[:, 0], orig[:, 1], self.augment)
        t = self.store.transposed[positions]
        stored = self.store.stored_sizes[positions].astype(np.float64)
        upright = np.where(t[:, None], stored[:, ::-1], stored)           # (h, w) upright
        top, left, h, w = (draws.boxes[:, k].astype(np.float64) for k in range(4))
        ky, kx = upright[:, 0] / orig[:, 0], upright[:, 1] / orig[:, 1]
        y0 = np.clip(np.rint(top * ky), 0, upright[:, 0] - 1)
        x0 = np.clip(np.rint(left * kx), 0, upright[:, 1] - 1)
        y1 = np.clip(np.maximum(np.rint((top + h) * ky), y0 + 1), 1, upright[:, 0])
        x1 = np.clip(np.maximum(np.rint((left + w) * kx), x0 + 1), 1, upright[:, 1])
        return {"y": np.stack([y0, y1], 1).astype(np.int64), "x": np.stack([x0, x1], 1).astype(np.int64),
                "transposed": t, "flip": draws.flip, "order": draws.order, "factors": draws.factors}

    def _cpu_images(self, positions: list[int], boxes: dict | None) -> torch.Tensor:
        if boxes is None:   # the eval store: already the final geometry
            px = torch.from_numpy(np.stack([self.store.view(p) for p in positions]))
            return self._to_unit(px.permute(0, 3, 1, 2))
        out = torch.empty((len(positions), 3, self.size, self.size), dtype=torch.uint8)
        for k, p in enumerate(positions):
            v = torch.from_numpy(self.store.view(p))
            (y0, y1), (x0, x1) = boxes["y"][k], boxes["x"][k]
            t = bool(boxes["transposed"][k])
            win = (v[x0:x1, y0:y1] if t else v[y0:y1, x0:x1]).permute(2, 0, 1).unsqueeze(0)
            # Antialiased bicubic, uint8 in and out: PIL's resize of the crop.
            img = F.interpolate(win, size=(self.size, self.size), mode="bicubic", antialias=True)[0]
            img = img.transpose(1, 2) if t else img
            out[k] = img.flip(-1) if boxes["flip"][k] else img
        return self._colour(out.to(torch.float32), boxes)

    def _to_unit(self, chw_uint8: torch.Tensor) -> torch.Tensor:
        # ToTensor's arithmetic: float32, then / 255.
        return chw_uint8.to(torch.float32).div(255)

    def _colour(self, img: torch.Tensor, boxes: dict) -> torch.Tensor:
        """Colour jitter and normalisation of flipped crops with values in 0..255 (on their device)."""
        order = torch.as_tensor(boxes["order"], device=img.device)
        factors = torch.as_tensor(boxes["factors"], dtype=torch.float32, device=img.device)
        img = color_jitter(img.contiguous(), order, factors, jitter_enabled(self.augment), white=255.0, inplace=True)
        return normalise_255(img, self.mean, self.std)

    def _finish(self, prepared: dict[str, Any]) -> dict[str, Any]:
        """Device part (calling thread): resample, flip, jitter, normalise."""
        boxes = prepared.pop("boxes", None)
        if "image" in prepared:
            if boxes is None:
                prepared["image"] = normalise(prepared["image"], self.mean, self.std)
            return prepared
        pos = prepared["pos"]
        if self.dense is not None:
            px = self.dense[pos.to(self.dense.device)]
        else:
            px = prepared.pop("pixels").to(self.device, non_blocking=True)
        if boxes is None:
            prepared["image"] = normalise(self._to_unit(px.permute(0, 3, 1, 2)), self.mean, self.std)
            return prepared
        prepared["image"] = self._colour(self._gpu_crops(px, boxes), boxes)
        return prepared

    def _gpu_crops(self, px: torch.Tensor, boxes: dict) -> torch.Tensor:
        dev = px.device
        t = torch.as_tensor(boxes["transposed"], device=dev)
        y = torch.as_tensor(boxes["y"], device=dev)
        x = torch.as_tensor(boxes["x"], device=dev)
        # Stored rows run along the upright x axis for transposed images.
        r0, r1 = torch.where(t, x[:, 0], y[:, 0]), torch.where(t, x[:, 1], y[:, 1])
        c0, c1 = torch.where(t, y[:, 0], x[:, 0]), torch.where(t, y[:, 1], x[:, 1])
        rows = resample_weights(r0, r1 - r0, self.size, px.shape[1])
        cols = resample_weights(c0, c1 - c0, self.size, px.shape[2])
        # A flip reverses the upright x output: the column outputs, or the row outputs when transposed.
        flip = torch.as_tensor(boxes["flip"], device=dev)
        rows = torch.where((flip & t).view(-1, 1, 1), rows.flip(1), rows)
        cols = torch.where((flip & ~t).view(-1, 1, 1), cols.flip(1), cols)
        # uint8 levels, as PIL's (and the CPU path's) output
        out = resample_batch(px, rows, cols).round_().clamp_(0, 255)
        return torch.where(t.view(-1, 1, 1, 1), out.transpose(-1, -2), out)

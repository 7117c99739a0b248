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
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..data.batch_augment import (apply_jitter, draw_augmentation, gaussian_blur, jitter_enabled, jitter_plan,
                                  normalise, normalise_255, resample_batch, resample_weights, to_grey)
from ..data.dataset import EmotionDataset
from ..data.decoded import DecodedImages
from ..data.transforms import AugmentConfig, blur_kernel_size
from .batches import epoch_seed


_POOL: tuple[int, ThreadPoolExecutor] | None = None


def _crop_pool() -> ThreadPoolExecutor:
    global _POOL
    n = max(1, torch.get_num_threads())
    if _POOL is None or _POOL[0] != n:
        if _POOL is not None:
            _POOL[1].shutdown(wait=False)
        _POOL = (n, ThreadPoolExecutor(max_workers=n, thread_name_prefix="crop"))
    return _POOL[1]


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
        # On the device once: per-batch tensors made from Python numbers would be copied (and waited for).
        self._mean = torch.tensor(self.mean, dtype=torch.float32, device=self.device)
        self._std = torch.tensor(self.std, dtype=torch.float32, device=self.device)
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
        """Host part: labels, the random draws (crop boxes, flips, jitter coefficients packed in
        one array), pixels gathered from host memory; pinned for one asynchronous copy each."""
        pos = torch.as_tensor(positions, dtype=torch.long)
        # Pinned on a GPU, so the trainer's non-blocking copies of labels and targets do not wait.
        out: dict[str, Any] = {"label": self._pin(self.labels[pos]), "dist": self._pin(self.dists[pos]),
                               "index": self.indices[pos], "pos": pos}
        draws = self._stored_boxes(positions, epoch) if self.augment is not None else None
        if not self.on_gpu_math and draws is not None:
            out["image"] = self._cpu_crops(positions, draws)
            return out
        if self.dense is None:
            out["pixels"] = self._pin(self._gather(positions))
        else:
            out["rows"] = self._pin(pos)
        if draws is not None:
            plan = jitter_plan(draws["order"], draws["factors"], jitter_enabled(self.augment), draws["jitter_on"])
            out["grey"], out["blur"] = draws["grey"], draws["blur"]
            crop = np.stack([draws["y"][:, 0], draws["y"][:, 1], draws["x"][:, 0], draws["x"][:, 1],
                             draws["transposed"], draws["flip"]], axis=1).astype(np.float32)
            if plan is not None:
                crop = np.concatenate([crop, plan.blend.transpose(2, 0, 1).reshape(len(positions), 12)], axis=1)
            out["params"] = self._pin(torch.from_numpy(np.ascontiguousarray(crop)))
            out["plan"] = plan
        return out

    def _pin(self, t: torch.Tensor) -> torch.Tensor:
        return t.pin_memory() if self.device.type == "cuda" else t

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
                "transposed": t, "flip": draws.flip, "order": draws.order, "factors": draws.factors,
                "jitter_on": draws.jitter_on, "grey": draws.grey, "blur": draws.blur_sigma}

    def _cpu_crops(self, positions: list[int], draws: dict) -> torch.Tensor:
        out = torch.empty((len(positions), 3, self.size, self.size), dtype=torch.uint8)

        def crop(k: int) -> None:
            v = torch.from_numpy(self.store.view(positions[k]))
            (y0, y1), (x0, x1) = draws["y"][k], draws["x"][k]
            t = bool(draws["transposed"][k])
            win = (v[x0:x1, y0:y1] if t else v[y0:y1, x0:x1]).permute(2, 0, 1).unsqueeze(0)
            # Antialiased bicubic, uint8 in and out: PIL's resize of the crop.
            img = F.interpolate(win, size=(self.size, self.size), mode="bicubic", antialias=True)[0]
            img = img.transpose(1, 2) if t else img
            out[k] = img.flip(-1) if draws["flip"][k] else img

        # One image per call is too small to split across cores (on a busy machine torch's
        # threads then spin-wait for each other: 5x slower than one thread); one image per
        # thread of a pool instead, as many threads as torch uses.
        list(_crop_pool().map(crop, range(len(positions))))
        img = out.to(torch.float32)
        plan = jitter_plan(draws["order"], draws["factors"], jitter_enabled(self.augment), draws["jitter_on"])
        if plan is not None:
            img = apply_jitter(img, plan, white=255.0, inplace=True)
        img = self._grey_blur(img, draws["grey"], draws["blur"])
        return normalise_255(img, self._mean, self._std)

    def _grey_blur(self, img: torch.Tensor, grey, blur) -> torch.Tensor:
        """The strong view's grayscale and blur, after the jitter (torchvision's order)."""
        img = to_grey(img, grey)
        return gaussian_blur(img, blur, blur_kernel_size(self.size))

    def _to_unit(self, chw_uint8: torch.Tensor) -> torch.Tensor:
        # ToTensor's arithmetic: float32, then / 255.
        return chw_uint8.to(torch.float32).div(255)

    def _finish(self, prepared: dict[str, Any]) -> dict[str, Any]:
        """Device part (calling thread): resample, flip, jitter, normalise; no waiting on the device."""
        if "image" in prepared:
            return prepared
        if self.dense is not None:
            px = self.dense[prepared.pop("rows").to(self.dense.device, non_blocking=True)]
        else:
            px = prepared.pop("pixels").to(self.device, non_blocking=True)
        if self.augment is None:
            prepared["image"] = normalise(self._to_unit(px.permute(0, 3, 1, 2)), self._mean, self._std)
            return prepared
        params = prepared.pop("params").to(px.device, non_blocking=True)
        plan = prepared.pop("plan")
        img = self._gpu_crops(px, params[:, :6])
        if plan is not None:
            blend = params[:, 6:].reshape(-1, 4, 3).permute(1, 2, 0).contiguous()
            img = apply_jitter(img, plan, white=255.0, blend=blend, inplace=True)
        img = self._grey_blur(img, prepared.pop("grey"), prepared.pop("blur"))
        prepared["image"] = normalise_255(img, self._mean, self._std)
        return prepared

    def _gpu_crops(self, px: torch.Tensor, crop: torch.Tensor) -> torch.Tensor:
        """Crops of ``px`` [B, C, L, 3] by the packed boxes (y0, y1, x0, x1 upright, transposed,
        flip): [B, 3, S, S] with values in 0..255."""
        y0, y1, x0, x1 = crop[:, 0], crop[:, 1], crop[:, 2], crop[:, 3]
        t, flip = crop[:, 4] > 0.5, crop[:, 5] > 0.5
        # Stored rows run along the upright x axis for transposed images.
        r0, r1 = torch.where(t, x0, y0), torch.where(t, x1, y1)
        c0, c1 = torch.where(t, y0, x0), torch.where(t, y1, x1)
        rows = resample_weights(r0, r1 - r0, self.size, px.shape[1])
        cols = resample_weights(c0, c1 - c0, self.size, px.shape[2])
        # A flip reverses the upright x output: the column outputs, or the row outputs when transposed.
        rows = torch.where((flip & t).view(-1, 1, 1), rows.flip(1), rows)
        cols = torch.where((flip & ~t).view(-1, 1, 1), cols.flip(1), cols)
        # uint8 levels, as PIL's (and the CPU path's) output
        out = resample_batch(px, rows, cols).round_().clamp_(0, 255)
        return torch.where(t.view(-1, 1, 1, 1), out.transpose(-1, -2), out).contiguous()

"""Images decoded once into uint8 arrays: the store behind ``train.input_pipeline: device``.

Two kinds of store:

- ``crop`` (training with augmentation): each image resized once (antialiased bicubic,
  never enlarged) so that its shorter side is :func:`crop_cache_side` pixels, enough that
  even the smallest RandomResizedCrop box still holds at least the model's input size in
  pixels; the crop itself is drawn and resampled later, per epoch, on the device. Portrait
  images are stored transposed (long side across), so a batch fits a [C, L] box.
- ``eval``: the exact output of the evaluation geometry (resize, centre crop) as uint8, so
  evaluation reads the same pixels as :func:`cascade.data.transforms.eval_transform`.

Arrays live in memory up to a byte budget; past it the store spills to one
memory-mapped file (``<name>.u8`` + ``.index.npy`` + ``.json``) in a cache folder. The
JSON holds a fingerprint of the items (paths, sizes, modification times, or the synthetic
generator's settings) and of the geometry; a file whose fingerprint differs is never
reused, so changed images or sizes mean a new decode.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..fileio import atomic_path, write_json
from .records import SYNTHETIC_PREFIX, DatasetIndex
from .scan_report import DataError
from .transforms import AugmentConfig, eval_geometry

CACHE_VERSION = 1
MAX_ASPECT = 3.0            # a wider image is stored smaller, so that it fits a [side, 3·side] box
_CHUNK = 256                # images decoded per round (bounds the decoded images held in flight)
_INDEX_COLUMNS = 6          # offset, stored h, stored w, original H, original W, transposed


@dataclass(frozen=True)
class CacheGeometry:
    kind: str            # "crop" | "eval"
    image_size: int      # the model's input size
    side: int            # crop: shorter side of a stored image (at most); eval: image_size

    def describe(self) -> str:
        if self.kind == "eval":
            return f"eval geometry ({self.image_size}² centre crops, bit-identical to the CPU transform)"
        return f"shorter side {self.side} px for {self.image_size}-px crops"


def crop_cache_side(image_size: int, aug: AugmentConfig) -> int:
    """Shorter side to store images at, so that the smallest crop box still spans
    ``image_size`` stored pixels (no enlargement beyond the CPU transform's), at most 2×."""
    smallest = math.sqrt(max(aug.scale[0], 1e-6) * min(aug.ratio[0], 1.0 / aug.ratio[1]))
    return int(math.ceil(image_size / min(1.0, max(0.5, smallest))))


def estimate_bytes(n: int, geometry: CacheGeometry) -> int:
    """Bytes of a store of ``n`` images (crop: assuming 4:3 images, the common photo shape)."""
    if geometry.kind == "eval":
        return n * geometry.image_size ** 2 * 3
    return int(n * geometry.side * geometry.side * 4 / 3 * 3)


class DecodedImages:
    """uint8 images, item i a [h_i, w_i, 3] array in stored orientation (see module doc)."""

    def __init__(self, geometry: CacheGeometry, table: np.ndarray, arrays: list[np.ndarray] | None = None,
                 flat: np.ndarray | None = None, path: Path | None = None, fingerprint: str = ""):
        self.geometry, self.table, self.arrays, self.flat = geometry, table, arrays, flat
        self.path, self.fingerprint = path, fingerprint

    def __len__(self) -> int:
        return len(self.table)

    @property
    def stored_sizes(self) -> np.ndarray:
        """[N, 2] height, width of each stored array."""
        return self.table[:, 1:3]

    @property
    def original_sizes(self) -> np.ndarray:
        """[N, 2] height, width of each image as decoded (upright), before any resize."""
        return self.table[:, 3:5]

    @property
    def transposed(self) -> np.ndarray:
        return self.table[:, 5].astype(bool)

    @property
    def nbytes(self) -> int:
        return int((self.table[:, 1] * self.table[:, 2]).sum() * 3)

    @property
    def location(self) -> str:
        return "memory" if self.flat is None else f"memory-mapped file {self.path}"

    def view(self, i: int) -> np.ndarray:
        if self.arrays is not None:
            return self.arrays[i]
        off, h, w = (int(v) for v in self.table[i, :3])
        return self.flat[off:off + h * w * 3].reshape(h, w, 3)

    def box(self) -> tuple[int, int]:
        """(C, L): the smallest box every stored array fits in."""
        if not len(self):
            return (1, 1)
        return int(self.table[:, 1].max()), int(self.table[:, 2].max())

    @property
    def dense_nbytes(self) -> int:
        """Bytes of every array padded to :meth:`box`, as one tensor (the copy a GPU keeps)."""
        c, l = self.box()
        return len(self) * c * l * 3


# ---- decoding ------------------------------------------------------------------------------
def _crop_array(im: Image.Image, side: int) -> tuple[np.ndarray, tuple[int, int], bool]:
    w0, h0 = im.size
    short, long = min(w0, h0), max(w0, h0)
    k = min(1.0, side / short, MAX_ASPECT * side / long)
    if k < 1.0:
        im = im.resize((max(1, round(w0 * k)), max(1, round(h0 * k))), Image.BICUBIC)
    arr = np.array(im.convert("RGB") if im.mode != "RGB" else im, dtype=np.uint8)
    if arr.shape[0] > arr.shape[1]:
        return np.ascontiguousarray(arr.transpose(1, 0, 2)), (h0, w0), True
    return arr, (h0, w0), False


def _decoder(index: DatasetIndex, geometry: CacheGeometry, max_pixels: int | None):
    geo = eval_geometry(geometry.image_size) if geometry.kind == "eval" else None

    def decode(i: int) -> tuple[np.ndarray, tuple[int, int], bool]:
        try:
            im = index.load_image(i, max_pixels=max_pixels)
            if geo is not None:
                h0, w0 = im.size[1], im.size[0]
                return np.array(geo(im), dtype=np.uint8), (h0, w0), False
            return _crop_array(im, geometry.side)
        except Exception as exc:  # noqa: BLE001 - any decoder failure names the item
            raise DataError(f"{index.records[i].key}: cannot decode for the input cache: "
                            f"{exc.__class__.__name__}: {exc}") from exc
    return decode


def fingerprint(index: DatasetIndex, items: Sequence[int], geometry: CacheGeometry, max_pixels: int | None) -> str:
    """Changes when an item's file (size, modification time), the item list or the geometry does."""
    h = hashlib.sha256()
    h.update(json.dumps({"version": CACHE_VERSION, "geometry": asdict(geometry), "max_pixels": max_pixels}).encode())
    if index.synthetic is not None:
        s = index.synthetic
        h.update(json.dumps(["synthetic", list(s.classnames), s.num_samples, s.image_size, s.seed]).encode())
    shards: dict[str, str] = {}
    for i in items:
        rec = index.records[i]
        key = rec.key
        if key.startswith(SYNTHETIC_PREFIX):
            h.update(f"{key}\n".encode())
        elif rec.member is not None:
            # A shard sample: its place in the shard, and the shard file's size and time (stat once per
            # shard). A downloaded copy of a URL shard differs in time between machines (and ranks with
            # their own cache), which must agree on the store: its size only.
            m = rec.member
            if m.path not in shards:
                shards[m.path] = _stat_text(m.path, with_time=m.shard in ("", m.path))
            h.update(f"{key}\t{m.offset}\t{m.size}\t{shards[m.path]}\n".encode())
        else:
            h.update(f"{key}\t{_stat_text(key)}\n".encode())
    return h.hexdigest()


def _stat_text(path: str, with_time: bool = True) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return "?"
    return f"{st.st_size}\t{st.st_mtime_ns}" if with_time else str(st.st_size)


class _Writer:
    """Collects arrays in memory; past ``limit`` bytes moves them to a file and appends there."""

    def __init__(self, limit: int, spill_to: Path | None, n: int):
        self.limit, self.spill_to = limit, spill_to
        self.arrays: list[np.ndarray] | None = []
        self.fh = None
        self.table = np.zeros((n, _INDEX_COLUMNS), dtype=np.int64)
        self.count = self.offset = 0

    def add(self, arr: np.ndarray, original: tuple[int, int], transposed: bool) -> None:
        if self.fh is None and self.offset + arr.nbytes > self.limit:
            self._spill()
        self.table[self.count] = (self.offset, arr.shape[0], arr.shape[1], original[0], original[1], int(transposed))
        if self.fh is not None:
            self._write(arr)
        else:
            self.arrays.append(arr)
        self.offset += arr.nbytes
        self.count += 1

    def _write(self, arr: np.ndarray) -> None:
        try:
            self.fh.write(arr.tobytes())
        except OSError as exc:
            raise OSError(f"{self.spill_to}: writing the decoded-image cache failed ({exc}); free disk space "
                          "there, raise train.input_cache_gb, or set train.input_pipeline: cpu") from exc

    def _spill(self) -> None:
        if self.spill_to is None:
            raise MemoryError(f"the decoded images pass the memory budget ({self.limit / 2**30:.1f} GiB) and no "
                              "cache folder was given to spill to")
        self.spill_to.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(self.spill_to.with_suffix(".u8.tmp"), "wb")
        for a in self.arrays:
            self._write(a)
        self.arrays = None

    def finish(self, geometry: CacheGeometry, fp: str) -> DecodedImages:
        if self.fh is None:
            return DecodedImages(geometry, self.table, arrays=self.arrays, fingerprint=fp)
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        data = self.spill_to.with_suffix(".u8")
        os.replace(self.spill_to.with_suffix(".u8.tmp"), data)
        with atomic_path(self.spill_to.with_suffix(".index.npy")) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, self.table, allow_pickle=False)
        # Written last: its presence (with the matching fingerprint) marks a complete store.
        write_json(self.spill_to.with_suffix(".json"), {"version": CACHE_VERSION, "fingerprint": fp,
                                                         "geometry": asdict(geometry), "count": self.count,
                                                         "bytes": self.offset})
        return open_store(self.spill_to, fp)

    def abort(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.spill_to.with_suffix(".u8.tmp").unlink(missing_ok=True)


def open_store(stem: Path, fp: str) -> DecodedImages | None:
    """The store saved at ``stem`` (``.json``/``.index.npy``/``.u8``) if its fingerprint is ``fp``."""
    meta_path = stem.with_suffix(".json")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return None
    if meta.get("version") != CACHE_VERSION or meta.get("fingerprint") != fp:
        return None
    try:
        table = np.load(stem.with_suffix(".index.npy"), allow_pickle=False)
        # Copy-on-write: views are writable arrays (torch wants those); the file is never changed.
        flat = np.memmap(stem.with_suffix(".u8"), dtype=np.uint8, mode="c")
    except (OSError, ValueError):
        return None
    if len(table) != meta.get("count") or flat.shape[0] != meta.get("bytes"):
        return None
    return DecodedImages(CacheGeometry(**meta["geometry"]), table, flat=flat, path=stem.with_suffix(".u8"),
                         fingerprint=fp)


def remove_store(stem: Path) -> None:
    for suffix in (".json", ".index.npy", ".u8", ".u8.tmp"):
        stem.with_suffix(suffix).unlink(missing_ok=True)


def disk_free(folder: Path) -> int | None:
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return shutil.disk_usage(probe).free
    except OSError:
        return None


def build_store(index: DatasetIndex, items: Sequence[int], geometry: CacheGeometry, *,
                memory_limit: int, cache_stem: Path | None = None, max_pixels: int | None = None,
                threads: int = 0, log: Callable[[str], None] | None = None) -> DecodedImages:
    """Decode ``items`` of ``index`` once (threads: Pillow releases the GIL while decoding).

    In memory while the arrays take at most ``memory_limit`` bytes; beyond, they move to
    the memory-mapped file at ``cache_stem`` (reused when its fingerprint matches).
    """
    items = [int(i) for i in items]
    fp = fingerprint(index, items, geometry, max_pixels)
    if cache_stem is not None:
        found = open_store(cache_stem, fp)
        if found is not None:
            if log:
                log(f"input cache: reusing {found.path} ({found.nbytes / 2**30:.2f} GiB, {len(found)} images)")
            return found
        remove_store(cache_stem)
    threads = threads or min(32, os.cpu_count() or 1)
    writer = _Writer(memory_limit, cache_stem, len(items))
    decode = _decoder(index, geometry, max_pixels)
    t0 = time.perf_counter()
    try:
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="decode") as pool:
            for start in range(0, len(items), _CHUNK):
                for arr, original, transposed in pool.map(decode, items[start:start + _CHUNK]):
                    writer.add(arr, original, transposed)
        store = writer.finish(geometry, fp)
    except BaseException:
        writer.abort()
        raise
    if log:
        seconds = time.perf_counter() - t0
        log(f"input cache: decoded {len(items)} images once in {seconds:.1f}s "
            f"({len(items) / max(seconds, 1e-9):.0f} img/s, {threads} threads), {geometry.describe()}, "
            f"{store.nbytes / 2**30:.2f} GiB in {store.location}")
    return store

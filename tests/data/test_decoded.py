"""The decoded-image store: geometry, eval pixels, spilling to disk, reuse and invalidation."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

from cascade.data import DataConfig, DataError, EmotionDataset, eval_transform, load_index
from cascade.data.decoded import CacheGeometry, build_store, crop_cache_side, open_store
from cascade.data.transforms import CLIP_MEAN, CLIP_STD, AugmentConfig
from cascade.train.store_source import StoreSource


@pytest.fixture
def folder(tmp_path, save_image):
    root = tmp_path / "imgs"
    sizes = [(90, 60), (60, 90), (40, 40), (120, 45), (70, 50), (50, 71)]
    for i, size in enumerate(sizes):
        save_image(root / ("a" if i % 2 else "b") / f"{i}.png", color=(30 * i, 200 - 20 * i, 90), size=size)
    # a grey-scale and an RGBA image: the store holds what load_rgb makes of them
    Image.fromarray((np.arange(48 * 64) % 251).reshape(48, 64).astype(np.uint8), "L").save(root / "a" / "grey.png")
    rgba = np.zeros((30, 50, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 128
    Image.fromarray(rgba, "RGBA").save(root / "b" / "alpha.png")
    return root


@pytest.fixture
def index(folder):
    return load_index(DataConfig(format="imagefolder", root=str(folder)))


def test_crop_side_leaves_room_for_the_smallest_crop():
    assert crop_cache_side(224, AugmentConfig()) == 290          # 224 / sqrt(0.8 * 3/4), rounded up
    assert crop_cache_side(224, AugmentConfig(scale=(1.0, 1.0), ratio=(1.0, 1.0))) == 224
    assert crop_cache_side(224, AugmentConfig(scale=(0.08, 1.0))) == 448   # at most twice the input


def test_crop_store_keeps_originals_never_enlarges_and_lies_landscape(index):
    items = list(range(len(index)))
    store = build_store(index, items, CacheGeometry("crop", 32, 40), memory_limit=2**30)
    assert store.location == "memory" and len(store) == len(index)
    for i in items:
        im = index.load_image(i)
        h0, w0 = im.size[1], im.size[0]
        assert tuple(store.original_sizes[i]) == (h0, w0)
        v = store.view(i)
        assert v.dtype == np.uint8 and v.shape[2] == 3 and v.shape[0] <= v.shape[1]     # long side across
        assert bool(store.transposed[i]) == (h0 > w0)
        short = min(h0, w0)
        assert min(v.shape[:2]) == min(short, 40) or max(v.shape[:2]) == 3 * 40   # 120x45 is wider than 3:1 at 40
        if short <= 40 and max(h0, w0) <= 120:
            upright = v.transpose(1, 0, 2) if store.transposed[i] else v
            assert np.array_equal(upright, np.asarray(im))                       # stored as decoded


def test_eval_batches_are_bit_identical_to_the_cpu_transform(index):
    items = list(range(len(index)))
    store = build_store(index, items, CacheGeometry("eval", 32, 32), memory_limit=2**30)
    src = StoreSource(store, EmotionDataset(index, items), torch.device("cpu"), image_size=32, mean=CLIP_MEAN,
                      std=CLIP_STD, augment=None)
    batch = next(src.iterate([items]))
    tf = eval_transform(32)
    ref = torch.stack([tf(index.load_image(i)) for i in items])
    assert torch.equal(batch["image"], ref)
    assert batch["label"].tolist() == [r.label for r in index.records]
    assert batch["index"].tolist() == items
    # the batched path (the GPU's) gives the same bits
    src2 = StoreSource(store, EmotionDataset(index, items), torch.device("cpu"), image_size=32, mean=CLIP_MEAN,
                       std=CLIP_STD, augment=None, batched=True)
    assert torch.equal(next(src2.iterate([items]))["image"], ref)


def test_spills_to_disk_past_the_budget_and_is_reused_until_an_image_changes(index, tmp_path, monkeypatch):
    items = list(range(len(index)))
    geo = CacheGeometry("crop", 32, 40)
    in_memory = build_store(index, items, geo, memory_limit=2**30)
    stem = tmp_path / "cache" / "train-crop"
    logs = []
    spilled = build_store(index, items, geo, memory_limit=in_memory.nbytes // 3, cache_stem=stem, log=logs.append)
    assert spilled.path == stem.with_suffix(".u8") and "memory-mapped" in spilled.location
    assert stem.with_suffix(".u8").stat().st_size == in_memory.nbytes
    for i in items:
        assert np.array_equal(spilled.view(i), in_memory.view(i))
    assert np.array_equal(spilled.table, in_memory.table)

    # A second build with the same items and geometry maps the file instead of decoding.
    import cascade.data.decoded as decoded

    def no_decoding(*a, **k):
        raise AssertionError("decoded again")
    monkeypatch.setattr(decoded, "_decoder", no_decoding)
    again = build_store(index, items, geo, memory_limit=0, cache_stem=stem, log=logs.append)
    assert any("reusing" in line for line in logs)
    assert np.array_equal(again.view(2), in_memory.view(2))
    monkeypatch.undo()

    # Another geometry, or a changed image, is a different fingerprint: never the old file.
    assert open_store(stem, decoded.fingerprint(index, items, CacheGeometry("crop", 32, 48), None)) is None
    path = index.records[3].key
    Image.new("RGB", (20, 30), (1, 2, 3)).save(path)
    os.utime(path, ns=(1, 1))
    rebuilt = build_store(index, items, geo, memory_limit=0, cache_stem=stem)
    assert tuple(rebuilt.original_sizes[3]) == (30, 20)
    assert (rebuilt.view(3) == [1, 2, 3]).all()


def test_a_corrupt_image_is_named(index, tmp_path):
    bad = index.records[2].key
    with open(bad, "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DataError, match=rf"{os.path.basename(bad)}: cannot decode for the input cache"):
        build_store(index, list(range(len(index))), CacheGeometry("eval", 16, 16), memory_limit=0,
                    cache_stem=tmp_path / "c" / "x")
    assert list((tmp_path / "c").iterdir()) == []      # the half-written spill file is removed

"""train.input_pipeline: the device pipeline's batches, its choice, and runs trained through it."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image

from cascade.data import DataConfig, EmotionDataset, load_index
from cascade.data.batch_augment import draw_augmentation
from cascade.data.decoded import CacheGeometry, build_store, crop_cache_side
from cascade.data.transforms import CLIP_MEAN, CLIP_STD, AugmentConfig
from cascade.train import train
from cascade.train.batches import epoch_seed
from cascade.train.pipeline import InputPipelineError, choose_pipeline
from cascade.run_config import TrainConfig
from cascade.train.store_source import StoreSource

from .helpers import read_jsonl, tiny_config

SIZES = [(160, 120), (120, 160), (100, 100), (200, 90), (140, 105), (96, 128), (150, 100), (90, 150)]


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i, (w, h) in enumerate(SIZES):
        # smooth colour fields with some texture: resampling differences show up as they would on photos
        base = Image.fromarray(rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC)
        arr = np.clip(np.asarray(base, np.int16) + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8)
        folder = root / ("x" if i % 2 else "y")
        folder.mkdir(exist_ok=True)
        Image.fromarray(arr).save(folder / f"{i}.png")
    return load_index(DataConfig(format="imagefolder", root=str(root)))


def _source(index, aug, side, batched=False, seed=0, size=48):
    items = list(range(len(index)))
    store = build_store(index, items, CacheGeometry("crop", size, side), memory_limit=2**30)
    return StoreSource(store, EmotionDataset(index, items), torch.device("cpu"), image_size=size, mean=CLIP_MEAN,
                       std=CLIP_STD, augment=aug, seed=seed, batched=batched)


def _pixels(x):
    """Normalised images back to 0..255."""
    m, s = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (x * s + m) * 255


def test_crops_match_torchvision_resized_crop(index):
    # Full-resolution store, crop only: the same boxes torchvision would draw give the same pixels
    # (PIL rounds to uint8 between its two passes: within a level or two).
    aug = AugmentConfig(hflip=0.0, brightness=0.0, contrast=0.0, saturation=0.0)
    src = _source(index, aug, side=10_000)
    items = list(range(len(index)))
    ours = _pixels(next(src.iterate([items], epoch=3))["image"])
    d = draw_augmentation([epoch_seed(0, 3, 1 + i) for i in items], src.store.original_sizes[:, 0],
                          src.store.original_sizes[:, 1], aug)
    diffs = []
    for k, i in enumerate(items):
        top, left, h, w = (int(v) for v in d.boxes[k])
        ref = TF.resized_crop(index.load_image(i), top, left, h, w, [48, 48], TF.InterpolationMode.BICUBIC)
        diffs.append(np.abs(np.asarray(ref, np.float32) - ours[k].permute(1, 2, 0).numpy()))
    diffs = np.stack(diffs)
    assert diffs.mean() < 0.25 and np.percentile(diffs, 99) <= 2.0 and diffs.max() <= 8.0


def test_batched_and_per_image_crops_agree(index):
    aug = AugmentConfig(hflip=0.5, hue=0.05)
    side = crop_cache_side(48, aug)
    items = list(range(len(index)))
    a = next(_source(index, aug, side).iterate([items], epoch=1))["image"]
    b = next(_source(index, aug, side, batched=True).iterate([items], epoch=1))["image"]
    diff = (_pixels(a) - _pixels(b)).abs()
    assert diff.mean() < 0.5 and diff.max() <= 8.0


def test_augmentation_is_a_function_of_seed_epoch_and_item(index):
    aug = AugmentConfig(hue=0.1)
    src = _source(index, aug, crop_cache_side(48, aug))
    whole = next(src.iterate([list(range(8))], epoch=2))["image"]
    parts = list(src.iterate([[5, 1], [7]], epoch=2))
    assert torch.equal(parts[0]["image"][0], whole[5]) and torch.equal(parts[0]["image"][1], whole[1])
    assert torch.equal(parts[1]["image"][0], whole[7])
    assert parts[0]["index"].tolist() == [5, 1] and parts[0]["pos"].tolist() == [5, 1]
    other_epoch = next(src.iterate([list(range(8))], epoch=3))["image"]
    assert not torch.equal(other_epoch, whole)
    other_seed = next(_source(index, aug, crop_cache_side(48, aug), seed=1).iterate([list(range(8))], epoch=2))["image"]
    assert not torch.equal(other_seed, whole)


def test_choice_of_pipeline(tmp_path):
    kw = dict(trains_on_images=True, sizes={"train": 1000, "val": 200, "test": 200}, image_size=224,
              cache_dir=tmp_path)
    auto = TrainConfig()
    assert choose_pipeline(auto, total_epochs=8, **kw).kind == "device"
    one = choose_pipeline(auto, total_epochs=1, **kw)
    assert one.kind == "cpu" and "one epoch" in one.reason
    assert choose_pipeline(TrainConfig(input_pipeline="cpu"), total_epochs=8, **kw).kind == "cpu"
    assert choose_pipeline(auto, total_epochs=8, **{**kw, "trains_on_images": False}).kind == "cpu"
    huge = {**kw, "sizes": {"train": 10**9, "val": 0, "test": 0}}
    too_big = choose_pipeline(TrainConfig(input_cache_gb=0.5), total_epochs=8, **huge)
    assert too_big.kind == "cpu" and "train.input_cache_gb=0.5" in too_big.reason
    with pytest.raises(InputPipelineError, match="train.input_pipeline: device: about .* GiB .*input_cache_gb"):
        choose_pipeline(TrainConfig(input_pipeline="device", input_cache_gb=0.5), total_epochs=8, **huge)
    with pytest.raises(ValueError, match="input_pipeline: device"):
        TrainConfig(input_pipeline="device", cache_prefix=True, augment=False)


AUGMENTED = ["train.augment=true", "train.cache_prefix=false", "train.log_every_steps=1"]


@pytest.mark.slow
def test_device_pipeline_run_evaluates_like_the_cpu_transform(tmp_path):
    """Evaluation reads the same pixels either way: ``cascade eval`` (CPU transform) reproduces eval.json."""
    from cascade.evaluate import evaluate_run

    path = train(tiny_config(tmp_path, *AUGMENTED, "train.input_pipeline=device", "run.name=dev"), quiet=True)
    start = read_jsonl(path / "metrics.jsonl")[0]
    assert start["input_pipeline"]["kind"] == "device" and start["frozen_dtype"] == "fp32"
    steps = [r for r in read_jsonl(path / "metrics.jsonl") if r["kind"] == "step"]
    assert all(0 <= r["data_wait"] <= 1 for r in steps)
    saved = json.loads((path / "eval.json").read_text())
    again = evaluate_run(path, "test", write=False)["metrics"]
    assert again["fused"] == saved["test"]["fused"] and again["confusion"] == saved["test"]["confusion"]
    assert not (path / "cache").exists() or not list(Path(path / "cache").iterdir())


@pytest.mark.slow
def test_resume_with_the_device_pipeline_matches_the_uninterrupted_run(tmp_path):
    from safetensors.torch import load_file

    class CrashAt:
        def on_step_end(self, state):
            if state.global_step == 9:
                raise RuntimeError("injected failure")

    common = [*AUGMENTED, "train.input_pipeline=device", "train.save_every_steps=2",
              "train.input_cache_gb=0.0001"]       # spill to the run folder's cache/: resume maps it again
    ref = train(tiny_config(tmp_path, *common, "run.name=ref"), quiet=True)
    with pytest.raises(RuntimeError, match="injected"):
        train(tiny_config(tmp_path, *common, "run.name=crash"), callbacks=[CrashAt()], quiet=True)
    assert list((tmp_path / "crash" / "cache").glob("*.u8"))
    path = train(resume=tmp_path / "crash", quiet=True)
    a, b = json.loads((ref / "eval.json").read_text()), json.loads((path / "eval.json").read_text())
    assert a["val"] == b["val"] and a["test"] == b["test"]
    ta, tb = load_file(str(ref / "checkpoints" / "last.safetensors")), load_file(str(path / "checkpoints" / "last.safetensors"))
    assert all(torch.equal(ta[k], tb[k]) for k in ta)
    assert not list((path / "cache").glob("*.u8"))      # removed when the run finished

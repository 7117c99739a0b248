from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError
from torch.utils.data import DataLoader

from cascade.data import (
    CLIP_MEAN,
    CLIP_STD,
    EmotionDataset,
    distribution_from_label,
    eval_transform,
    load_index,
    make_splits,
    train_transform,
)


@pytest.fixture(scope="module")
def synthetic():
    return load_index({"format": "synthetic", "synthetic": {"num_samples": 24, "image_size": 40}})


def test_item_layout(synthetic):
    splits = make_splits(synthetic)
    ds = EmotionDataset(synthetic, splits["val"], eval_transform(32))
    item = ds[1]
    assert set(item) == {"image", "label", "dist", "index"}
    assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
    assert item["label"].dtype == torch.int64 and item["label"].ndim == 0
    assert item["dist"].dtype == torch.float32 and item["dist"].shape == (6,)
    assert item["index"] == splits["val"][1]
    assert int(item["label"]) == synthetic.records[item["index"]].label
    torch.testing.assert_close(item["dist"].sum(), torch.tensor(1.0))
    assert ds.key(1) == f"synthetic:{splits['val'][1]}"
    np.testing.assert_array_equal(ds.labels, synthetic.labels[splits["val"]])


def test_dataloader_batches(synthetic):
    ds = EmotionDataset(synthetic, None, train_transform(32, augment={"hflip": 1.0, "hue": 0.05}))
    batch = next(iter(DataLoader(ds, batch_size=8, shuffle=False)))
    assert batch["image"].shape == (8, 3, 32, 32)
    assert batch["label"].shape == (8,) and batch["dist"].shape == (8, 6)
    assert batch["index"].tolist() == list(range(8))


def test_label_only_records_get_smoothed_targets(tmp_path, save_image):
    for c in ["a", "b", "c", "d"]:
        save_image(tmp_path / c / "x.png")
    idx = load_index({"format": "imagefolder", "root": str(tmp_path), "label_smoothing": 0.2})
    assert not idx.has_distributions
    np.testing.assert_allclose(idx.records[2].dist, [0.05, 0.05, 0.85, 0.05])
    idx.records[2].dist = None
    item = EmotionDataset(idx, [2], eval_transform(16), label_smoothing=0.2)[0]
    np.testing.assert_allclose(item["dist"].numpy(), [0.05, 0.05, 0.85, 0.05], rtol=1e-6)


def test_distribution_from_label():
    np.testing.assert_array_equal(distribution_from_label(1, 3), [0, 1, 0])
    np.testing.assert_allclose(distribution_from_label(0, 4, 0.4), [0.7, 0.1, 0.1, 0.1])
    with pytest.raises(ValueError):
        distribution_from_label(3, 3)
    with pytest.raises(ValueError):
        distribution_from_label(0, 3, 1.0)


def test_eval_transform_matches_open_clip():
    from open_clip.transform import image_transform

    rng = np.random.default_rng(0)
    im = Image.fromarray(rng.integers(0, 255, (50, 70, 3), dtype=np.uint8))
    ours = eval_transform(32)(im)
    theirs = image_transform(32, is_train=False, mean=CLIP_MEAN, std=CLIP_STD)(im)
    torch.testing.assert_close(ours, theirs)


def test_train_transform_options():
    rng = np.random.default_rng(0)
    im = Image.fromarray(rng.integers(0, 255, (50, 70, 3), dtype=np.uint8))
    torch.testing.assert_close(train_transform(32, augment=False)(im), eval_transform(32)(im))
    torch.manual_seed(0)
    flipped = train_transform(32, augment={"hflip": 1.0, "scale": (1.0, 1.0), "ratio": (1.0, 1.0),
                                           "brightness": 0, "contrast": 0, "saturation": 0})(im)
    assert flipped.shape == (3, 32, 32)
    with pytest.raises(ValidationError, match="blur"):
        train_transform(32, augment={"blur": 1})

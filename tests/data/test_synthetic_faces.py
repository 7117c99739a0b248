from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.neighbors import NearestCentroid

from cascade.data import EMOTION6_CLASSES, DatasetIndex, load_index


def _index(n: int = 60, size: int = 32, seed: int = 0, classes: list[str] | None = None) -> DatasetIndex:
    cfg: dict = {"format": "synthetic", "synthetic": {"num_samples": n, "image_size": size, "seed": seed}}
    if classes is not None:
        cfg["classes"] = classes
    return load_index(cfg)


def _pixels(idx: DatasetIndex, side: int = 16, gray: bool = False) -> np.ndarray:
    out = []
    for i in range(len(idx)):
        im = idx.load_image(i)
        if gray:
            im = im.convert("L")
        out.append(np.asarray(im.resize((side, side)), dtype=np.float32).ravel() / 255.0)
    return np.stack(out)


def test_deterministic_from_seed():
    a, b, c = _index(seed=3), _index(seed=3), _index(seed=4)
    assert [r.label for r in a.records] == [r.label for r in b.records]
    np.testing.assert_array_equal(np.stack([r.dist for r in a.records]), np.stack([r.dist for r in b.records]))
    for i in (0, 17, 59):
        np.testing.assert_array_equal(np.asarray(a.load_image(i)), np.asarray(b.load_image(i)))
    assert not np.array_equal(np.stack([r.dist for r in a.records]), np.stack([r.dist for r in c.records]))
    assert not np.array_equal(np.asarray(a.load_image(0)), np.asarray(c.load_image(0)))


def test_sample_depends_only_on_seed_and_index():
    small, large = _index(n=12), _index(n=300)
    for i in range(12):
        assert small.records[i].label == large.records[i].label
        np.testing.assert_array_equal(small.records[i].dist, large.records[i].dist)
        np.testing.assert_array_equal(np.asarray(small.load_image(i)), np.asarray(large.load_image(i)))


def test_survives_pickling_for_dataloader_workers():
    idx = _index(n=10)
    clone = pickle.loads(pickle.dumps(idx))
    np.testing.assert_array_equal(np.asarray(clone.load_image(7)), np.asarray(idx.load_image(7)))


def test_distributions_valid_and_classes_balanced():
    idx = _index(n=600, size=16)
    assert idx.classnames == list(EMOTION6_CLASSES)
    assert idx.has_distributions
    dists = np.stack([r.dist for r in idx.records])
    assert np.all(dists >= 0)
    np.testing.assert_allclose(dists.sum(axis=1), 1.0)
    np.testing.assert_array_equal(dists.argmax(axis=1), idx.labels)
    assert set(idx.class_counts().values()) == {100}
    assert 0.5 < dists.max(axis=1).mean() < 0.95, "labels should be mixtures, not one-hot"
    uneven = _index(n=62, size=16)
    counts = list(uneven.class_counts().values())
    assert max(counts) - min(counts) <= 1


@pytest.mark.parametrize("size", [16, 64, 224])
def test_renders_at_any_size(size):
    idx = _index(n=6, size=size)
    im = idx.load_image(2)
    assert im.mode == "RGB" and im.size == (size, size)
    assert idx.synthetic is not None
    assert idx.synthetic.render(2, size=48).size == (48, 48)


def test_classes_are_visually_separable():
    idx = _index(n=360, size=32)
    y = idx.labels
    colour = _pixels(idx)
    acc = NearestCentroid().fit(colour[:240], y[:240]).score(colour[240:], y[240:])
    assert acc > 0.8
    # The face itself, not only the background hue, must carry the class.
    gray = _pixels(idx, gray=True)
    acc_gray = NearestCentroid().fit(gray[:240], y[:240]).score(gray[240:], y[240:])
    assert acc_gray > 0.35


@pytest.mark.parametrize("classes", [["calm", "excited", "bored"], ["positive", "negative"]])
def test_custom_classes_get_distinct_prototypes(classes):
    idx = _index(n=30 * len(classes), size=32, classes=classes)
    assert idx.classnames == classes
    protos = idx.synthetic.prototypes
    assert protos.shape[0] == len(classes)
    assert len({tuple(np.round(p, 6)) for p in protos}) == len(classes)
    x, y = _pixels(idx), idx.labels
    half = len(idx) // 2
    assert NearestCentroid().fit(x[:half], y[:half]).score(x[half:], y[half:]) > 0.8
    again = _index(n=30 * len(classes), size=32, classes=classes)
    np.testing.assert_array_equal(again.synthetic.prototypes, protos)


@pytest.mark.slow
def test_small_torch_model_learns_through_the_dataset_pipeline():
    import torch
    from torch.utils.data import DataLoader

    from cascade.data import EmotionDataset, eval_transform, make_splits

    torch.manual_seed(0)
    idx = _index(n=480, size=64)
    splits = make_splits(idx, (0.75, 0.25, 0.0), seed=0)

    def tensors(part: str) -> tuple[torch.Tensor, torch.Tensor]:
        batch = next(iter(DataLoader(EmotionDataset(idx, splits[part], eval_transform(24)), batch_size=1000)))
        return batch["image"].flatten(1), batch["label"]

    (xtr, ytr), (xva, yva) = tensors("train"), tensors("val")
    model = torch.nn.Linear(xtr.shape[1], idx.num_classes)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-2)
    for _ in range(150):
        loss = torch.nn.functional.cross_entropy(model(xtr), ytr)
        opt.zero_grad()
        loss.backward()
        opt.step()
    accuracy = (model(xva).argmax(1) == yva).float().mean().item()
    assert accuracy > 0.6

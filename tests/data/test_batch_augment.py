"""The batched augmentation draws what torchvision's train transform draws, and computes it."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from PIL import Image
from scipy.stats import ks_2samp
from torchvision import transforms as T

from cascade.data.batch_augment import (DRAWS, color_jitter, crop_boxes, draw_augmentation, hsv_to_rgb, normalise,
                                        resample_batch, resample_weights, rgb_to_hsv, uniforms)
from cascade.data.transforms import AugmentConfig


def test_uniforms_are_a_pure_function_of_key_and_column():
    a = uniforms([5, 6, 7])
    assert a.shape == (3, DRAWS) and ((a >= 0) & (a < 1)).all()
    assert np.array_equal(uniforms([7, 5])[0], a[2])          # batch order and company do not matter
    assert not np.array_equal(a[0], a[1])
    big = uniforms(np.arange(20000))
    assert abs(big.mean() - 0.5) < 0.01 and abs(big.var() - 1 / 12) < 0.005
    assert abs(np.corrcoef(big[:, 0], big[:, 1])[0, 1]) < 0.03


def _torchvision_boxes(width, height, n, scale, ratio):
    torch.manual_seed(0)
    im = Image.new("RGB", (width, height))
    return np.array([T.RandomResizedCrop.get_params(im, list(scale), list(ratio)) for _ in range(n)])


@pytest.mark.parametrize("size,scale", [((640, 480), (0.8, 1.0)), ((300, 200), (0.08, 1.0)), ((480, 640), (0.3, 0.9))])
def test_crop_scale_and_aspect_follow_random_resized_crop(size, scale):
    w, h = size
    n = 4000
    ratio = (3 / 4, 4 / 3)
    ours = crop_boxes(uniforms(np.arange(n) * 3 + 11), np.full(n, h), np.full(n, w), scale, ratio)
    ref = _torchvision_boxes(w, h, n, scale, ratio)
    for boxes in (ours, ref):
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
        assert (boxes[:, 0] + boxes[:, 2] <= h).all() and (boxes[:, 1] + boxes[:, 3] <= w).all()
    area = lambda b: b[:, 2] * b[:, 3] / (w * h)  # noqa: E731
    aspect = lambda b: np.log(b[:, 3] / b[:, 2])  # noqa: E731
    assert ks_2samp(area(ours), area(ref)).pvalue > 1e-3
    assert ks_2samp(aspect(ours), aspect(ref)).pvalue > 1e-3
    # Where the crop sits: the centre's distribution matches too.
    assert ks_2samp(ours[:, 0] + ours[:, 2] / 2, ref[:, 0] + ref[:, 2] / 2).pvalue > 1e-3
    assert area(ours).mean() == pytest.approx(area(ref).mean(), abs=0.01)


def test_a_crop_that_never_fits_falls_back_like_torchvision():
    # 4:1 is wider than any allowed ratio: every try fails, the whole height at 4:3, centred.
    n = 50
    ours = crop_boxes(uniforms(np.arange(n)), np.full(n, 100), np.full(n, 400), (0.8, 1.0), (3 / 4, 4 / 3))
    ref = _torchvision_boxes(400, 100, n, (0.8, 1.0), (3 / 4, 4 / 3))
    assert np.unique(ours, axis=0).tolist() == np.unique(ref, axis=0).tolist() == [[0, 133, 100, 133]]


def test_flip_rate_and_jitter_ranges():
    aug = AugmentConfig(hflip=0.3, brightness=0.2, contrast=0.1, saturation=0.4, hue=0.05)
    n = 20000
    d = draw_augmentation(np.arange(n), np.full(n, 480), np.full(n, 640), aug)
    assert d.flip.mean() == pytest.approx(0.3, abs=4 * math.sqrt(0.3 * 0.7 / n))
    for j, (lo, hi) in enumerate([(0.8, 1.2), (0.9, 1.1), (0.6, 1.4), (-0.05, 0.05)]):
        f = d.factors[:, j]
        assert f.min() >= lo and f.max() <= hi
        assert f.min() < lo + 0.01 * (hi - lo) and f.max() > hi - 0.01 * (hi - lo)   # the whole range is used
        assert f.mean() == pytest.approx((lo + hi) / 2, abs=0.01 * (hi - lo) + 1e-3)
    assert (np.sort(d.order, axis=1) == np.arange(4)).all()
    # Every op comes first about a quarter of the time (the order is a uniform permutation).
    assert np.bincount(d.order[:, 0], minlength=4) / n == pytest.approx([0.25] * 4, abs=0.02)
    plain = draw_augmentation(np.arange(10), np.full(10, 48), np.full(10, 64), AugmentConfig(hflip=0.0, hue=0.0))
    assert not plain.flip.any() and (plain.factors[:, 3] == 0).all()
    # brightness larger than 1 cannot make a negative factor (torchvision clips the range at 0)
    strong = draw_augmentation(np.arange(2000), np.full(2000, 48), np.full(2000, 64), AugmentConfig(brightness=1.5))
    assert strong.factors[:, 0].min() >= 0


def test_resample_weights_match_interpolate_antialias():
    torch.manual_seed(0)
    img = torch.rand(1, 3, 37, 53) * 255
    # Shrink a window of 30x41 pixels and enlarge one of 9x12 to 16x16.
    for (y0, h, x0, w) in [(4, 30, 7, 41), (20, 9, 30, 12)]:
        ref = F.interpolate(img[:, :, y0:y0 + h, x0:x0 + w], size=(16, 16), mode="bicubic", antialias=True)
        rows = resample_weights(torch.tensor([y0]), torch.tensor([h]), 16, 37)
        cols = resample_weights(torch.tensor([x0]), torch.tensor([w]), 16, 53)
        assert torch.allclose(rows.sum(-1), torch.ones(1, 16))
        out = resample_batch(img.permute(0, 2, 3, 1), rows, cols)
        torch.testing.assert_close(out, ref, atol=1e-3, rtol=1e-4)


def _image(seed=0, size=(5, 3, 20, 24)):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(size, generator=g)


def test_hsv_round_trip_and_hue_shift_match_torchvision():
    img = _image(1)
    img[0, :, :2] = 0.5          # grey pixels: no hue
    torch.testing.assert_close(hsv_to_rgb(rgb_to_hsv(img)), img, atol=1e-5, rtol=0)
    order = torch.tensor([[3, 0, 1, 2]] * 5)
    for shift in (-0.3, 0.07, 0.5):
        factors = torch.tensor([[1.0, 1.0, 1.0, shift]] * 5)
        ours = color_jitter(img, order, factors, (False, False, False, True))
        torch.testing.assert_close(ours, TF.adjust_hue(img, shift), atol=2e-5, rtol=0)


def test_color_jitter_applies_each_images_ops_in_its_order():
    img = _image(2)
    g = torch.Generator().manual_seed(3)
    order = torch.stack([torch.randperm(4, generator=g) for _ in range(5)])
    factors = torch.stack([torch.tensor([0.7, 1.3, 0.5, 0.1]), torch.tensor([1.2, 0.8, 1.6, -0.2]),
                           torch.tensor([1.0, 1.0, 1.0, 0.0]), torch.tensor([0.9, 1.1, 0.95, 0.3]),
                           torch.tensor([1.4, 0.6, 1.2, -0.45])])
    ops = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
    ours = color_jitter(img, order, factors, (True, True, True, True))
    for b in range(5):
        ref = img[b]
        for op in order[b].tolist():
            ref = ops[op](ref, float(factors[b, op]))
        torch.testing.assert_close(ours[b], ref, atol=3e-5, rtol=0, msg=f"image {b}, order {order[b].tolist()}")
    # Disabled ops are skipped, whatever factor was drawn for them.
    only_b = color_jitter(img, order, factors, (True, False, False, False))
    for b in range(5):
        torch.testing.assert_close(only_b[b], TF.adjust_brightness(img[b], float(factors[b, 0])), atol=1e-6, rtol=0)


def test_normalise_is_transforms_normalize():
    img = _image(4)
    mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
    ref = torch.stack([T.Normalize(mean, std)(x) for x in img])
    assert torch.equal(normalise(img, mean, std), ref)


# ---- the strong view of label-free training, in both input pipelines ----------------------
STRONG_SIZE = 32


@pytest.fixture(scope="module")
def two_photos(tmp_path_factory):
    """Two textured colour images (a gradient and a checkerboard), one per class folder."""
    from cascade.data import DataConfig, load_index

    root = tmp_path_factory.mktemp("strong")
    yy, xx = np.mgrid[0:64, 0:80]
    grad = np.stack([xx * 3, yy * 4, 255 - xx * 2], -1)
    check = (((yy // 8) + (xx // 8)) % 2)[..., None] * np.array([200, 60, 30]) + 30
    for name, arr in (("a", grad), ("b", check)):
        (root / name).mkdir()
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(root / name / "0.png")
    return load_index(DataConfig(format="imagefolder", root=str(root)))


def _strong_stats(images: torch.Tensor) -> dict[str, np.ndarray]:
    """Per image: brightness, contrast, colourfulness, sharpness (0..255 pixel space)."""
    from cascade.data.transforms import CLIP_MEAN, CLIP_STD

    m, s = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    x = ((images * s + m) * 255).round()     # whole levels: the CPU path's PIL images have nothing finer
    spread = x.max(1).values - x.min(1).values
    return {"brightness": x.mean((1, 2, 3)).numpy(), "contrast": x.std((1, 2, 3)).numpy(),
            "colour": spread.mean((1, 2)).numpy(), "grey": (spread.amax((1, 2)) < 2).float().numpy(),
            "sharpness": (x[..., 1:] - x[..., :-1]).abs().mean((1, 2, 3)).numpy()}


def _draw_views(two_photos, aug, pipeline: str, epochs: int, batched: bool = False) -> dict[str, np.ndarray]:
    from cascade.data import EmotionDataset
    from cascade.data.decoded import CacheGeometry, build_store, crop_cache_side
    from cascade.data.transforms import CLIP_MEAN, CLIP_STD, train_transform
    from cascade.train.data import ImageSource
    from cascade.train.store_source import StoreSource

    items = [0, 1]
    dataset = EmotionDataset(two_photos, items)
    if pipeline == "cpu":
        src = ImageSource(dataset, train_transform(STRONG_SIZE, augment=aug), seed=0, random_aug=True)
    else:
        store = build_store(two_photos, items, CacheGeometry("crop", STRONG_SIZE, crop_cache_side(STRONG_SIZE, aug)),
                            memory_limit=2**30)
        src = StoreSource(store, dataset, torch.device("cpu"), image_size=STRONG_SIZE, mean=CLIP_MEAN, std=CLIP_STD,
                          augment=aug, seed=0, batched=batched)
    images = torch.cat([next(iter(src.iterate([items], epoch=e)))["image"] for e in range(epochs)])
    return _strong_stats(images)


def test_strong_view_draws_follow_its_settings():
    from cascade.data.transforms import strong_view

    aug = strong_view()
    n = 20000
    d = draw_augmentation(np.arange(n) * 7 + 3, np.full(n, 480), np.full(n, 640), aug)
    assert d.jitter_on.mean() == pytest.approx(0.8, abs=0.015)
    assert d.grey.mean() == pytest.approx(0.2, abs=0.015)
    blurred = d.blur_sigma[d.blur_sigma > 0]
    assert len(blurred) / n == pytest.approx(0.5, abs=0.015)
    assert ks_2samp(blurred, np.random.default_rng(0).uniform(0.1, 2.0, 5000)).pvalue > 1e-3
    assert np.all(d.factors[:, 3] >= -0.1) and np.all(d.factors[:, 3] <= 0.1)
    assert np.all(d.factors[:, :3] >= 0.6) and np.all(d.factors[:, :3] <= 1.4)
    area = d.boxes[:, 2] * d.boxes[:, 3] / (480 * 640)
    assert area.min() >= 0.19 and area.max() <= 1.0
    # The plain augmentation's draws are unchanged by the extra columns: none of the strong ops.
    plain = draw_augmentation(np.arange(10), np.full(10, 48), np.full(10, 64), AugmentConfig())
    assert plain.jitter_on is None and plain.grey is None and plain.blur_sigma is None


@pytest.mark.slow
@pytest.mark.parametrize("batched", [False, True])
def test_strong_view_has_the_same_distribution_in_both_pipelines(two_photos, batched):
    from cascade.data.transforms import strong_view

    aug = strong_view()
    cpu = _draw_views(two_photos, aug, "cpu", epochs=150)
    dev = _draw_views(two_photos, aug, "device", epochs=150, batched=batched)
    for name in ("brightness", "contrast", "colour", "sharpness"):
        assert ks_2samp(cpu[name], dev[name]).pvalue > 1e-3, name
    assert cpu["grey"].mean() == pytest.approx(dev["grey"].mean(), abs=0.08)
    assert 0.1 < dev["grey"].mean() < 0.35


@pytest.mark.slow
def test_the_comparison_sees_a_different_strong_view(two_photos):
    # The same statistics tell a weaker view apart: no blur and no grayscale on the device side.
    from cascade.data.transforms import strong_view

    cpu = _draw_views(two_photos, strong_view(), "cpu", epochs=150)
    weaker = strong_view().model_copy(update={"grayscale": 0.0, "blur_sigma": None})
    dev = _draw_views(two_photos, weaker, "device", epochs=150)
    assert min(ks_2samp(cpu[k], dev[k]).pvalue for k in ("colour", "sharpness")) < 1e-3

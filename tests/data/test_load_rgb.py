from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cascade.data import load_rgb


def _px(im: Image.Image, xy: tuple[int, int] = (2, 2)) -> np.ndarray:
    assert im.mode == "RGB"
    return np.array(im.getpixel(xy), dtype=int)


@pytest.mark.parametrize("ext", ["jpg", "tif"])
def test_cmyk(tmp_path, ext):
    p = tmp_path / f"cmyk.{ext}"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(p)
    assert Image.open(p).mode == "CMYK"
    np.testing.assert_allclose(_px(load_rgb(p)), [255, 0, 0], atol=6)


def test_rgba_composited_on_white(tmp_path):
    p = tmp_path / "rgba.png"
    im = Image.new("RGBA", (8, 8), (255, 0, 0, 128))
    im.putpixel((0, 0), (0, 0, 255, 0))
    im.save(p)
    out = load_rgb(p)
    np.testing.assert_allclose(_px(out), [255, 127, 127], atol=1)
    np.testing.assert_array_equal(_px(out, (0, 0)), [255, 255, 255])


def test_palette_with_transparency(tmp_path):
    p = tmp_path / "pal.png"
    im = Image.new("P", (8, 8), 0)
    im.putpalette([0, 200, 0, 10, 10, 10] + [0] * 762)
    im.putpixel((0, 0), 1)
    im.info["transparency"] = 1
    im.save(p, transparency=1)
    assert Image.open(p).mode == "P"
    out = load_rgb(p)
    np.testing.assert_array_equal(_px(out), [0, 200, 0])
    np.testing.assert_array_equal(_px(out, (0, 0)), [255, 255, 255])


def test_palette_without_transparency(tmp_path):
    p = tmp_path / "pal.gif"
    im = Image.new("P", (8, 8), 3)
    im.putpalette([0, 0, 0] * 3 + [12, 34, 56] + [0] * 756)
    im.save(p)
    np.testing.assert_array_equal(_px(load_rgb(p)), [12, 34, 56])


@pytest.mark.parametrize(
    "mode,value,expected",
    [("L", 100, [100, 100, 100]), ("LA", (100, 0), [255, 255, 255]), ("LA", (100, 255), [100, 100, 100]),
     ("1", 1, [255, 255, 255])],
)
def test_grayscale_modes(tmp_path, mode, value, expected):
    p = tmp_path / f"g_{mode}.png"
    Image.new(mode, (8, 8), value).save(p)
    np.testing.assert_array_equal(_px(load_rgb(p)), expected)


@pytest.mark.parametrize("ext", ["png", "tif"])
def test_sixteen_bit_scaled_not_clipped(tmp_path, ext):
    values = np.array([[0, 1000, 257 * 100, 32768, 65535]], dtype=np.uint16).repeat(3, axis=0)
    p = tmp_path / f"deep.{ext}"
    Image.fromarray(values).save(p)
    assert Image.open(p).mode.startswith("I")
    out = np.asarray(load_rgb(p))
    assert out.dtype == np.uint8 and out.shape == (3, 5, 3)
    np.testing.assert_array_equal(out[1, :, 0], [0, 4, 100, 128, 255])
    assert np.all(out[..., 0] == out[..., 2])


def test_exif_orientation_applied(tmp_path):
    base = Image.new("RGB", (40, 20), (255, 0, 0))
    base.paste((0, 0, 255), (20, 0, 40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    p = tmp_path / "rot.jpg"
    base.save(p, exif=exif, quality=95)
    raw = Image.open(p)
    assert raw.size == (40, 20)
    out = load_rgb(p)
    assert out.size == (20, 40)
    np.testing.assert_allclose(_px(out, (10, 5)), [255, 0, 0], atol=12)
    np.testing.assert_allclose(_px(out, (10, 35)), [0, 0, 255], atol=12)

    exif[0x0112] = 3
    p3 = tmp_path / "rot180.jpg"
    base.save(p3, exif=exif, quality=95)
    out3 = load_rgb(p3)
    assert out3.size == (40, 20)
    np.testing.assert_allclose(_px(out3, (5, 10)), [0, 0, 255], atol=12)


def test_result_is_detached_from_file(tmp_path):
    p = tmp_path / "x.png"
    Image.new("RGB", (4, 4), (1, 2, 3)).save(p)
    out = load_rgb(p)
    p.unlink()
    np.testing.assert_array_equal(_px(out, (1, 1)), [1, 2, 3])

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cascade.data import DataError, check_image, load_index, load_rgb

CLASSES = ["anger", "joy", "sadness"]
GOOD = [("good/a.png", "anger", (0.8, 0.1, 0.1)), ("good/b.png", "joy", (0.1, 0.8, 0.1)),
        ("good/c.png", "sadness", (0.1, 0.1, 0.8))]
BAD_ROW = 4


def _jpeg_bytes(size: int = 64) -> bytes:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _write(path: Path, data: bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return str(path.relative_to(path.parents[1]))


def _corrupt(tmp: Path) -> tuple[str, str, tuple]:
    data = b"\xff\xd8\xff\xe0" + bytes(np.random.default_rng(1).integers(0, 255, 400, dtype=np.uint8))
    return _write(tmp / "bad" / "corrupt.jpg", data), "joy", (0.1, 0.8, 0.1)


def _truncated(tmp: Path) -> tuple[str, str, tuple]:
    data = _jpeg_bytes()
    return _write(tmp / "bad" / "trunc.jpg", data[: len(data) // 2]), "joy", (0.1, 0.8, 0.1)


def _zero(tmp: Path) -> tuple[str, str, tuple]:
    return _write(tmp / "bad" / "zero.jpg", b""), "joy", (0.1, 0.8, 0.1)


def _text(tmp: Path) -> tuple[str, str, tuple]:
    return _write(tmp / "bad" / "text.jpg", b"this is not an image\n" * 20), "joy", (0.1, 0.8, 0.1)


def _bomb(side: int):
    def make(tmp: Path) -> tuple[str, str, tuple]:
        buf = io.BytesIO()
        Image.new("RGB", (side, side), (9, 9, 9)).save(buf, "PNG")
        return _write(tmp / "bad" / f"bomb{side}.png", buf.getvalue()), "joy", (0.1, 0.8, 0.1)

    return make


def _missing(tmp: Path) -> tuple[str, str, tuple]:
    return "bad/nowhere.png", "joy", (0.1, 0.8, 0.1)


def _fine(label: str, dist: tuple):
    def make(tmp: Path) -> tuple[str, str, tuple]:
        buf = io.BytesIO()
        Image.new("RGB", (20, 20), (1, 2, 3)).save(buf, "PNG")
        return _write(tmp / "bad" / "fine.png", buf.getvalue()), label, dist

    return make


def _duplicate(tmp: Path) -> tuple[str, str, tuple]:
    return GOOD[1][0], "joy", (0.1, 0.8, 0.1)


# (maker, reason regex, field, whether the key is the image rather than the manifest)
CASES = {
    "corrupt": (_corrupt, r"unreadable image|not a readable image|truncated", None),
    "truncated_jpeg": (_truncated, r"truncated", None),
    "zero_byte": (_zero, r"empty file \(0 bytes\)", None),
    "text_named_jpg": (_text, r"not a readable image", None),
    "bomb_over_2x_limit": (_bomb(64), r"decompression-bomb", None),
    "bomb_between_1x_and_2x": (_bomb(40), r"decompression-bomb", None),
    "missing_file": (_missing, r"missing file", None),
    "unknown_label": (_fine("happy", (0.1, 0.8, 0.1)), r"unknown label 'happy'", "label"),
    "negative_value": (_fine("joy", (0.5, 0.6, -0.1)), r"negative value -0.1", "sadness"),
    "off_by_more_than_tolerance": (_fine("joy", (0.2, 0.8, 0.1)), r"sums to 1\.1, more than dist_tolerance", None),
    "duplicate_path": (_duplicate, r"duplicate path \(first listed at row 2\)", None),
}


def _manifest(tmp: Path, bad: tuple[str, str, tuple], write_table, save_image) -> Path:
    for rel, _, _ in GOOD:
        save_image(tmp / rel)
    rows = [[rel, lab, *d] for rel, lab, d in [*GOOD, bad]]
    return write_table(tmp / "lists" / "manifest.csv", ["path", "label", *CLASSES], [[f"../{r[0]}", *r[1:]] for r in rows])


def _cfg(manifest: Path, on_bad: str, name: str) -> dict:
    cfg = {"format": "manifest", "root": str(manifest), "classes": CLASSES, "on_bad": on_bad}
    if name.startswith("bomb"):
        cfg["max_image_pixels"] = 1000
    return cfg


@pytest.mark.parametrize("name", list(CASES))
def test_bad_row_is_skipped_and_reported(tmp_path, name, write_table, save_image):
    maker, reason, field = CASES[name]
    manifest = _manifest(tmp_path, maker(tmp_path), write_table, save_image)
    idx = load_index(_cfg(manifest, "skip", name))

    assert len(idx) == 3
    assert [r.key for r in idx.records] == [str(tmp_path / rel) for rel, _, _ in GOOD]
    assert len(idx.report.bad) == 1, idx.report.bad
    item = idx.report.bad[0]
    assert item.row == BAD_ROW
    assert re.search(reason, item.reason), item.reason
    if field is not None:
        assert item.field == field
    blob = json.loads(idx.report.to_json())
    assert blob["bad"][0]["row"] == BAD_ROW and blob["num_kept"] == 3 and blob["num_bad"] == 1


@pytest.mark.parametrize("name", list(CASES))
def test_bad_row_raises_naming_file_and_row(tmp_path, name, write_table, save_image):
    maker, reason, _ = CASES[name]
    manifest = _manifest(tmp_path, maker(tmp_path), write_table, save_image)
    with pytest.raises(DataError) as info:
        load_index(_cfg(manifest, "error", name))
    msg = str(info.value)
    assert isinstance(info.value, ValueError)
    assert str(manifest) in msg
    assert f"row {BAD_ROW}" in msg
    assert re.search(reason, msg)
    assert info.value.report is not None and len(info.value.report.bad) == 1


def test_within_tolerance_renormalises_with_warning(tmp_path, write_table, save_image):
    manifest = _manifest(tmp_path, _fine("joy", (0.1, 0.815, 0.1))(tmp_path), write_table, save_image)
    idx = load_index(_cfg(manifest, "error", "tolerance"))
    assert len(idx) == 4 and not idx.report.bad
    np.testing.assert_allclose(idx.records[3].dist, np.array([0.1, 0.815, 0.1]) / 1.015)
    assert any(f"row {BAD_ROW}" in w and "renormalised" in w for w in idx.report.warnings)


def test_report_json_written(tmp_path, write_table, save_image):
    manifest = _manifest(tmp_path, _zero(tmp_path), write_table, save_image)
    idx = load_index(_cfg(manifest, "skip", "zero"))
    out = idx.report.write(tmp_path / "run" / "data_report.json")
    blob = json.loads(out.read_text())
    assert blob["counts_per_class"] == {"anger": 1, "joy": 1, "sadness": 1}
    assert blob["num_scanned"] == 4
    assert blob["bad"] == [{"key": str(tmp_path / "bad" / "zero.jpg"), "reason": "empty file (0 bytes)",
                            "row": 4, "field": None, "file": None}]
    assert "row_convention" in blob and isinstance(blob["warnings"], list)


def test_imagefolder_bad_files_and_scoped_pixel_limit(tmp_path, save_image):
    save_image(tmp_path / "a" / "ok.png")
    save_image(tmp_path / "b" / "ok.png")
    (tmp_path / "b" / "broken.jpg").write_bytes(b"GIF89a nonsense")
    save_image(tmp_path / "a" / "huge.png", size=(50, 50))
    before = Image.MAX_IMAGE_PIXELS
    idx = load_index({"format": "imagefolder", "root": str(tmp_path), "on_bad": "skip", "max_image_pixels": 2000})
    assert Image.MAX_IMAGE_PIXELS == before
    reasons = {Path(b.key).name: b.reason for b in idx.report.bad}
    assert set(reasons) == {"broken.jpg", "huge.png"}
    assert "decompression-bomb" in reasons["huge.png"]
    assert idx.report.counts_per_class == {"a": 1, "b": 1}
    with pytest.raises(DataError, match="broken.jpg"):
        load_index({"format": "imagefolder", "root": str(tmp_path), "max_image_pixels": 2000})


def test_load_rgb_enforces_the_limit(tmp_path, save_image):
    p = save_image(tmp_path / "x.png", size=(50, 50))
    with pytest.raises(Image.DecompressionBombError):
        load_rgb(p, max_pixels=2000)
    assert load_rgb(p, max_pixels=2500).size == (50, 50)
    assert check_image(p) is None


def test_everything_bad_raises_even_when_skipping(tmp_path, write_table):
    manifest = write_table(tmp_path / "m.csv", ["path", "label"], [["a.png", "x"], ["b.png", "y"]])
    with pytest.raises(DataError, match="no usable items"):
        load_index({"format": "manifest", "root": str(manifest), "on_bad": "skip"})


def test_malformed_rows(tmp_path, write_table, save_image):
    save_image(tmp_path / "a.png")
    save_image(tmp_path / "b.png")
    manifest = write_table(
        tmp_path / "m.csv",
        ["path", "anger", "joy"],
        [["a.png", "0.5", "0.5"], ["b.png", "half", "0.5"], ["", "0.5", "0.5"], ["b.png", "0.5"]],
    )
    idx = load_index({"format": "manifest", "root": str(manifest), "classes": ["anger", "joy"], "on_bad": "skip"})
    by_row = {b.row: b for b in idx.report.bad}
    assert by_row[2].field == "anger" and "not a number" in by_row[2].reason
    assert by_row[3].field == "path" and by_row[3].reason == "empty path"
    assert "expected 3 fields, got 2" in by_row[4].reason
    assert len(idx) == 1

"""`cascade explain` end to end, and the explanation grid figure (analysis.explain_figure)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from support.browser import needs_browser
from support.cli import cli
from support.threads import _one_thread  # noqa: F401 (autouse fixture)


def face(path, colour=(205, 40, 40), size=(90, 70)):
    Image.new("RGB", size, colour).save(path)
    return path


def test_overlay_blends_image_and_colour_scale():
    from analysis.explain_figure import colour_lut, overlay

    img = np.full((4, 4, 3), 100, dtype=np.uint8)
    heat = np.linspace(0, 1, 16).reshape(4, 4)
    np.testing.assert_array_equal(overlay(img, heat, 0.0), img)
    lut = colour_lut("Turbo")
    full = overlay(img, heat, 1.0)
    np.testing.assert_array_equal(full[0, 0], lut[0])
    np.testing.assert_array_equal(full[3, 3], lut[255])
    half = overlay(img, heat, 0.5).astype(int)
    assert np.abs(half - (img.astype(int) + full.astype(int)) / 2).max() <= 1
    with pytest.raises(ValueError, match="opacity"):
        overlay(img, heat, 1.5)
    with pytest.raises(ValueError, match="differ in size"):
        overlay(img, heat[:2], 0.5)


def test_explain_grid_of_a_run(synthetic_run):
    from analysis.explain_figure import explain_grid

    fig, explained = explain_grid(synthetic_run, 3)
    rel = explained.relevance
    assert len(explained.names) == 3 and explained.images.shape == (3, 64, 64, 3)
    assert explained.names[0].startswith("synthetic:") and explained.random_weights
    images = [t for t in fig.data if t.type == "image"]
    assert len(images) == 3 * (len(rel.names) + 1)
    text = " ".join(a.text for a in fig.layout.annotations)
    assert "stage 1<br>blocks 1-4" in text and "fused" in text and "RANDOM weights" in text
    assert f"explains: {rel.target_names[0]}" in text and "prompts" in text
    # one validation image per class first
    from analysis.features import load_run

    run = load_run(synthetic_run)
    labels = [int(run.index.labels[run.index.keys.index(n)]) for n in explained.names]
    assert len(set(labels)) == 3


@needs_browser
@pytest.mark.slow
def test_cli_writes_figure_and_maps_and_skips_bad_images(synthetic_run, tmp_path, capsys):
    good = face(tmp_path / "red face.png")
    other = face(tmp_path / "blue.jpg", (40, 60, 200), (64, 64))
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    out = tmp_path / "fig" / "explain.pdf"
    rc = cli("explain", "--run", synthetic_run, good, bad, other, tmp_path / "missing.png", "--out", out,
             "--target", "joy", "--checkpoint", "last")
    captured = capsys.readouterr()
    assert rc == 1, captured.err                    # written, but two inputs were skipped
    assert "broken.jpg: cannot read image" in captured.err and "missing.png" in captured.err
    assert "red face.png" in captured.out and "joy" in captured.out
    assert out.read_bytes().startswith(b"%PDF")
    with np.load(out.with_suffix(".npz"), allow_pickle=False) as z:
        assert z["maps"].shape == (5, 2, 4, 4) and z["images"].shape == (2, 64, 64, 3)
        assert z["image_names"].tolist() == [str(good), str(other)]
        assert z["target_names"].tolist() == ["joy", "joy"]
        assert z["map_names"].tolist()[-1] == "fused" and bool(z["random_weights"])
        assert str(z["score"]) == "centered"
        np.testing.assert_allclose(z["maps"].reshape(5, 2, -1).max(-1), 1.0, atol=1e-6)


def test_cli_errors(synthetic_run, tmp_path, capsys):
    good = face(tmp_path / "a.png")
    rc = cli("explain", "--run", synthetic_run, good, "--out", tmp_path / "x.svg", "--target", "bliss")
    assert rc == 2 and "unknown class 'bliss'" in capsys.readouterr().err
    bad = tmp_path / "b.jpg"
    bad.write_bytes(b"nope")
    rc = cli("explain", "--run", synthetic_run, bad, "--out", tmp_path / "y.svg")
    err = capsys.readouterr().err
    assert rc == 2 and "no image could be read" in err and "b.jpg" in err
    assert not (tmp_path / "y.svg").exists() and not (tmp_path / "y.npz").exists()
    rc = cli("explain", "--run", synthetic_run, good, "--out", tmp_path / "z.txt")
    assert rc == 2 and "--out" in capsys.readouterr().err


def test_explain_is_registered():
    from cascade.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["explain", "--run", "r", "a.jpg", "b.png", "--out", "f.pdf", "--target", "joy"])
    assert args.images == ["a.jpg", "b.png"] and args.target == "joy" and args.checkpoint == "best"
    assert callable(args.func)

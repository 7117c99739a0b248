"""format: webdataset — tar shards read through an index: targets, splits, bad samples, URLs, workers."""
from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
from PIL import Image

from cascade.data import DataError, EmotionDataset, load_index, resolve_splits
from cascade.data.config import DataConfig

CLASSES = ["anger", "joy", "sadness"]


def _png(seed: int, size=(20, 16)) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB").save(buf, format="PNG")
    return buf.getvalue()


def write_tar(path: Path, samples: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        w = wds.TarWriter(fh, encoder=False, mtime=0)
        for s in samples:
            w.write({k: json.dumps(v).encode() if k == "json" and not isinstance(v, bytes) else v
                     for k, v in s.items()})
        w.close()
    return path


def _sample(key: str, seed: int, **meta) -> dict:
    return {"__key__": key, "png": _png(seed), "json": meta}


def test_targets_from_labels_distributions_and_votes(tmp_path):
    write_tar(tmp_path / "a-0.tar", [
        _sample("s0", 0, label="joy", split="train"),
        _sample("s1", 1, distribution={"anger": 0.5, "sadness": 0.5}, split="train"),   # joy left out: 0
        _sample("s2", 2, votes={"Joy": 3, "anger": 1}, split="validation"),
    ])
    write_tar(tmp_path / "a-1.tar", [
        _sample("s3", 3, label="sadness", distribution={"anger": 0.1, "joy": 0.1, "sadness": 0.8}, split="test"),
    ])
    cfg = DataConfig(format="webdataset", root=str(tmp_path / "a-{0..1}.tar"), classes=CLASSES)
    idx = load_index(cfg)
    shard0, shard1 = str(tmp_path / "a-0.tar"), str(tmp_path / "a-1.tar")
    assert [r.key for r in idx.records] == [f"{shard0}#s0", f"{shard0}#s1", f"{shard0}#s2", f"{shard1}#s3"]
    np.testing.assert_allclose(idx.records[0].dist, [0, 1, 0])
    np.testing.assert_allclose(idx.records[1].dist, [0.5, 0, 0.5])
    assert idx.records[1].label == 0                                   # argmax, ties to the first class
    np.testing.assert_allclose(idx.records[2].dist, [0.25, 0.75, 0])   # votes, class names case-insensitive
    assert idx.records[3].label == 2 and [r.split for r in idx.records] == ["train", "train", "val", "test"]
    assert not idx.has_distributions   # s0 carries a label only
    assert any("carry no distribution" in w for w in idx.report.warnings)
    assert np.array_equal(np.asarray(idx.load_image(2)), np.asarray(Image.open(io.BytesIO(_png(2))).convert("RGB")))


def test_cls_members_need_class_names(tmp_path):
    # WebDataset's class-index convention; the image extension may be any of jpg/jpeg/png/webp
    write_tar(tmp_path / "c.tar", [{"__key__": f"k{i}", "webp": _png(i), "cls": str(i % 3).encode()} for i in range(4)])
    idx = load_index({"format": "webdataset", "root": str(tmp_path / "c.tar"), "classes": CLASSES})
    assert [r.label for r in idx.records] == [0, 1, 2, 0] and not idx.has_distributions
    with pytest.raises(DataError, match="set data.classes"):
        load_index({"format": "webdataset", "root": str(tmp_path / "c.tar")})


def test_class_order_from_samples_or_sorted(tmp_path):
    write_tar(tmp_path / "s.tar", [_sample("a", 0, label="joy", classes=["sadness", "joy", "anger"]),
                                   _sample("b", 1, distribution=[0.2, 0.3, 0.5], classes=["sadness", "joy", "anger"])])
    idx = load_index({"format": "webdataset", "root": str(tmp_path / "s.tar")})
    assert idx.classnames == ["sadness", "joy", "anger"] and idx.records[0].label == 1
    np.testing.assert_allclose(idx.records[1].dist, [0.2, 0.3, 0.5])
    write_tar(tmp_path / "t.tar", [_sample("a", 0, label="joy"), _sample("b", 1, votes={"anger": 2, "fear": 1})])
    idx = load_index({"format": "webdataset", "root": str(tmp_path / "t.tar")})
    assert idx.classnames == ["anger", "fear", "joy"]
    write_tar(tmp_path / "u.tar", [_sample("a", 0, label=1), _sample("b", 1, label=0)])
    with pytest.raises(DataError, match="set data.classes"):
        load_index({"format": "webdataset", "root": str(tmp_path / "u.tar")})


def test_bad_samples_reported_by_shard_and_key(tmp_path):
    shard = write_tar(tmp_path / "bad-0.tar", [
        _sample("ok", 0, label="joy"),
        {"__key__": "noimage", "json": {"label": "joy"}},
        {"__key__": "twoimages", "png": _png(1), "jpg": _png(2), "json": {"label": "joy"}},
        {"__key__": "nojson", "png": _png(3)},
        {"__key__": "badjson", "png": _png(4), "json": b"{not json"},
        _sample("unknownlabel", 5, label="awe"),
        _sample("badsum", 6, distribution={"joy": 0.5}),
        {"__key__": "broken", "png": _png(7)[:60], "json": {"label": "joy"}},
        _sample("badsplit", 8, label="joy", split="holdout"),
        _sample("ok", 9, label="joy"),                                  # the key again, later in the shard
    ])
    with gzip.open(tmp_path / "bad-1.tar", "wb") as fh:                 # compressed: no random access
        fh.write(shard.read_bytes())
    cfg = {"format": "webdataset", "root": str(tmp_path / "bad-{0..2}.tar"), "classes": CLASSES}
    with pytest.raises(DataError) as err:
        load_index(cfg)
    msg = str(err.value)
    assert f"{shard}#broken" in msg and "11 bad item(s)" in msg

    idx = load_index({**cfg, "on_bad": "skip"})
    assert [r.key for r in idx.records] == [f"{shard}#ok"]
    reasons = {b.key.rsplit("/", 1)[1]: (b.reason, b.field) for b in idx.report.bad}
    assert reasons["bad-0.tar#noimage"][0].startswith("no image")
    assert "several images" in reasons["bad-0.tar#twoimages"][0]
    assert reasons["bad-0.tar#nojson"][0] == "no json (or cls) with the label"
    assert reasons["bad-0.tar#badjson"] [1] == "json"
    assert reasons["bad-0.tar#unknownlabel"] == ("unknown label 'awe' (classes: ['anger', 'joy', 'sadness'])",
                                                 "json.label")
    assert "sums to 0.5" in reasons["bad-0.tar#badsum"][0] and reasons["bad-0.tar#badsum"][1] == "json.distribution"
    assert reasons["bad-0.tar#broken"][1] == "png"
    assert reasons["bad-0.tar#badsplit"][1] == "json.split"
    assert reasons["bad-0.tar#ok"][0] == "duplicate sample key in this shard"
    assert "compressed shard" in reasons["bad-1.tar"][0]
    assert reasons["bad-2.tar"][0] == "missing shard file"
    assert idx.report.num_entries == 10


def test_per_split_patterns(tmp_path):
    for split, n in (("train", 3), ("val", 1), ("test", 1)):
        for k in range(n):
            write_tar(tmp_path / f"{split}-{k}.tar", [_sample(f"{split}{k}{c}", i, label=c)
                                                     for i, c in enumerate(CLASSES)])
    root = {"train": str(tmp_path / "train-{0..2}.tar"), "val": str(tmp_path / "val-0.tar"),
            "test": str(tmp_path / "test-0.tar")}
    cfg = DataConfig(format="webdataset", root=root)
    idx = load_index(cfg)
    assert {k: len(v) for k, v in resolve_splits(cfg, idx).items()} == {"train": 9, "val": 3, "test": 3}
    write_tar(tmp_path / "val-0.tar", [_sample("x", 0, label="joy", split="train")])
    idx = load_index({**cfg.model_dump(), "on_bad": "skip"})
    assert [b.reason for b in idx.report.bad] == ["split field says 'train' but the shard is listed under data.root.val"]
    with pytest.raises(DataError, match="listed twice"):
        load_index({"format": "webdataset", "root": {"train": str(tmp_path / "train-{0..1}.tar"),
                                                     "val": str(tmp_path / "train-1.tar")}})


def test_url_shards_are_cached_once(tmp_path):
    src = write_tar(tmp_path / "src" / "remote-0.tar", [_sample(f"k{i}", i, label=c) for i, c in enumerate(CLASSES)])
    url = f"pipe:cat {src}"
    cache = tmp_path / "cache"
    cfg = {"format": "webdataset", "root": url, "webdataset": {"cache_dir": str(cache)}}
    idx = load_index(cfg)
    assert [r.key for r in idx.records] == [f"{url}#k0", f"{url}#k1", f"{url}#k2"]
    cached = list(cache.glob("*remote-0.tar"))
    assert len(cached) == 1 and idx.records[0].member.path == str(cached[0])
    src.unlink()                                     # the cache serves it now
    again = load_index(cfg)
    assert np.array_equal(np.asarray(again.load_image(1)), np.asarray(idx.load_image(1)))
    with pytest.raises(DataError, match="cannot fetch"):
        load_index({**cfg, "root": f"pipe:cat {tmp_path / 'nothere.tar'}"})


def test_dataloader_workers_read_members(tmp_path):
    import torch
    from torch.utils.data import DataLoader

    write_tar(tmp_path / "w-0.tar", [_sample(f"k{i}", i, label=CLASSES[i % 3]) for i in range(7)])
    write_tar(tmp_path / "w-1.tar", [_sample(f"m{i}", 10 + i, label=CLASSES[i % 3]) for i in range(5)])
    idx = load_index({"format": "webdataset", "root": str(tmp_path / "w-{0..1}.tar")})
    ds = EmotionDataset(idx, transform=lambda im: torch.from_numpy(np.asarray(im).copy()))
    direct = [ds[i]["image"] for i in range(len(ds))]
    loader = DataLoader(ds, batch_size=3, num_workers=2, shuffle=False)
    seen = torch.cat([b["image"] for b in loader])
    assert torch.equal(seen, torch.stack(direct))


def test_changed_shard_is_named_when_read(tmp_path):
    shard = write_tar(tmp_path / "c.tar", [_sample("a", 0, label="joy"), _sample("b", 1, label="anger")])
    idx = load_index({"format": "webdataset", "root": str(shard)})
    shard.write_bytes(shard.read_bytes()[:1024])
    with pytest.raises(OSError, match=r"c\.tar#b.*changed since the scan"):
        idx.load_image(1)


def test_index_from_another_machine_reads_local_copies(tmp_path):
    from cascade.data.shards import localize_members

    src = write_tar(tmp_path / "src" / "r-0.tar", [_sample(f"k{i}", i, label=c) for i, c in enumerate(CLASSES)])
    url = f"pipe:cat {src}"
    idx = load_index({"format": "webdataset", "root": url, "webdataset": {"cache_dir": str(tmp_path / "a")}})
    before = [np.asarray(idx.load_image(i)) for i in range(len(idx))]
    localize_members(idx, str(tmp_path / "b"))          # as a rank on another node does with rank 0's index
    assert {r.member.path for r in idx.records} == {str(p) for p in (tmp_path / "b").glob("*r-0.tar")}
    assert all(np.array_equal(np.asarray(idx.load_image(i)), before[i]) for i in range(len(idx)))


def test_the_decoded_store_of_shard_samples_is_rebuilt_when_a_shard_is_rewritten(tmp_path):
    """The device input pipeline's store fingerprint follows the shard files, not only their sample keys."""
    import os

    from cascade.data.decoded import CacheGeometry, fingerprint

    shard = tmp_path / "s-0.tar"
    write_tar(shard, [_sample("k0", 0, label="joy"), _sample("k1", 1, label="anger")])
    cfg = DataConfig(format="webdataset", root=str(shard), classes=CLASSES)
    geo = CacheGeometry("eval", 16, 16)
    before = fingerprint(load_index(cfg), [0, 1], geo, None)
    assert fingerprint(load_index(cfg), [0, 1], geo, None) == before
    # the same keys, other images
    write_tar(shard, [_sample("k0", 5, label="joy"), _sample("k1", 6, label="anger")])
    os.utime(shard, ns=(1, 1))
    assert fingerprint(load_index(cfg), [0, 1], geo, None) != before


def test_per_split_shards_without_val_warn(tmp_path):
    write_tar(tmp_path / "train-0.tar", [_sample(f"t{i}", i, label=CLASSES[i % 3]) for i in range(3)])
    write_tar(tmp_path / "test-0.tar", [_sample(f"e{i}", 10 + i, label=CLASSES[i % 3]) for i in range(3)])
    idx = load_index(DataConfig(format="webdataset", classes=CLASSES,
                                root={"train": str(tmp_path / "train-0.tar"), "test": str(tmp_path / "test-0.tar")}))
    assert any("data.root has no val shards" in w for w in idx.report.warnings)

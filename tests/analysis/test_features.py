"""Per-block feature extraction and the on-disk feature cache."""
from __future__ import annotations

import json
import os
import socket

import pytest
import torch

from analysis.feature_cache import FeatureCache, FeatureSet, cached_features, data_key, feature_key, model_key
from analysis.features import extract_features, frozen_final_embedding, model_features, zero_prompt_model
from cascade import CascadeConfig, build_model, save_checkpoint

CLASSES = ["anger", "disgust", "fear", "joy", "sadness", "surprise"]


class ImageSet(torch.utils.data.Dataset):
    """Random images in the EmotionDataset item format."""

    def __init__(self, n=10, size=64, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 3, size, size, generator=g)
        self.y = torch.randint(0, len(CLASSES), (n,), generator=g)
        self.p = torch.softmax(torch.randn(n, len(CLASSES), generator=g), -1)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"image": self.x[i], "label": self.y[i], "dist": self.p[i], "index": 100 + i}


@pytest.fixture(scope="module")
def model(tiny_backbone):
    m = build_model(tiny_backbone, CLASSES, CascadeConfig.from_preset("b32-4stage", prompt_tokens=4))
    with torch.no_grad():
        for _, p in m.cascade_named_parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m.eval()


def test_extract_matches_forward(model):
    data = ImageSet(10)
    fs = extract_features(model, data, batch_size=4, progress=False)
    assert fs.block_ids == list(range(1, 13))
    assert fs.get().shape == (12, 10, 64)
    with torch.no_grad():
        ref = model.forward_features(data.x, all_blocks=True).features
    assert torch.allclose(fs.get(), ref, atol=1e-5)
    assert torch.equal(fs.labels, data.y)
    assert torch.allclose(fs.dists, data.p)
    assert fs.indices.tolist() == list(range(100, 110))
    # the head's blocks, ready for forward_head
    bf = fs.block_features(model)
    assert bf.block_ids == model.feature_blocks


def test_both_poolings_in_one_pass(model, tiny_backbone):
    data = ImageSet(6)
    both = extract_features(model, data, poolings=["cls", "mean"], progress=False)
    cls_only = extract_features(model, data, progress=False)
    assert torch.allclose(both.get("cls"), cls_only.get("cls"), atol=1e-5)
    # mean pooling equals a model configured with mean pooling and the same parameters
    mean_model = build_model(tiny_backbone, CLASSES,
                             CascadeConfig.from_preset("b32-4stage", prompt_tokens=4, pooling="mean"),
                             classifier=model.classifier)
    mean_model.load_state_dict(model.trainable_state_dict(), strict=False)
    with torch.no_grad():
        ref = mean_model.forward_features(data.x, all_blocks=True).features
    assert torch.allclose(both.get("mean"), ref, atol=1e-5)
    assert "_pool" not in model.__dict__            # the override is gone
    assert model._fast_blocks() == mean_model._fast_blocks()


def test_image_tensor_input_and_zero_prompt_model(model, tiny_backbone):
    x = ImageSet(5).x
    frozen = zero_prompt_model(model)
    assert frozen.prompts is None and frozen.visual is model.visual
    fs = extract_features(frozen, x, poolings=["cls"], progress=False)
    assert fs.indices.tolist() == list(range(5))
    assert (fs.labels == -1).all()
    # the frozen final embedding is CLIP's image embedding
    emb = frozen_final_embedding(fs, frozen)
    with torch.no_grad():
        clip = tiny_backbone.model.encode_image(x)
    assert torch.allclose(emb, clip, atol=1e-4)


def test_feature_set_save_load_roundtrip(model, tmp_path):
    fs = extract_features(model, ImageSet(5), poolings=["cls", "mean"], progress=False)
    path = fs.save(tmp_path / "f.safetensors")
    assert path.with_suffix(".json").is_file()
    back = FeatureSet.load(path)
    for k in ("cls", "mean"):
        assert torch.equal(back.get(k), fs.get(k))
    assert torch.equal(back.labels, fs.labels) and torch.equal(back.dists, fs.dists)
    assert back.block_ids == fs.block_ids and back.classnames == fs.classnames
    assert not list(tmp_path.glob("*.pt")) and not list(tmp_path.glob("*.pkl"))


def test_cache_hit_and_miss_by_key(model, tmp_path):
    data = ImageSet(6)
    calls = []

    def compute(m=model):
        calls.append(1)
        return extract_features(m, data, progress=False)

    cache = FeatureCache(tmp_path / "cache")
    ck = save_checkpoint(model, tmp_path / "ck.safetensors")
    key = feature_key(model_key(model, ck), data_key(split="val", item_keys=[f"k{i}" for i in range(6)]), ["cls"])

    first = cached_features(key, compute, cache)
    assert len(calls) == 1 and not first.cache_hit
    second = cached_features(key, compute, cache)
    assert len(calls) == 1 and second.cache_hit
    assert torch.equal(first.get(), second.get())
    assert cache.hits == 1 and cache.misses == 1
    # the stored JSON carries the whole key
    stored = json.loads(cache.path_for(key).with_suffix(".json").read_text())
    assert stored["key"]["data"]["split"] == "val"

    # another split, other items, another pooling, another checkpoint: misses
    keys = [
        feature_key(model_key(model, ck), data_key(split="test", item_keys=[f"k{i}" for i in range(6)]), ["cls"]),
        feature_key(model_key(model, ck), data_key(split="val", item_keys=[f"k{i}" for i in range(1, 7)]), ["cls"]),
        feature_key(model_key(model, ck), data_key(split="val", item_keys=[f"k{i}" for i in range(6)]), ["mean"]),
    ]
    with torch.no_grad():
        model.nga.log_sigma.add_(0.1)
    try:
        ck2 = save_checkpoint(model, tmp_path / "ck2.safetensors")
    finally:
        with torch.no_grad():
            model.nga.log_sigma.sub_(0.1)
    keys.append(feature_key(model_key(model, ck2), data_key(split="val", item_keys=[f"k{i}" for i in range(6)]),
                            ["cls"]))
    frozen_key = feature_key(model_key(model, frozen=True), data_key(split="val"), ["cls"])
    keys.append(frozen_key)
    assert len({cache.path_for(k) for k in keys + [key]}) == len(keys) + 1
    for k in keys:
        assert cache.load(k) is None
    # refresh recomputes even on a hit
    cached_features(key, compute, cache, refresh=True)
    assert len(calls) == 2


def test_cache_rejects_a_different_key_at_the_same_path(model, tmp_path):
    cache = FeatureCache(tmp_path)
    key = {"version": 1, "a": 1}
    fs = extract_features(model, ImageSet(4), progress=False)
    cache.save(key, fs)
    jpath = cache.path_for(key).with_suffix(".json")
    meta = json.loads(jpath.read_text())
    meta["key"] = {"version": 1, "a": 2}      # as if two keys collided on one hash
    jpath.write_text(json.dumps(meta))
    assert cache.load(key) is None


def test_model_features_in_memory_state_key(model, tmp_path):
    data = ImageSet(4)
    a = model_features(model, data, data_id="random-4", cache_dir=tmp_path, progress=False)
    b = model_features(model, data, data_id="random-4", cache_dir=tmp_path, progress=False)
    assert not a.cache_hit and b.cache_hit


# ---------------------------------------------------------------------------
# distributed: shard + gather over two gloo processes gives the one-process result
# ---------------------------------------------------------------------------


def _ddp_worker(rank, world, port, out_dir):
    import logging

    logging.getLogger().setLevel(logging.ERROR)
    torch.set_num_threads(1)
    import torch.distributed as dist

    from cascade import load_backbone

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        bb = load_backbone("cascade-tiny", None, seed=0)
        torch.manual_seed(0)
        m = build_model(bb, CLASSES, CascadeConfig.from_preset("b32-4stage", prompt_tokens=2)).eval()
        fs = extract_features(m, ImageSet(7), batch_size=2, progress=False)
        if rank == 0:
            fs.save(os.path.join(out_dir, "ddp.safetensors"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_distributed_shard_and_gather(tmp_path, tiny_backbone):
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    ddp = FeatureSet.load(tmp_path / "ddp.safetensors")
    torch.manual_seed(0)
    m = build_model(tiny_backbone, CLASSES, CascadeConfig.from_preset("b32-4stage", prompt_tokens=2)).eval()
    single = extract_features(m, ImageSet(7), batch_size=2, progress=False)
    assert ddp.indices.tolist() == single.indices.tolist()
    assert torch.allclose(ddp.get(), single.get(), atol=1e-5)
    assert torch.equal(ddp.labels, single.labels)


def test_iter_checkpoints_lists_model_checkpoints_not_resume_states(synthetic_run):
    from cascade.runfolder import iter_checkpoints

    folder = synthetic_run / "checkpoints"
    assert (folder / "last.train.safetensors").is_file()      # the resume state is there ...
    names = [p.name for p in iter_checkpoints(synthetic_run)]
    assert names and ".train" not in "".join(names)           # ... but is not a model checkpoint
    assert {"best.safetensors", "last.safetensors"} <= set(names)

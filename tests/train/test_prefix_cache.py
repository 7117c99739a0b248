"""cache_prefix: the frozen prefix blocks run once per image and give identical results."""
import json

import pytest

from cascade.train import train

from .helpers import tiny_config

B16_LIKE = ["model.preset=custom", "model.stages=6-8,9-11,12", "model.prompt_tokens=2", "train.augment=false"]


class CountPrefixCalls:
    calls = 0

    def on_train_start(self, state):
        assert state.model.frozen_prefix == 5
        original = state.model.forward_prefix

        def counted(images):
            self.calls += 1
            return original(images)

        state.model.forward_prefix = counted


@pytest.mark.slow
def test_prefix_cache_gives_identical_results(tmp_path):
    results, counters = {}, {}
    for cache in ("true", "false"):
        counters[cache] = CountPrefixCalls()
        cfg = tiny_config(tmp_path, *B16_LIKE, f"train.cache_prefix={cache}", f"run.name=cache-{cache}")
        path = train(cfg, callbacks=[counters[cache]], quiet=True)
        results[cache] = json.loads((path / "eval.json").read_text())
    assert counters["true"].calls == 0          # training and evaluation read the cache
    assert counters["false"].calls > 0
    for split in ("val", "test"):
        a, b = results["true"][split], results["false"][split]
        for k, v in a["fused"].items():
            assert b["fused"][k] == pytest.approx(v, abs=1e-6), (split, k)
        for sa, sb in zip(a["stages"], b["stages"]):
            assert sb == pytest.approx(sa, abs=1e-6)
    start = [json.loads(line) for line in (tmp_path / "cache-true" / "metrics.jsonl").read_text().splitlines()][0]
    assert start["prefix_cache"] is True


def test_cache_placement_rules():
    import torch

    from cascade.train.data import cache_placement

    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    gib = 2**30
    assert cache_placement("auto", cpu, gib, None) == cpu                 # CPU training: the host
    assert cache_placement("auto", gpu, gib, 4 * gib) == gpu              # a quarter of the free memory fits
    assert cache_placement("auto", gpu, gib, 4 * gib - 1) == cpu          # more than a quarter: the host
    assert cache_placement("host", gpu, 1, 80 * gib) == cpu
    assert cache_placement("device", gpu, 100 * gib, gib) == gpu          # asked for explicitly


def test_cache_source_gathers_where_its_tokens_live():
    import torch

    from cascade.train.data import CacheSource

    prefix = torch.arange(5 * 3 * 2, dtype=torch.float32).view(5, 3, 2)
    src = CacheSource(prefix, torch.arange(5), torch.eye(5), torch.arange(10, 15), frozen=torch.ones(5, 4))
    assert src.nbytes() == prefix.numel() * 4 + 5 * 4 * 4
    assert src.to("cpu") is src
    batch = next(src.iterate([[4, 1]]))
    torch.testing.assert_close(batch["prefix"], prefix[[4, 1]])
    assert batch["label"].tolist() == [4, 1] and batch["index"].tolist() == [14, 11]
    assert batch["frozen"].shape == (2, 4)


@pytest.mark.skipif("not __import__('torch').cuda.is_available()", reason="needs CUDA")
def test_cache_on_the_gpu_gathers_there():
    import torch

    from cascade.train.data import CacheSource

    prefix = torch.randn(5, 3, 2)
    src = CacheSource(prefix, torch.arange(5), torch.eye(5), torch.arange(5)).to("cuda")
    batch = next(src.iterate([[4, 1]]))
    assert batch["prefix"].is_cuda and not batch["label"].is_cuda
    torch.testing.assert_close(batch["prefix"].cpu(), prefix[[4, 1]])


@pytest.mark.parametrize("preset", ["b16-3stage", "b32-4stage"])
def test_cached_equals_uncached_bit_for_bit_under_autocast(tiny_backbone, preset):
    """Tokens cached under the same autocast as the direct path give the same logits, bit for bit.

    The trainer builds its cache under the training autocast; CPU autocast (bf16) stands in for
    CUDA here. A cache cast to another dtype than the residual stream's would differ.
    """
    import torch

    from cascade import build_model
    from cascade.config import CascadeConfig
    from cascade.train.data import build_prefix_cache

    model = build_model(tiny_backbone, ["a", "b", "c"], CascadeConfig.from_preset(preset, prompt_tokens=2)).eval()
    x = torch.randn(6, 3, 64, 64)

    class Items:
        def __len__(self):
            return 6

        def iterate(self, batches, epoch):
            for b in batches:
                yield {"image": x[b], "label": torch.zeros(len(b), dtype=torch.long),
                       "dist": torch.full((len(b), 3), 1 / 3), "index": list(b)}

    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        direct = model(x).logits
        cache = build_prefix_cache(model, Items(), torch.device("cpu"), batch_size=4)
        cached = model(prefix_tokens=cache.prefix).logits
    assert torch.equal(direct, cached)
    with torch.no_grad():
        assert torch.equal(model(x).logits, model(prefix_tokens=model.forward_prefix(x)).logits)

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

"""Reproducible data order and augmentation: per-epoch permutations, DDP shards, workers."""
import json

import pytest

from cascade.train import train
from cascade.train.batches import epoch_permutation, num_batches, rank_batches, shard_counts, shard_positions

from .helpers import tiny_config


def test_permutation_is_a_function_of_seed_and_epoch():
    assert epoch_permutation(50, 0, 3) == epoch_permutation(50, 0, 3)
    assert epoch_permutation(50, 0, 3) != epoch_permutation(50, 0, 4)
    assert epoch_permutation(50, 1, 3) != epoch_permutation(50, 0, 3)
    assert sorted(epoch_permutation(50, 0, 3)) == list(range(50))


def test_resume_skips_exactly_the_first_batches():
    full = [b for b, _, _ in rank_batches(37, 8, 0, 2)]
    assert len(full) == num_batches(37, 8) == 5
    assert [b for b, _, _ in rank_batches(37, 8, 0, 2, start=3)] == full[3:]


@pytest.mark.parametrize("world", [2, 3])
def test_rank_shards_make_up_the_global_batches(world):
    single = list(rank_batches(37, 8, 5, 1))
    shards = [list(rank_batches(37, 8, 5, 1, rank=r, world=world)) for r in range(world)]
    for b, (glob, n, w) in enumerate(single):
        parts = [shards[r][b] for r in range(world)]
        items = [i for (local, _, weight) in parts if weight > 0 for i in local]
        assert sorted(items) == sorted(glob)
        assert all(nb == n for _, nb, _ in parts)
        assert sum(weight for _, _, weight in parts) == pytest.approx(1.0)


def test_eval_shards_cover_every_item_once():
    for n, world in [(10, 3), (2, 4), (0, 2)]:
        parts = [shard_positions(n, r, world) for r in range(world)]
        assert sum(parts, []) == list(range(n))
        assert [len(p) for p in parts] == shard_counts(n, world)


@pytest.mark.slow
@pytest.mark.parametrize("pipeline", ["cpu", "device"])
def test_augmented_training_does_not_depend_on_the_worker_count(tmp_path, pipeline):
    # cpu: DataLoader workers augment; device: the store is decoded by that many threads.
    results = []
    for workers in (0, 2):
        cfg = tiny_config(tmp_path, "train.augment=true", "train.cache_prefix=false", "train.epochs.unfreeze=0",
                          f"train.input_pipeline={pipeline}", f"train.num_workers={workers}",
                          f"run.name=w{workers}")
        results.append(json.loads((train(cfg, quiet=True) / "eval.json").read_text()))
    assert results[0]["val"] == results[1]["val"] and results[0]["test"] == results[1]["test"]

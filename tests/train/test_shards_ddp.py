"""Two ranks (gloo) training from WebDataset shards: every training sample exactly once per epoch."""
import json
import os
import subprocess
import sys

import pytest
import yaml

from cascade.data import DataConfig, load_index, resolve_splits
from cascade.data.shard_writer import write_shards

from .helpers import REPO, SMALL, tiny_config

ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_each_sample_once_per_epoch_across_two_ranks(tmp_path):
    # 60 faces: 42 train items in 9 shards of 5 (the last holds 2), so shards cannot divide evenly
    # between the ranks; batch 16 gives global batches 16, 16, 10, never a lone item to pad with.
    source = DataConfig(format="synthetic", synthetic={"num_samples": 60})
    index = load_index(source)
    manifest = write_shards(index, resolve_splits(source, index), tmp_path / "shards", shard_size=5)
    assert manifest["splits"]["train"]["num_samples"] == 42
    sizes = [s["num_samples"] for s in manifest["splits"]["train"]["shards"]]
    assert len(sizes) == 9 and sizes[-1] == 2

    # The shards named by URL, each rank with its own cache: as two machines would fetch them.
    overrides = [o for o in SMALL if not o.startswith("data.")] + [
        "train.cache_prefix=false", "train.augment=true", "train.num_workers=1", "run.name=shards"]
    cfg = tiny_config(tmp_path / "runs", *overrides).model_dump(mode="json", by_alias=True)
    cfg["data"] = {**manifest["data"], "root": {k: f"pipe:cat {v}" for k, v in manifest["data"]["root"].items()}}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           str(REPO / "tests" / "train" / "ddp_record_batches.py"), str(tmp_path / "run.yaml"), str(tmp_path),
           "--cache-per-rank"]
    proc = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]

    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert all(r["world_size"] == 2 for r in ranks)
    splits = json.loads((tmp_path / "runs" / "shards" / "splits.json").read_text())["splits"]
    train_items = sorted(splits["train"]["indices"])
    assert len(train_items) == 42 and all(k.startswith("pipe:cat ") for k in splits["train"]["keys"])
    for epoch in ("1", "2", "3"):
        a, b = ranks[0]["epochs"][epoch], ranks[1]["epochs"][epoch]
        assert a and b and not set(a) & set(b)
        assert sorted(a + b) == train_items, epoch          # exactly once: no sample missing, none twice
    assert ranks[0]["epochs"]["1"] != ranks[0]["epochs"]["2"]   # a new shuffle every epoch

    # rank 0 scanned and sent the index; rank 1 read every sample from its own copies of the shards
    assert ranks[0]["scan_seconds"] == ranks[1]["scan_seconds"]
    num_shards = sum(len(v["shards"]) for v in manifest["splits"].values())
    for r in range(2):
        assert len(ranks[r]["files"]) == num_shards
        assert all(f.startswith(str(tmp_path / f"cache{r}")) for f in ranks[r]["files"]), r

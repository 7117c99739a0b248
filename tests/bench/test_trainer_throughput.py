"""Smoke test of benchmarks/trainer_throughput.py (the trainer-level GPU benchmark) on the CPU."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_trainer_throughput_runs_every_variant(tmp_path):
    out = tmp_path / "tt.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "trainer_throughput.py"), "--model", "cascade-tiny", "--device",
         "cpu", "--images", "96", "--batch-size", "16", "--epochs", "1", "--workers", "0",
         "--compile-backend", "aot_eager", "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert set(res["variants"]) == {"eager", "bf16", "compiled", "auto"}
    for name, row in res["variants"].items():
        assert row["images_per_s"] > 0 and row["logged_windows"] >= 2, name
    assert len(res["variants"]["compiled"]["compile_first_step_seconds"]) == 1   # one phase, one compilation
    assert "train.frozen_dtype=bf16" in res["variants"]["bf16"]["settings"]
    assert res["variants"]["auto"]["compile_first_step_seconds"] == []          # auto on a CPU: eager
    assert "x eager" in proc.stdout and "compiled" in proc.stdout

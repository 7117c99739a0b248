"""train.compile and train.frozen_dtype: same training, other execution."""
import json

import pytest
import torch

from cascade.train import train
from cascade.run_config import TrainConfig

from .helpers import read_jsonl, tiny_config


def _losses(path):
    return [line["loss"] for line in read_jsonl(path / "metrics.jsonl") if line["kind"] == "step"]


def _eval(path):
    return json.loads((path / "eval.json").read_text())


def _graphs_compiled() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


@pytest.fixture(scope="module")
def eager_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("eager")
    return train(tiny_config(runs, "run.name=eager", "train.log_every_steps=1", "train.epochs.global=2"), quiet=True)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_compiled_training_matches_eager(tmp_path, eager_run, backend):
    torch._dynamo.reset()
    before = _graphs_compiled()
    path = train(tiny_config(tmp_path, f"run.name=compiled-{backend}", "train.log_every_steps=1",
                             "train.epochs.global=2", "train.compile=default", f"train.compile_backend={backend}"),
                 quiet=True)
    assert _graphs_compiled() > before          # the step really ran through dynamo
    eager, compiled = _losses(eager_run), _losses(path)
    assert len(eager) == len(compiled) > 3
    tol = 1e-5 if backend == "aot_eager" else 1e-4   # inductor fuses and reorders float sums
    for a, b in zip(eager, compiled):
        assert b == pytest.approx(a, abs=tol, rel=tol)
    ea, ca = _eval(eager_run), _eval(path)
    assert ca["best_epoch"] == ea["best_epoch"]
    for k in ("accuracy", "macro_f1", "kl"):
        assert ca["test"]["fused"][k] == pytest.approx(ea["test"]["fused"][k], abs=1e-3)
    records = read_jsonl(path / "metrics.jsonl")
    assert records[0]["compile"] == "default"
    # One compilation per set of trainable parameters (not per epoch), each logged with its phase
    # and the first step's time. Here the one unfreeze epoch lets every stage join, with its σ and
    # λ (default recipe), so the global phase trains the same set and reuses the unfreeze graphs.
    phases = [r["phase"] for r in records if r["kind"] == "phase"]
    assert phases == ["warmup", "unfreeze", "global", "global"]
    compiles = [r for r in records if r["kind"] == "compile"]
    assert [r["phase"] for r in compiles] == ["warmup", "unfreeze"]
    assert all(r["first_step_seconds"] > 0 and r["backend"] == backend for r in compiles)
    # Checkpoint keys come from the model, not the compiled wrapper (no "_orig_mod." prefix).
    from safetensors import safe_open

    with safe_open(path / "checkpoints" / "best.safetensors", "pt") as f:
        keys = list(f.keys())
    assert keys and not any("_orig_mod" in k for k in keys)


@pytest.mark.slow
def test_bf16_frozen_backbone_trains_close_to_fp32(tmp_path, eager_run):
    path = train(tiny_config(tmp_path, "run.name=bf16", "train.log_every_steps=1", "train.epochs.global=2",
                             "train.frozen_dtype=bf16"), quiet=True)
    eager, low = _losses(eager_run), _losses(path)
    assert len(eager) == len(low)
    first = eager[0]["total"]
    # bf16 keeps ~3 significant digits in the backbone; losses stay float32 and close.
    assert low[0]["total"] == pytest.approx(first, rel=3e-2)
    assert all(torch.isfinite(torch.tensor(line["total"])) for line in low)
    assert read_jsonl(path / "metrics.jsonl")[0]["frozen_dtype"] == "bf16"
    from safetensors import safe_open

    with safe_open(path / "checkpoints" / "best.safetensors", "pt") as f:
        dtypes = {f.get_tensor(k).dtype for k in f.keys()}
    assert dtypes == {torch.float32}            # trainable state is float32 whatever the backbone
    # Evaluating the run folder again uses the run's backbone dtype: eval.json is reproduced.
    from cascade.evaluate import evaluate_run

    again = evaluate_run(path, "test", write=False)["metrics"]["fused"]
    for k, v in _eval(path)["test"]["fused"].items():
        assert again[k] == pytest.approx(v, abs=1e-6), k


def test_compile_config_errors_name_the_field():
    with pytest.raises(ValueError, match="compile_backend.*no-such-backend"):
        TrainConfig(compile="default", compile_backend="no-such-backend")
    with pytest.raises(ValueError, match="compile: mode 'reduce-overhead' needs compile_backend: inductor"):
        TrainConfig(compile="reduce-overhead", compile_backend="aot_eager")
    with pytest.raises(ValueError, match="frozen_dtype"):
        TrainConfig(frozen_dtype="int8")
    assert TrainConfig(compile="max-autotune").compile_backend == "inductor"


def test_a_failing_compilation_falls_back_to_eager_with_one_warning(tmp_path, monkeypatch, eager_run):
    import cascade.train.loop as loop

    def broken(model, mode, backend):
        def fail(**_):
            raise RuntimeError("inductor: no working C++ compiler")
        return fail

    monkeypatch.setattr(loop, "compile_model", broken)
    cfg = tiny_config(tmp_path, "run.name=broken", "train.log_every_steps=1", "train.epochs.global=2",
                      "train.compile=default")
    with pytest.warns(RuntimeWarning) as caught:
        path = train(cfg, quiet=True)
    named = [w for w in caught if "train.compile=default" in str(w.message)]
    assert len(named) == 1
    assert "compiling the training step failed in phase warmup (RuntimeError: inductor: no working C++ " \
           "compiler); training continues eagerly" in str(named[0].message)
    # The failed step was redone eagerly: the eager run's losses (up to the fixture's thread count).
    eager, fallen = _losses(eager_run), _losses(path)
    assert len(eager) == len(fallen)
    for a, b in zip(eager, fallen):
        assert b == pytest.approx(a, rel=1e-5, abs=1e-6)
    records = read_jsonl(path / "metrics.jsonl")
    fallback = [r for r in records if r["kind"] == "compile_fallback"]
    assert len(fallback) == 1 and fallback[0]["phase"] == "warmup" and "C++ compiler" in fallback[0]["error"]
    assert not [r for r in records if r["kind"] == "compile"]

"""train.frozen_dtype: auto and train.compile: auto."""
import pytest
import torch
import yaml

from cascade.train import train
from cascade.train.fastpath import COMPILE_SECONDS, GraphSteps, plan_compile, step_seconds
from cascade.run_config import TrainConfig

from .helpers import read_jsonl, tiny_config

CUDA = torch.device("cuda")


def test_auto_is_the_default():
    tc = TrainConfig()
    assert tc.compile == "auto" and tc.frozen_dtype == "auto" and tc.input_pipeline == "auto"


def _graphs(*steps):
    return [GraphSteps(frozenset({f"g{i}"}), [f"phase{i}"], n) for i, n in enumerate(steps)]


def test_compile_auto_compiles_the_graphs_that_pay_back():
    flops = 3.3e12                                       # ViT-B/32 b32-4stage, batch 256: ~13 GFLOP per image
    eager, compiled = step_seconds(flops, 989.4)
    pays = int(COMPILE_SECONDS / (eager - compiled)) + 1
    plan = plan_compile("auto", device=CUDA, graphs=_graphs(10, pays, pays - 2), flops_per_step=flops,
                        device_name="NVIDIA H200")
    modes = [plan.mode_for(g.trainable) for g in _graphs(10, pays, pays - 2)]
    assert modes == ["none", "reduce-overhead", "none"]
    est = plan.estimate
    assert est["peak_source"].startswith("data sheet") and est["compile_seconds"] == COMPILE_SECONDS
    assert [g["compile"] for g in est["graphs"]] == [False, True, False]
    text = plan.summary()
    assert "phase1" in text and "-> compiled" in text and "-> eager" in text
    assert plan.record()["modes"] == ["none", "reduce-overhead"]
    # A compile failure turns every graph eager.
    plan.disable("RuntimeError: no compiler")
    assert plan.mode_for(frozenset({"g1"})) == "none" and not plan.compiles


def test_compile_auto_elsewhere_and_explicit_settings():
    graphs = _graphs(10**6)
    cpu = plan_compile("auto", device=torch.device("cpu"), graphs=graphs, flops_per_step=1e12)
    assert cpu.mode_for(graphs[0].trainable) == "none" and "eager on cpu" in cpu.summary()
    unknown = plan_compile("auto", device=CUDA, graphs=graphs, flops_per_step=1e12, device_name="Some GPU")
    assert "assumed" in unknown.estimate["peak_source"] and unknown.compiles
    other_backend = plan_compile("auto", device=CUDA, graphs=graphs, flops_per_step=1e12, backend="aot_eager")
    assert not other_backend.compiles
    # Small batches are launch-bound: the eager estimate never drops below the launch floor.
    assert step_seconds(1e9, 989.4)[0] > step_seconds(1e9, 989.4)[1] * 10
    explicit = plan_compile("max-autotune", device=torch.device("cpu"), graphs=graphs, flops_per_step=None)
    assert explicit.mode_for(frozenset({"anything"})) == "max-autotune"


def test_a_cpu_run_resolves_auto_and_records_it(tmp_path):
    path = train(tiny_config(tmp_path, "run.name=auto"), quiet=True)
    cfg = yaml.safe_load((path / "config.yaml").read_text())
    assert cfg["train"]["frozen_dtype"] == "fp32"            # resolved: eval and predict read it back
    assert cfg["train"]["compile"] == "auto"                  # re-planned on resume (steps left)
    start = read_jsonl(path / "metrics.jsonl")[0]
    assert start["frozen_dtype"] == "fp32"
    assert start["compile_plan"]["modes"] == ["none"] and "cpu" in start["compile_plan"]["estimate"]["reason"]
    assert not [r for r in read_jsonl(path / "metrics.jsonl") if r["kind"] == "compile"]


@pytest.mark.parametrize("fused", [False, True])
def test_optimizer_state_round_trip(fused):
    from cascade.train.optim import build_optimizer, load_optimizer_state, optimizer_state_tensors

    torch.manual_seed(0)
    net = torch.nn.Linear(4, 3)

    class Model:
        @staticmethod
        def cascade_named_parameters():
            return list(net.named_parameters())

        @staticmethod
        def group_of(name):
            return "prompts" if name == "weight" else "heads"

    def steps(opt, n):
        for _ in range(n):
            opt.zero_grad()
            net(torch.ones(2, 4)).pow(2).sum().backward()
            opt.step()

    opt, _ = build_optimizer(Model, TrainConfig(), {"weight", "bias"}, fused=fused)
    assert bool(opt.defaults.get("fused")) == fused
    steps(opt, 2)
    tensors = {k: v.clone() for k, v in optimizer_state_tensors(opt)[0].items()}   # as saved to a file
    after = {k: v.clone() for k, v in net.state_dict().items()}
    steps(opt, 1)
    expected = {k: v.clone() for k, v in net.state_dict().items()}
    net.load_state_dict(after)
    fresh, _ = build_optimizer(Model, TrainConfig(), {"weight", "bias"}, fused=fused)
    load_optimizer_state(fresh, tensors)
    steps(fresh, 1)
    for k, v in net.state_dict().items():
        assert torch.equal(v, expected[k]), k

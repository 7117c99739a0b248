"""Zero-shot and linear probe: evaluated without training, through the same run machinery."""
import json

import pytest

from cascade.cli import main
from cascade.train import train

from .helpers import read_jsonl, tiny_config


def test_zeroshot_is_evaluated_without_training(tmp_path):
    path = train(tiny_config(tmp_path, "method=zeroshot", "run.name=zs"), quiet=True)
    ev = json.loads((path / "eval.json").read_text())
    assert ev["trained"] is False and ev["method"] == "zeroshot" and ev["random_weights"] is True
    assert ev["parameters"]["total_trainable"] == 0
    assert ev["test"]["num_samples"] > 0 and len(ev["test"]["stages"]) == 1
    assert not [r for r in read_jsonl(path / "metrics.jsonl") if r["kind"] == "step"]
    assert (path / "checkpoints" / "best.safetensors").is_file()


@pytest.mark.slow
def test_linear_probe_run_and_eval(tmp_path, capsys):
    path = train(tiny_config(tmp_path, "method=linear-probe", "run.name=lp"), quiet=True)
    ev = json.loads((path / "eval.json").read_text())
    assert ev["trained"] is False and ev["checkpoint"] == "linear_probe"
    assert ev["linear_probe"]["C"] in (0.01, 0.1, 1.0, 10.0, 100.0)
    assert ev["test"]["fused"]["accuracy"] > 1 / 6
    capsys.readouterr()
    assert main(["eval", "--run", str(path), "--quiet"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["metrics"]["fused"] == pytest.approx(ev["test"]["fused"], abs=1e-6)  # float32 log-probs


def test_pretrained_weights_file_is_recorded_and_reloaded(tmp_path, tiny_backbone, capsys):
    from cascade import save_backbone_weights

    weights = save_backbone_weights(tiny_backbone, tmp_path / "tiny.safetensors")
    path = train(tiny_config(tmp_path, "method=zeroshot", f"backbone.pretrained={weights}", "run.name=file"),
                 quiet=True)
    ev = json.loads((path / "eval.json").read_text())
    assert ev["random_weights"] is False and "warning" not in ev
    assert ev["backbone"]["pretrained"] == str(weights)
    capsys.readouterr()
    assert main(["eval", "--run", str(path), "--quiet"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["random_weights"] is False
    assert out["metrics"]["fused"] == pytest.approx(ev["test"]["fused"], abs=1e-9)

"""σ and λ learn under the default recipe; the seed recipe is kept and says when σ did not move."""
import json

import pytest
import torch

from cascade.train import train
from cascade.train.learned import SIGMA_STAYED
from cascade.run_config import RECIPE_LR, validate_run_config
from cascade.train.schedule import TrainableSets, hold_masked, phase_for_epoch

from .helpers import read_jsonl, tiny_config


def test_recipe_fills_only_unset_sigma_and_lambda_rates():
    default = validate_run_config({}).train
    assert default.recipe == "default"
    assert default.learning_rates()["nga"] == RECIPE_LR["default"]["nga"] > 1e-3
    seed = validate_run_config({"train": {"recipe": "seed"}}).train
    assert seed.learning_rates()["nga"] == seed.learning_rates()["fusion"] == 1e-5
    mine = validate_run_config({"train": {"recipe": "seed", "lr": {"nga": 0.5}}}).train
    assert mine.learning_rates()["nga"] == 0.5 and mine.learning_rates()["fusion"] == 1e-5
    assert default.learning_rates()["prompts"] == 1e-4


def test_masks_follow_the_stages_that_train(tiny_backbone):
    from cascade import build_model
    from cascade.config import CascadeConfig

    model = build_model(tiny_backbone, ["a", "b", "c"], CascadeConfig.from_preset("b32-4stage", prompt_tokens=2))
    cfg = validate_run_config({}).train
    warm = phase_for_epoch(0, cfg.epochs, model.num_stages)
    default = TrainableSets.from_model(model, "default")
    masks = default.masks_for(model, warm)
    assert masks["nga.log_sigma"].tolist() == [False, False, False, True]
    assert masks["fusion_logits"].tolist() == [False, False, False, True]
    assert {"nga.log_sigma", "fusion_logits"} <= default.names_for(model, warm)
    seed = TrainableSets.from_model(model, "seed")
    assert seed.masks_for(model, warm) == {} and "nga.log_sigma" not in seed.names_for(model, warm)
    glob = phase_for_epoch(cfg.epochs.total - 1, cfg.epochs, model.num_stages)
    assert default.masks_for(model, glob) == {} and "nga.log_sigma" in default.names_for(model, glob)


def test_masked_entries_stay_exact_under_adamw_with_weight_decay():
    p = torch.nn.Parameter(torch.tensor([0.3, -0.2, 0.1, 0.0]))
    opt = torch.optim.AdamW([p], lr=0.1, weight_decay=0.5)
    mask = torch.tensor([False, True, False, True])
    before = p.detach().clone()
    for _ in range(3):
        opt.zero_grad()
        (p * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
        restore = hold_masked({"w": p}, {"w": mask})
        opt.step()
        restore()
    assert torch.equal(p.detach()[~mask], before[~mask])
    assert not torch.equal(p.detach()[mask], before[mask])


@pytest.fixture(scope="module")
def recipe_runs(tmp_path_factory):
    runs = tmp_path_factory.mktemp("recipe")
    out = {}
    for recipe in ("default", "seed"):
        cfg = tiny_config(runs, f"run.name={recipe}", f"train.recipe={recipe}", "train.log_every_steps=1",
                          "train.epochs.warmup=1", "train.epochs.unfreeze=2", "train.epochs.global=1")
        out[recipe] = train(cfg, quiet=True)
    return out


def test_default_recipe_moves_sigma_and_lambda(recipe_runs):
    run = recipe_runs["default"]
    ev = json.loads((run / "eval.json").read_text())
    nga = ev["nga"]
    assert nga["sigma_movable_stages"] == [1, 2, 3]        # stage 4 is one block: σ has no effect there
    assert nga["sigma_moved"] is True and "warning" not in nga
    assert max(abs(c) for c in nga["sigma_change_last"][:3]) >= 0.01
    assert nga["fusion_max_change"] > 1e-3
    assert not any(SIGMA_STAYED in w for w in ev["warnings"])
    steps = [r for r in read_jsonl(run / "metrics.jsonl") if r["kind"] == "step"]
    assert all(len(r["sigma"]) == 4 and len(r["fusion"]) == 4 for r in steps)
    assert abs(sum(steps[-1]["fusion"]) - 1) < 1e-5
    # σ of a stage trains from the phase its prompts train in: during warm-up only stage 4 does,
    # and stage 4 has one block, so σ_1..3 still hold their initial value then.
    first = [r for r in steps if r["phase"] == "warmup"]
    assert all(r["sigma"][:3] == steps[0]["sigma"][:3] for r in first)
    assert first[-1]["fusion"][3] != 0.25 and first[-1]["fusion"][0] == first[-1]["fusion"][1]
    start = read_jsonl(run / "metrics.jsonl")[0]
    assert start["recipe"] == "default" and start["lr"]["nga"] == RECIPE_LR["default"]["nga"]
    assert start["sigma_init"] == [1.0, 1.0, 1.0, 1.0]


def test_seed_recipe_is_kept_and_warns_that_sigma_stayed(recipe_runs):
    run = recipe_runs["seed"]
    ev = json.loads((run / "eval.json").read_text())
    assert ev["nga"]["sigma_moved"] is False
    assert ev["nga"]["warning"].startswith(SIGMA_STAYED)
    assert any(w.startswith(SIGMA_STAYED) for w in ev["warnings"])
    steps = [r for r in read_jsonl(run / "metrics.jsonl") if r["kind"] == "step"]
    # σ and λ do not move before the global phase
    assert all(r["sigma"] == [1.0] * 4 and r["fusion"] == [0.25] * 4 for r in steps if r["phase"] != "global")


def test_training_log_says_sigma_stayed(tmp_path, capsys):
    cfg = tiny_config(tmp_path, "run.name=log", "train.recipe=seed")
    train(cfg)
    err = capsys.readouterr().err
    assert f"WARNING: {SIGMA_STAYED}" in err

import pytest
import torch

from cascade.run_config import EpochsConfig
from cascade.train.schedule import TrainableSets, apply_phase, lr_factor, phase_for_epoch, phase_plan

from .helpers import tiny_config


def test_default_plan_for_four_stages():
    plan = phase_plan(EpochsConfig(), 4)  # 2 / 3 / 3 (DESIGN §5)
    assert [p.name for p in plan] == ["warmup"] * 2 + ["unfreeze"] * 3 + ["global"] * 3
    assert [p.active_stages for p in plan[:5]] == [(3,), (3,), (3, 2), (3, 2, 1), (3, 2, 1, 0)]
    assert all(p.everything for p in plan[5:]) and not any(p.everything for p in plan[:5])


@pytest.mark.parametrize("stages,unfreeze,expected", [
    (4, 1, [(3, 2, 1, 0)]),                 # all join in the one unfreeze epoch
    (2, 3, [(1, 0), (1, 0), (1, 0)]),       # one stage to add: it joins at once
    (1, 2, [(0,), (0,)]),                   # a single stage: nothing to add
    (3, 4, [(2, 1), (2, 1), (2, 1, 0), (2, 1, 0)]),
])
def test_unfreeze_spreads_stages_deep_to_shallow(stages, unfreeze, expected):
    ep = EpochsConfig(warmup=1, unfreeze=unfreeze, **{"global": 1})
    got = [phase_for_epoch(e, ep, stages).active_stages for e in range(1, 1 + unfreeze)]
    assert got == expected


def test_lr_factor():
    assert lr_factor(0, 100, 10, "cosine") == pytest.approx(0.1)
    assert lr_factor(9, 100, 10, "cosine") == pytest.approx(1.0)
    assert lr_factor(10, 100, 10, "cosine") == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, "cosine") == pytest.approx(0.5)
    assert lr_factor(100, 100, 10, "cosine", 0.1) == pytest.approx(0.1)
    assert lr_factor(50, 100, 0, "constant") == 1.0


def test_adamw_leaves_parameters_without_grad_alone():
    """The masking the trainer relies on: weight decay is not applied when grad is None."""
    a = torch.nn.Parameter(torch.ones(3))
    b = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.AdamW([a, b], lr=0.1, weight_decay=0.5, foreach=False)
    (a.sum() * 2).backward()
    b.grad = None
    before = b.detach().clone()
    opt.step()
    assert torch.equal(b.detach(), before) and b not in opt.state
    assert not torch.equal(a.detach(), torch.ones(3))


def test_trainable_sets_per_phase(tiny_backbone):
    from cascade import CascadeConfig, build_model

    torch.manual_seed(0)
    model = build_model(tiny_backbone, ["joy", "sadness", "anger"], CascadeConfig.from_preset("b32-4stage",
                                                                                              prompt_tokens=2))
    sets = TrainableSets.from_model(model, "seed")     # σ and λ in the global phase only
    ep = EpochsConfig(warmup=1, unfreeze=3, **{"global": 1})
    warm = sets.names_for(model, phase_for_epoch(0, ep, 4))
    assert warm == {"prompts.params.3", "heads.3", "classifier.weight"}
    assert sets.names_for(model, phase_for_epoch(1, ep, 4)) == warm | {"prompts.params.2", "heads.2"}
    # the default recipe: σ and λ of the stages that train (entries of the others masked)
    default = TrainableSets.from_model(model)
    assert default.names_for(model, phase_for_epoch(0, ep, 4)) == warm | {"nga.log_sigma", "fusion_logits"}
    everything = sets.names_for(model, phase_for_epoch(4, ep, 4))
    assert {"nga.log_sigma", "fusion_logits"} <= everything
    counts = apply_phase(model, warm)
    assert set(counts) == {"prompts", "heads", "classifier"}
    assert not any(p.requires_grad for p in model.visual.parameters())
    # a model-level freeze wins over every phase
    frozen_sigma = build_model(tiny_backbone, ["joy", "sadness"], CascadeConfig.from_preset(
        "b32-4stage", prompt_tokens=2, sigma_learnable=False))
    s2 = TrainableSets.from_model(frozen_sigma)
    assert "nga.log_sigma" not in s2.names_for(frozen_sigma, phase_for_epoch(4, ep, 4))


class Snapshots:
    """Copies of every added parameter at the start and after each epoch."""

    def __init__(self):
        self.snaps = []

    def _take(self, state):
        self.snaps.append({n: p.detach().clone() for n, p in state.model.cascade_named_parameters()})

    def on_train_start(self, state):
        self._take(state)
        self.backbone = {k: v.clone() for k, v in state.model.visual.state_dict().items()}

    def on_epoch_end(self, state):
        self._take(state)

    def on_train_end(self, state):
        self.backbone_end = {k: v.clone() for k, v in state.model.visual.state_dict().items()}


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["seed", "default"])
def test_progressive_schedule_trains_only_the_phase_groups(tmp_path, recipe):
    from cascade.train import train

    cfg = tiny_config(tmp_path, "train.epochs.unfreeze=3", "train.epochs.global=1",
                      "data.synthetic.num_samples=60", f"train.recipe={recipe}",
                      # weight decay everywhere: a frozen parameter would shrink if AdamW touched it
                      *[f"train.weight_decay.{g}=0.5" for g in ("prompts", "nga", "fusion", "heads", "classifier")])
    snap = Snapshots()
    path = train(cfg, callbacks=[snap], quiet=True)
    assert len(snap.snaps) == 1 + 5
    changed = [{n for n in a if not torch.equal(a[n], b[n])} for a, b in zip(snap.snaps, snap.snaps[1:])]
    stage = lambda s: {f"prompts.params.{s}", f"heads.{s}"}  # noqa: E731
    if recipe == "seed":
        assert changed[0] == stage(3) | {"classifier.weight"}                     # warm-up
        assert changed[1] == stage(3) | stage(2) | {"classifier.weight"}          # unfreeze: stage 3 joins
        assert changed[2] == changed[1] | stage(1)                                # stage 2 joins
        assert changed[3] == changed[2] | stage(0)                                # stage 1 joins
        assert changed[4] == changed[3] | {"nga.log_sigma", "fusion_logits"}      # global
    else:
        # σ and λ train with their stage; stage 4 has one block, so its σ cannot move
        assert changed[0] == stage(3) | {"classifier.weight", "fusion_logits"}
        assert changed[1] == changed[0] | stage(2) | {"nga.log_sigma"}
        assert changed[2] == changed[1] | stage(1)
        assert changed[3] == changed[2] | stage(0)
        assert changed[4] == changed[3]
        # entry by entry: a stage's σ and fusion logit stay exactly put until the stage joins
        moved = [((b["nga.log_sigma"] != a["nga.log_sigma"]).tolist(), (b["fusion_logits"] != a["fusion_logits"]).tolist())
                 for a, b in zip(snap.snaps, snap.snaps[1:])]
        assert moved[0] == ([False] * 4, [False, False, False, True])
        assert moved[1] == ([False, False, True, False], [False, False, True, True])
        assert moved[2] == ([False, True, True, False], [False, True, True, True])
    # the backbone never changes
    assert snap.backbone.keys() == snap.backbone_end.keys()
    assert all(torch.equal(snap.backbone_end[k], v) for k, v in snap.backbone.items())
    assert (path / "checkpoints" / "best.safetensors").is_file()

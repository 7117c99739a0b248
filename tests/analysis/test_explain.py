"""analysis.explain: gradient-weighted attention rollout per stage, on the tiny model."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from analysis.explain import Relevance, explained_score, resolve_targets, rollout, stage_relevance, upsample
from cascade import CascadeConfig, build_model, load_backbone
from support.threads import _one_thread  # noqa: F401 (autouse fixture)

CLASSES = ["anger", "disgust", "fear", "joy", "sadness", "surprise"]


def images(n=3, seed=0, size=64):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def model_for(backbone, preset="b32-4stage", seed=0, **kw):
    torch.manual_seed(seed)
    return build_model(backbone, CLASSES, CascadeConfig.from_preset(preset, **kw)).eval()


# ---------------------------------------------------------------------------
# the rollout itself, on hand-made attention
# ---------------------------------------------------------------------------


def test_rollout_one_block_is_identity_plus_weighted_attention():
    a = torch.tensor([[[0.5, 0.25, 0.25], [0.2, 0.4, 0.4], [0.1, 0.1, 0.8]]]).view(1, 1, 3, 3)
    g = torch.tensor([[[2.0, 4.0, -1.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]]).view(1, 1, 3, 3)
    row = rollout([a], [g], num_patches=2)
    abar = (a * g).clamp(min=0)[0, 0]
    expected = torch.eye(3)[0] + abar[0] @ torch.eye(3)
    torch.testing.assert_close(row[0], expected)
    assert row[0, 2] == 0  # negative evidence is clamped away


def test_rollout_heads_are_averaged_and_no_gradient_means_identity():
    a = torch.rand(2, 4, 3, 3).softmax(-1)
    g = torch.rand(2, 4, 3, 3)
    two = rollout([a, a], [g, None], num_patches=2)
    one = rollout([a], [g], num_patches=2)
    torch.testing.assert_close(two, one)       # a block whose attention the output ignores adds nothing
    expected = torch.eye(3)[0] + (a * g).mean(1)[:, 0]
    torch.testing.assert_close(one, expected)


def _block(t, entries):
    """Attention where every token attends to token 1 only, with gradient 1 everywhere."""
    a = torch.zeros(1, 1, t, t)
    a[..., 1] = 1.0
    return a, torch.ones_like(a)


def test_rollout_prompt_tokens_replace_and_append():
    # N = 2 patches; one prompt token enters at block 1, another at block 2. Every token
    # attends to token 1 (the newest prompt), so after block 2 CLS's row holds the
    # block-2 prompt, and through it whatever token 1 held before.
    n = 2
    a1, g1 = _block(1 + 1 + n, None)
    # replace: block 2 sees [CLS, P2, p1, p2] (P1's row is dropped)
    a2, g2 = _block(1 + 1 + n, None)
    row = rollout([a1, a2], [g1, g2], num_patches=n, prompt_entries={1: 1, 2: 1}, mode="replace")
    # columns: CLS, p1, p2, P1, P2. Block 1: CLS row = e_CLS + e_P1. Block 2: CLS row += row of P2 = e_P2.
    torch.testing.assert_close(row[0], torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0]))
    # append: block 2 sees [CLS, P2, P1, p1, p2]; token 1 is P2 again
    a2, g2 = _block(1 + 2 + n, None)
    row = rollout([a1, a2], [g1, g2], num_patches=n, prompt_entries={1: 1, 2: 1}, mode="append")
    torch.testing.assert_close(row[0], torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0]))
    # in append mode P1 keeps its row: attending to token 2 (P1) in block 2 reaches P1's rolled-out row
    a2 = torch.zeros(1, 1, 5, 5)
    a2[..., 2] = 1.0
    row = rollout([a1, a2], [g1, torch.ones_like(a2)], num_patches=n, prompt_entries={1: 1, 2: 1}, mode="append")
    # P1's row after block 1 = e_P1 + e_P1 (it attended to itself): CLS gains 2 on P1
    torch.testing.assert_close(row[0], torch.tensor([1.0, 0.0, 0.0, 3.0, 0.0]))


def test_rollout_mean_pooling_and_shape_checks():
    a = torch.rand(1, 2, 3, 3).softmax(-1)
    g = torch.rand(1, 2, 3, 3)
    r = torch.eye(3) + (a * g).mean(1)[0] @ torch.eye(3)
    torch.testing.assert_close(rollout([a], [g], num_patches=2, pooling="mean")[0], r[1:].mean(0))
    with pytest.raises(ValueError, match="block 1: attention over 3 tokens"):
        rollout([a], [g], num_patches=3)
    with pytest.raises(ValueError, match="prompt mode"):
        rollout([a], [g], num_patches=2, mode="insert")


def test_upsample_keeps_range_and_shape():
    m = np.random.default_rng(0).random((2, 3, 4, 4)).astype(np.float32)
    up = upsample(m, (64, 48))
    assert up.shape == (2, 3, 64, 48)
    assert up.min() >= m.min() - 1e-6 and up.max() <= m.max() + 1e-6


def test_resolve_targets():
    assert resolve_targets(None, CLASSES, 2) == [None, None]
    assert resolve_targets("joy", CLASSES, 2) == [3, 3]
    assert resolve_targets("Joy", CLASSES, 1) == [3]
    assert resolve_targets(["fear", 0, None], CLASSES, 3) == [2, 0, None]
    with pytest.raises(ValueError, match="unknown class 'bliss'.*anger, disgust"):
        resolve_targets("bliss", CLASSES, 1)
    with pytest.raises(ValueError, match="outside 0..5"):
        resolve_targets(6, CLASSES, 1)
    with pytest.raises(ValueError, match="2 values for 3 images"):
        resolve_targets(["joy", "fear"], CLASSES, 3)
    with pytest.raises(ValueError):
        resolve_targets(True, CLASSES, 1)


def test_explained_scores():
    lg = torch.tensor([[1.0, 2.0, 6.0]])
    torch.testing.assert_close(explained_score(lg, "centered"), lg - 3.0)
    torch.testing.assert_close(explained_score(lg, "logprob"), lg.log_softmax(-1))
    assert explained_score(lg, "logit") is lg
    with pytest.raises(ValueError, match="score"):
        explained_score(lg, "prob")


# ---------------------------------------------------------------------------
# maps of the cascade model
# ---------------------------------------------------------------------------


def test_stage_relevance_shapes_targets_and_normalisation(tiny_backbone):
    model = model_for(tiny_backbone)
    x = images(4)
    rel = stage_relevance(model, x)
    s = model.num_stages
    assert rel.maps.shape == (s + 1, 4, 4, 4) and rel.raw.shape == rel.maps.shape
    assert rel.names == ["stage 1 (blocks 1-4)", "stage 2 (blocks 5-8)", "stage 3 (blocks 9-11)",
                         "stage 4 (block 12)", "fused"]
    assert rel.rollout_blocks == [4, 8, 11, 12, 12] and rel.prompt_blocks == [1, 5, 9, 12]
    np.testing.assert_allclose(rel.maps.reshape(s + 1, 4, -1).max(-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(rel.maps.reshape(s + 1, 4, -1).min(-1), 0.0, atol=1e-6)
    assert (rel.raw >= 0).all()
    assert ((rel.prompt_share > 0) & (rel.prompt_share < 1)).all()
    np.testing.assert_allclose(rel.prompt_share_by_point.sum(-1), rel.prompt_share, atol=1e-5)
    # the default explains the fused prediction
    with torch.no_grad():
        out = model(x)
    assert rel.target.tolist() == out.logits.argmax(-1).tolist()
    np.testing.assert_allclose(rel.probs[-1], out.probs.numpy(), atol=1e-5)
    # a class by name explains that class, and changes the maps
    other = (out.logits.argmax(-1)[0].item() + 1) % len(CLASSES)
    rel2 = stage_relevance(model, x, CLASSES[other])
    assert rel2.target.tolist() == [other] * 4 and rel2.target_names == [CLASSES[other]] * 4
    assert not np.allclose(rel2.raw[:, 0], rel.raw[:, 0])


def test_batched_equals_one_image_at_a_time(tiny_backbone):
    model = model_for(tiny_backbone)
    x = images(3)
    together = stage_relevance(model, x, batch_size=3)
    chunked = stage_relevance(model, x, batch_size=2)
    single = Relevance.concat([stage_relevance(model, x[i:i + 1]) for i in range(3)])
    for other in (chunked, single):
        np.testing.assert_allclose(other.raw, together.raw, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(other.prompt_share, together.prompt_share, rtol=1e-4, atol=1e-6)
        assert other.target.tolist() == together.target.tolist()


def test_stage_maps_only_see_blocks_up_to_their_stage(tiny_backbone):
    """Stage 1 (blocks 1-4) is explained through blocks 1-4: changing block 12 leaves its map alone."""
    backbone = load_backbone("cascade-tiny", None, seed=0)
    model = model_for(backbone)
    x = images(2)
    before = stage_relevance(model, x, target=0)
    with torch.no_grad():
        backbone.visual.transformer.resblocks[11].attn.in_proj_weight.mul_(3.0)
    after = stage_relevance(model, x, target=0)
    np.testing.assert_allclose(after.raw[:3], before.raw[:3], rtol=1e-5, atol=1e-7)
    assert not np.allclose(after.raw[3:], before.raw[3:])


def test_nga_weights_enter_through_the_gradient(tiny_backbone):
    """σ → 0 puts all of stage 1's NGA weight on block 4: its map is then that of NGA 'last'."""
    x = images(2)
    spread = model_for(tiny_backbone, sigma_init=50.0)
    sharp = model_for(tiny_backbone, sigma_init=0.05)
    last = model_for(tiny_backbone, nga="last")
    r_spread, r_sharp, r_last = (stage_relevance(m, x, target=1) for m in (spread, sharp, last))
    np.testing.assert_allclose(r_sharp.raw[0], r_last.raw[0], rtol=1e-4, atol=1e-7)
    assert not np.allclose(r_spread.raw[0], r_last.raw[0], rtol=1e-3)


def test_no_prompts_means_no_prompt_share_and_model_state_is_kept(tiny_backbone):
    model = model_for(tiny_backbone, prompt_tokens=0)
    model.train()
    x = images(2)
    rel = stage_relevance(model, x)
    assert (rel.prompt_share == 0).all() and rel.prompt_share_by_point.shape == (5, 2, 0)
    assert model.training                   # restored
    assert all(p.grad is None for p in model.parameters())


def test_rejects_bad_input(tiny_backbone):
    model = model_for(tiny_backbone)
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        stage_relevance(model, torch.zeros(3, 64, 64))
    with pytest.raises(ValueError, match="score"):
        stage_relevance(model, images(1), score="probability")


# ---------------------------------------------------------------------------
# exactness: the fused map of a prompt-free cascade is plain CLIP's map
# ---------------------------------------------------------------------------


def open_clip_map(backbone, class_weights, x, target, score):
    """Chefer's map of plain CLIP, through open_clip's own blocks and torch's attention math.

    Hooks make each block's ``nn.MultiheadAttention`` return its per-head probabilities
    (the tensor its own ``bmm`` uses, a view of which it returns); the rollout is written
    out here from the paper's definition.
    """
    visual = backbone.visual
    probs = []

    def want_weights(_mod, args, kwargs):
        return args, {**kwargs, "need_weights": True, "average_attn_weights": False}

    def keep(_mod, _args, output):
        assert output[1]._base is not None
        probs.append(output[1]._base)      # [B*heads, T, T], the softmax output itself

    handles = []
    for blk in visual.transformer.resblocks:
        handles.append(blk.attn.register_forward_pre_hook(want_weights, with_kwargs=True))
        handles.append(blk.attn.register_forward_hook(keep))
    try:
        with torch.enable_grad():
            h = visual._embeds(x).detach().requires_grad_(True)
            for blk in visual.transformer.resblocks:
                h = blk(h)
            image = visual.ln_post(h[:, 0]) @ visual.proj
            logits = backbone.logit_scale * F.normalize(image, dim=-1) @ F.normalize(class_weights, dim=-1).t()
            y = explained_score(logits, score).gather(1, target[:, None]).sum()
            grads = torch.autograd.grad(y, probs)
    finally:
        for hd in handles:
            hd.remove()
    with torch.no_grad():   # the path above is CLIP's image embedding
        torch.testing.assert_close(image, backbone.model.encode_image(x), atol=1e-5, rtol=0)
    b, t = x.shape[0], probs[0].shape[-1]
    r = torch.eye(t).expand(b, t, t)
    for a, g in zip(probs, grads):
        abar = (g * a).clamp(min=0).view(b, -1, t, t).mean(1)
        r = r + abar @ r
    return r[:, 0, 1:].detach()


@pytest.mark.parametrize("score", ["centered", "logit"])
def test_fused_map_without_prompts_is_plain_clip_map(tiny_backbone, score):
    model = model_for(tiny_backbone, prompt_tokens=0, fusion_stages=[4])
    x = images(3)
    rel = stage_relevance(model, x, score=score)
    ref = open_clip_map(tiny_backbone, model.classifier.weight.detach(), x, torch.as_tensor(rel.target), score)
    got = torch.as_tensor(rel.raw[-1]).reshape(3, -1)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-6 * float(ref.abs().max()))
    # and the normalised map is the min-max of CLIP's
    lo, hi = ref.min(1, keepdim=True).values, ref.max(1, keepdim=True).values
    np.testing.assert_allclose(rel.maps[-1].reshape(3, -1), ((ref - lo) / (hi - lo)).numpy(), atol=1e-4)
    assert (rel.prompt_share[-1] == 0).all()

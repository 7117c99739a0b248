"""The fast block path (:func:`cascade.blocks.block_forward`) agrees with open_clip's blocks."""
import pytest
import torch

from cascade import CascadeConfig, build_model, cascade_loss

CLASSES = ["anger", "disgust", "fear", "joy", "sadness", "surprise"]


def _run(model, x, y, fast):
    model.use_fast_blocks = fast
    model.zero_grad(set_to_none=True)
    out = model(x, return_block_features=True)
    cascade_loss(out, y)["total"].backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.use_fast_blocks = True
    return out, grads


@pytest.mark.parametrize("preset,overrides", [
    ("b32-4stage", {}),
    ("b32-4stage", {"prompt_mode": "append", "pooling": "mean", "prompt_sharing": "shared"}),
    ("b16-3stage", {}),
    ("shallow", {}),
    ("vpt-deep", {"pooling": "mean"}),
])
def test_fast_blocks_match_open_clip_blocks(tiny_backbone, preset, overrides):
    torch.manual_seed(0)
    model = build_model(tiny_backbone, CLASSES, CascadeConfig.from_preset(preset, **overrides))
    with torch.no_grad():
        for _, p in model.cascade_named_parameters():
            p.add_(torch.randn_like(p) * 0.05)
    x, y = torch.randn(3, 3, 64, 64), torch.tensor([0, 3, 5])
    ref, ref_g = _run(model, x, y, fast=False)
    new, new_g = _run(model, x, y, fast=True)
    torch.testing.assert_close(new.logits, ref.logits, atol=2e-5, rtol=0)
    torch.testing.assert_close(new.block_features, ref.block_features, atol=2e-5, rtol=1e-5)
    assert set(new_g) == set(ref_g) and new_g
    for name in ref_g:
        torch.testing.assert_close(new_g[name], ref_g[name], atol=1e-5, rtol=1e-4, msg=name)
    assert all(p.grad is None for p in model.visual.parameters())


def test_hooked_blocks_see_full_sequences(tiny_backbone):
    """A forward hook on a block (feature capture) makes that block run as open_clip's module."""
    model = build_model(tiny_backbone, CLASSES, CascadeConfig.from_preset("b32-4stage"))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        plain = model(x).logits
    seen = []
    last = model.visual.transformer.resblocks[-1]
    handle = last.register_forward_hook(lambda m, a, out: seen.append(out.shape[1]))
    try:
        with torch.no_grad():
            hooked = model(x).logits
    finally:
        handle.remove()
    assert seen == [1 + 16 + tiny_backbone.info.num_patches]
    torch.testing.assert_close(hooked, plain, atol=2e-5, rtol=0)

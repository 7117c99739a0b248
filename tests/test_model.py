import pytest
import torch
import torch.nn.functional as F

from cascade import CascadeConfig, build_model, cascade_loss, load_backbone

CLASSES = ["anger", "disgust", "fear", "joy", "sadness", "surprise"]


def images(backbone, n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = backbone.info.image_size
    return torch.randn(n, 3, s, s, generator=g)


def zero_shot_logits(backbone, model, x):
    with torch.no_grad():
        feat = F.normalize(backbone.model.encode_image(x), dim=-1)
        text = F.normalize(model.classifier.weight, dim=-1)
        return backbone.logit_scale * feat @ text.t()


def exactness_config():
    # No prompts, and all fusion weight on the last-block stage.
    return CascadeConfig.from_preset("b32-4stage", prompt_tokens=0, fusion_stages=[4])


def test_exactness_tiny(tiny_backbone):
    model = build_model(tiny_backbone, CLASSES, exactness_config())
    x = images(tiny_backbone)
    with torch.no_grad():
        out = model(x)
    torch.testing.assert_close(out.logits, zero_shot_logits(tiny_backbone, model, x), atol=1e-5, rtol=0)
    assert torch.allclose(out.fusion_weights, torch.tensor([0.0, 0.0, 0.0, 1.0]))


@pytest.mark.slow
def test_exactness_vit_b32_random():
    backbone = load_backbone("ViT-B-32", None)
    model = build_model(backbone, CLASSES, exactness_config())
    x = images(backbone, n=2)
    with torch.no_grad():
        out = model(x)
    torch.testing.assert_close(out.logits, zero_shot_logits(backbone, model, x), atol=1e-5, rtol=0)


@pytest.mark.slow
def test_b32_4stage_parameter_report():
    backbone = load_backbone("ViT-B-32", None)
    model = build_model(backbone, CLASSES, CascadeConfig.from_preset("b32-4stage"))
    report = model.parameter_report()
    assert report["prompts"] == 4 * 16 * 768 == 49_152
    assert report["nga"] == 4
    assert report["fusion"] == 4
    assert report["heads"] == 4 * 768 * 512
    assert report["classifier"] == 6 * 512
    assert report["other"] == 0
    assert report["backbone_trainable"] == 0
    assert not any(p.requires_grad for p in model.visual.parameters())


def test_outputs_shapes(tiny_backbone):
    model = build_model(tiny_backbone, CLASSES, CascadeConfig.from_preset("b32-4stage"))
    out = model(images(tiny_backbone, n=3), return_block_features=True)
    assert out.logits.shape == (3, 6)
    assert out.stage_logits.shape == (4, 3, 6)
    assert out.stage_embeddings.shape == (4, 3, tiny_backbone.info.embed_dim)
    assert [w.numel() for w in out.nga_weights] == [4, 4, 3, 1]
    assert out.fusion_weights.shape == (4,)
    assert out.block_features.shape == (12, 3, tiny_backbone.info.width)
    assert out.block_ids == list(range(1, 13))


def test_one_step_changes_every_group_not_backbone(tiny_backbone):
    cfg = CascadeConfig.from_preset("b32-4stage", layernorm="own")
    model = build_model(tiny_backbone, CLASSES, cfg)
    backbone_before = {k: v.clone() for k, v in model.visual.state_dict().items()}
    groups_before = {g: [p.detach().clone() for _, p in ps] for g, ps in model.parameter_groups().items()}
    opt = torch.optim.AdamW([p for _, p in model.cascade_named_parameters() if p.requires_grad], lr=1e-2)
    x = images(tiny_backbone, n=6)
    labels = torch.arange(6)
    dist = torch.softmax(torch.randn(6, 6), -1)
    loss = cascade_loss(model(x), labels, dist)["total"]
    loss.backward()
    opt.step()
    for group, params in model.parameter_groups().items():
        assert params, group
        changed = any(not torch.equal(a, p.detach()) for a, (_, p) in zip(groups_before[group], params))
        assert changed, f"group {group} did not change"
    for k, v in model.visual.state_dict().items():
        assert torch.equal(v, backbone_before[k]), k
    assert all(not p.requires_grad for p in model.visual.parameters())


def test_sequence_length_replace_and_append(tiny_backbone):
    n = tiny_backbone.info.num_patches
    seen = []

    def hook(_module, args):
        seen.append(args[0].shape[1])

    for mode, expected in [("replace", [1 + 3 + n] * 12), ("append", [1 + 3 + n] * 4 + [1 + 6 + n] * 4 + [1 + 11 + n] * 3 + [1 + 12 + n])]:
        cfg = CascadeConfig.from_preset("b32-4stage", prompt_tokens=[3, 3, 5, 1], prompt_mode=mode)
        model = build_model(tiny_backbone, CLASSES, cfg)
        handles = [blk.register_forward_pre_hook(hook) for blk in model.visual.transformer.resblocks]
        seen.clear()
        with torch.no_grad():
            model(images(tiny_backbone, n=2))
        for h in handles:
            h.remove()
        if mode == "replace":
            assert seen == [1 + 3 + n] * 8 + [1 + 5 + n] * 3 + [1 + 1 + n]
        else:
            assert seen == [1 + 3 + n] * 4 + [1 + 6 + n] * 4 + [1 + 11 + n] * 3 + [1 + 12 + n]


def test_replace_keeps_1_plus_m_plus_n(tiny_backbone):
    n = tiny_backbone.info.num_patches
    lengths = []
    cfg = CascadeConfig.from_preset("b32-4stage", prompt_tokens=16)
    model = build_model(tiny_backbone, CLASSES, cfg)
    hs = [b.register_forward_pre_hook(lambda m, a: lengths.append(a[0].shape[1])) for b in model.visual.transformer.resblocks]
    with torch.no_grad():
        model(images(tiny_backbone, n=1))
    for h in hs:
        h.remove()
    assert set(lengths) == {1 + 16 + n}


def test_prefix_path_is_identical(tiny_backbone):
    cfg = CascadeConfig.from_preset("b16-3stage")
    model = build_model(tiny_backbone, CLASSES, cfg)
    assert model.frozen_prefix == 5
    x = images(tiny_backbone)
    with torch.no_grad():
        direct = model(x).logits
        cached = model(prefix_tokens=model.forward_prefix(x)).logits
    assert torch.equal(direct, cached)


def test_forward_head_with_sigma_override_matches_set_sigma(tiny_backbone):
    model = build_model(tiny_backbone, CLASSES, CascadeConfig.from_preset("b32-4stage"))
    x = images(tiny_backbone)
    with torch.no_grad():
        feats = model.forward_features(x)
        swept = model.forward_head(feats, sigmas=torch.tensor([0.5, 2.0, 3.0, 1.0])).logits
        model.set_sigma([0.5, 2.0, 3.0, 1.0])
        full = model(x).logits
    torch.testing.assert_close(swept, full, atol=1e-6, rtol=0)


def test_mean_pooling_own_norm_shared_prompts_run(tiny_backbone):
    cfg = CascadeConfig.from_preset("b32-4stage", pooling="mean", layernorm="own", prompt_sharing="shared",
                                    nga="free", fusion="uniform")
    model = build_model(tiny_backbone, CLASSES, cfg)
    out = model(images(tiny_backbone, n=2))
    assert torch.isfinite(out.logits).all()
    assert model.parameter_report()["prompts"] == 16 * tiny_backbone.info.width
    assert model.parameter_report()["fusion"] == 0


def test_every_method_builds_and_runs(tiny_backbone):
    from cascade import METHODS, method_config

    for name in METHODS:
        model = build_model(tiny_backbone, CLASSES, method_config(name))
        out = model(images(tiny_backbone, n=2))
        assert out.logits.shape == (2, 6), name
    zs = build_model(tiny_backbone, CLASSES, method_config("zeroshot"))
    assert zs.parameter_report()["total_trainable"] == 0
    nnc = method_config("nga-no-cascade")
    assert nnc.stage_ranges() == [(1, 12)]
    assert method_config("cascade-no-nga").nga == "last"
    assert method_config("concat-fusion").fusion == "concat"


def test_any_classnames_work(tiny_backbone):
    model = build_model(tiny_backbone, ["happy dog", "sad cat"], CascadeConfig.from_preset("shallow"))
    assert model(images(tiny_backbone, n=1)).logits.shape == (1, 2)


def test_device_follows_backbone(tiny_backbone):
    model = build_model(tiny_backbone, CLASSES, CascadeConfig.from_preset("b32-4stage"))
    devices = {p.device for p in model.parameters()}
    assert devices == {torch.device("cpu")}


def test_several_poolings_in_one_pass(tiny_backbone):
    model = build_model(tiny_backbone, CLASSES, CascadeConfig.from_preset("b32-4stage", prompt_tokens=4))
    x = images(tiny_backbone, n=3)
    with torch.no_grad():
        both = model.forward_features(x, all_blocks=True, poolings=["cls", "mean"]).features
        own = model.forward_features(x, all_blocks=True).features
    assert both.shape == (12, 3, 2, tiny_backbone.info.width)
    torch.testing.assert_close(both[:, :, 0], own, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="poolings"):
        model.forward_features(x, poolings=["max"])


@pytest.mark.parametrize("dtype,tol", [("bf16", 3e-2), ("fp16", 5e-3)])
def test_frozen_dtype_keeps_trainables_fp32_and_outputs_close(dtype, tol):
    # A fresh backbone: set_frozen_dtype converts the (shared) visual tower in place.
    backbone = load_backbone("cascade-tiny", None, seed=0)
    reference = build_model(backbone, CLASSES)
    model = build_model(load_backbone("cascade-tiny", None, seed=0), CLASSES)
    model.load_state_dict(reference.state_dict())
    model.set_frozen_dtype(dtype)
    low = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    assert model.frozen_dtype == low
    assert model.visual.transformer.resblocks[0].attn.in_proj_weight.dtype == low
    assert model.visual.ln_post.weight.dtype == torch.float32 and model.visual.proj.dtype == torch.float32
    assert {p.dtype for _, p in model.cascade_named_parameters()} == {torch.float32}
    x = images(backbone)
    out, ref = model(x), reference(x)
    assert out.logits.dtype == torch.float32 and out.stage_embeddings.dtype == torch.float32
    scale = ref.logits.abs().max()
    assert (out.logits - ref.logits).abs().max() <= tol * scale
    cascade_loss(out, torch.tensor([0, 1, 2, 3]))["total"].backward()
    assert model.prompts.params[0].grad is not None and model.prompts.params[0].grad.dtype == torch.float32
    assert all(p.grad is None for p in model.visual.parameters())
    # Prefix tokens (e.g. a float32 cache) are taken in the blocks' dtype.
    with torch.no_grad():
        cached = model.forward_prefix(x).float()
        torch.testing.assert_close(model(prefix_tokens=cached).logits, model(x).logits)


def test_frozen_dtype_rejects_unknown_names():
    model = build_model(load_backbone("cascade-tiny", None, seed=0), CLASSES)
    with pytest.raises(ValueError, match="frozen dtype.*int8"):
        model.set_frozen_dtype("int8")


def test_compile_model_mode_needs_inductor(tiny_backbone):
    from cascade.model import compile_model

    model = build_model(tiny_backbone, CLASSES)
    with pytest.raises(ValueError, match="reduce-overhead.*inductor"):
        compile_model(model, "reduce-overhead", "aot_eager")
    compiled = compile_model(model, "default", "eager")
    x = images(tiny_backbone)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x).logits, model(x).logits)


@pytest.mark.parametrize("preset,kw", [("b32-4stage", {}), ("b32-4stage", {"prompt_mode": "append"}),
                                       ("b16-3stage", {"pooling": "mean"}), ("shallow", {}),
                                       ("vpt-deep", {"prompt_sharing": "shared"})])
def test_explain_mode_gives_the_fast_path_logits(tiny_backbone, preset, kw):
    torch.manual_seed(0)
    model = build_model(tiny_backbone, CLASSES, CascadeConfig.from_preset(preset, **kw)).eval()
    x = images(tiny_backbone, n=3)
    with torch.no_grad():
        fast = model(x)
    out, attention = model.forward_explain(x)
    torch.testing.assert_close(out.logits, fast.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.stage_logits, fast.stage_logits, atol=1e-5, rtol=0)
    assert len(attention) == model.depth
    heads = tiny_backbone.visual.transformer.resblocks[0].attn.num_heads
    for a in attention:
        assert a.shape[:2] == (3, heads) and a.shape[-1] == a.shape[-2]
        torch.testing.assert_close(a.sum(-1), torch.ones_like(a.sum(-1)))
        assert a.requires_grad   # in the graph: gradients can be taken with respect to it


def test_explain_mode_needs_plain_attention_blocks(tiny_backbone, monkeypatch):
    import cascade.model as model_module

    model = build_model(tiny_backbone, CLASSES, CascadeConfig.from_preset("b32-4stage"))
    monkeypatch.setattr(model_module, "supports_fast_block", lambda block: False)
    with pytest.raises(ValueError, match="cascade-tiny: explanation maps need open_clip's plain"):
        model.forward_explain(images(tiny_backbone, n=1))

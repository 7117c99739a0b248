"""Analytic FLOP counts for the ViT forward and the frozen-backbone backward.

One multiply-add counts as 2 FLOPs. Per image, with width D, MLP width r·D
(r = 4 for CLIP), a block whose input has L rows and which computes Lq output rows
(Lq = L except where later blocks read fewer rows: see ``cascade.blocks.needed_rows``):

    qkv projection   2·D·D·(Lq + 2L)      queries of the Lq rows, keys/values of all L
    attention        4·Lq·L·D             QKᵀ and A·V (all heads together)
    out projection   2·Lq·D·D
    MLP              4·r·Lq·D·D           two matmuls D→rD→D
    = (2Lq + 4L)·D² + 4·Lq·L·D + (2 + 4r)·Lq·D²   → 24·L·D² + 4·L²·D when Lq = L, r = 4

plus the patch embedding 2·N·(3p²)·D and the small heads (2·D·E per stage, 2·E·C per
set of logits). Plain ``encode_image`` has L = Lq = 1 + N in every block plus 2·D·E.

Backward with the backbone frozen computes gradients with respect to activations
only, and only in blocks from the first prompted block on (the frozen prefix runs
under no_grad, and nothing upstream of the first prompt needs a gradient):

    every linear layer   grad_input = grad_output · W        = its forward FLOPs (no weight grads)
    attention            dQ, dK from QKᵀ and dA, dV from A·V = 2 × its forward FLOPs
    heads (trainable)    grad of input and of the weight       = 2 × their forward FLOPs

At a block where M prompt tokens enter (fast path), their LayerNorm and q/k/v
projections are the same for every image and are computed once per batch of B: the
qkv terms count those M rows as M/B rows per image. In the first prompted block after
a frozen prefix (or the embedding) the other rows need no gradient, so its qkv backward
covers the prompt rows only (M/B per image for k, v; for q, M/B when the block
computes every row, else all Lq kept rows if a prompt row is kept and none if not).

so a training step is ``forward + backward`` as counted here. This is the model's
algorithmic FLOP count: an attention kernel that recomputes QKᵀ in its backward
(flash attention) does more work than counted, which is not credited to MFU.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from torch.utils.flop_counter import FlopCounterMode

from .blocks import needed_rows


@dataclass
class FlopCount:
    forward: float
    backward: float
    blocks: list[dict]

    @property
    def train_step(self) -> float:
        return self.forward + self.backward

    def to_dict(self) -> dict:
        d = asdict(self)
        d["train_step"] = self.train_step
        return d


def _mlp_ratio(visual) -> float:
    blk = visual.transformer.resblocks[0]
    try:
        return blk.mlp.c_fc.out_features / blk.mlp.c_fc.in_features
    except AttributeError:
        return 4.0


def block_flops(L: int, Lq: int, D: int, r: float) -> tuple[float, float]:
    """(linear FLOPs, attention FLOPs) of one block's forward, per image (no shared rows)."""
    linear = 2 * D * D * (Lq + 2 * L) + 2 * Lq * D * D + 2 * 2 * r * Lq * D * D
    attention = 4 * Lq * L * D
    return linear, attention


def prompted_block_flops(L: int, Lq: int, D: int, r: float, *, shared: int = 0, batch: int = 1,
                         kept_shared: int = 0, full_rows: bool = True, input_grad: bool = True
                         ) -> tuple[float, float, float]:
    """(forward linear, forward attention, backward) FLOPs per image of one block.

    ``shared``: prompt rows entering here (projected once per batch of ``batch``);
    ``kept_shared``: how many of them are among the ``Lq`` kept rows; ``full_rows``: the
    block computes every output row (one packed qkv projection); ``input_grad``: rows
    other than the new prompts need gradients (False right after a frozen prefix).
    """
    per_image = L - shared + shared / batch          # rows whose k, v (and q) are projected
    q_rows = per_image if full_rows else Lq
    qkv = 2 * D * D * (q_rows + 2 * per_image)
    rest = 2 * Lq * D * D + 4 * r * Lq * D * D
    attention = 4 * Lq * L * D
    if input_grad:
        qkv_bwd = qkv
    else:
        # q of kept rows is one projection of a [B, Lq] tensor: all of it needs a gradient
        # once a prompt row is among them, none of it otherwise.
        q_bwd = shared / batch if full_rows else (Lq if kept_shared else 0)
        qkv_bwd = 2 * D * D * (q_bwd + 2 * shared / batch)
    return qkv + rest, attention, qkv_bwd + rest + 2 * attention


def _patch_embed(info) -> float:
    return 2 * info.num_patches * 3 * info.patch_size ** 2 * info.width


def plain_flops(info, visual) -> FlopCount:
    """Open_clip ``encode_image``: every block on all 1+N rows, then the projection."""
    D, L, r = info.width, 1 + info.num_patches, _mlp_ratio(visual)
    lin, att = block_flops(L, L, D, r)
    blocks = [dict(block=i + 1, rows_in=L, rows_out=L, grad=False) for i in range(info.depth)]
    fwd = _patch_embed(info) + info.depth * (lin + att) + 2 * D * info.embed_dim
    return FlopCount(forward=fwd, backward=0.0, blocks=blocks)


def cascade_flops(model, *, cached_prefix: bool = False, fast: bool | None = None, batch_size: int = 1) -> FlopCount:
    """FLOPs per image of ``model`` (a ``CascadeCLIP``), following its forward's row plan.

    ``cached_prefix``: the frozen prefix's tokens come from a cache (no patch embedding,
    no prefix blocks). ``fast``: whether the fast block path runs (default: the model's
    setting). ``batch_size``: spreads the once-per-batch prompt projections over the batch.
    """
    info = model.backbone_info
    D, N, r, E = info.width, info.num_patches, _mlp_ratio(model.visual), info.embed_dim
    fast = model._fast_blocks() if fast is None else fast
    replace = model.config.prompt_mode == "replace"
    first_grad = min(model.prompt_points) if model.prompt_points else None
    fwd = bwd = 0.0
    blocks = []
    start = model.frozen_prefix
    if not cached_prefix:
        fwd += _patch_embed(info)
        lin, att = block_flops(1 + N, 1 + N, D, r)
        fwd += start * (lin + att)
        blocks += [dict(block=i + 1, rows_in=1 + N, rows_out=1 + N, grad=False) for i in range(start)]
    n_prompt = 0
    for i in range(start, model.depth):
        block = i + 1
        point = model._point_of_block.get(block)
        m_new = 0
        if point is not None:
            m_new = model.prompts.tokens[point]
            n_prompt = m_new if replace else n_prompt + m_new
        L = 1 + n_prompt + N
        Lq, kept_new, full = L, m_new, True
        if fast:
            keep = needed_rows(L, n_prompt, last=block == model.depth, pooling=model.config.pooling,
                               prompts_replaced=replace and model._point_of_block.get(block + 1) is not None
                               and n_prompt > 0)
            if keep is not None:
                full = False
                Lq = sum(hi - lo for lo, hi in keep.ranges)
                kept_new = sum(max(0, min(hi, 1 + m_new) - max(lo, 1)) for lo, hi in keep.ranges)
                if keep.drops_prompts:
                    n_prompt = 0
        grad = first_grad is not None and block >= first_grad
        lin, att, back = prompted_block_flops(
            L, Lq, D, r, shared=m_new if fast else 0, batch=batch_size, kept_shared=kept_new if fast else 0,
            full_rows=full, input_grad=not (fast and block == first_grad and m_new > 0),
        )
        fwd += lin + att
        if grad:
            bwd += back
        blocks.append(dict(block=block, rows_in=L, rows_out=Lq, grad=grad))
    # Stage heads (trainable: grads of input and weight) and classifier logits.
    heads = model.num_stages * 2 * D * E
    logits = (model.num_stages + 1) * 2 * E * model.classifier.num_classes
    fwd += heads + logits
    bwd += 2 * heads + 2 * logits
    return FlopCount(forward=fwd, backward=bwd, blocks=blocks)


def counted_flops(fn) -> float:
    """FLOPs of one call of ``fn`` as ``torch.utils.flop_counter.FlopCounterMode`` counts them.

    It counts matmuls and convolutions (and fused attention on CUDA); elementwise work
    is not counted.
    """
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return float(counter.get_total_flops())


PEAK_BF16_TFLOPS = {
    # Dense (no sparsity) bf16 tensor-core peaks from the vendors' data sheets.
    "H200": 989.4,
    "H100 SXM": 989.4,
    "H100 80GB HBM3": 989.4,
    "H100 NVL": 835.0,
    "H100 PCIe": 756.0,
    "H100": 756.0,
    "GH200": 989.4,
    "B200": 2250.0,
    "A100": 312.0,
    "A10G": 70.0,   # A10G: 70 dense bf16 (sheet: 140 with sparsity)
    "L40S": 362.0,
    "L4": 121.0,
    "RTX 4090": 165.2,
    "RTX 3090": 71.0,
}


def peak_tflops(device_name: str, override: float | None = None) -> tuple[float | None, str]:
    """Peak dense bf16 TFLOP/s for a device name; (None, reason) when unknown."""
    if override:
        return float(override), "given"
    for key, value in PEAK_BF16_TFLOPS.items():
        if key.lower() in device_name.lower():
            return value, f"data sheet ({key})"
    return None, f"unknown device {device_name!r}: pass --peak-tflops"

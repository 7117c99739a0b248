"""Fast execution of open_clip's ViT blocks for the cascade forward pass.

The same arithmetic as open_clip's ``ResidualAttentionBlock`` (up to float rounding),
restructured for speed: contiguous projections with ``scaled_dot_product_attention``,
prompt tokens projected once per batch, and only the output rows that something
downstream reads. Blocks of other types, or with forward hooks, run as modules.
An explain mode (``attention=[...]``) computes the attention probabilities explicitly
and hands them out, for relevance maps of a few images.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules import module as _m


@dataclass(frozen=True)
class RowSelection:
    """Output rows of a block that something downstream reads, as ``[lo, hi)`` ranges."""

    ranges: tuple[tuple[int, int], ...]
    drops_prompts: bool = False   # output holds CLS + patches only (prompts dropped)
    patches_only: bool = False    # output holds the patch tokens only


def needed_rows(length: int, n_prompt: int, *, last: bool, pooling: str,
                prompts_replaced: bool) -> RowSelection | None:
    """Rows of a block's output that are read later; None when every row is.

    - last block: only the pooled rows (CLS, or the patch tokens for mean pooling);
    - the next block replaces this block's prompt tokens: CLS and the patches.
    """
    if last:
        if pooling == "cls":
            return RowSelection(((0, 1),))
        return RowSelection(((1 + n_prompt, length),), patches_only=True)
    if prompts_replaced and n_prompt > 0:
        return RowSelection(((0, 1), (1 + n_prompt, length)), drops_prompts=True)
    return None


def supports_fast_block(block: nn.Module) -> bool:
    """True for open_clip's plain ``ResidualAttentionBlock`` (self-attention, packed qkv)."""
    attn = getattr(block, "attn", None)
    return (
        type(block).__name__ == "ResidualAttentionBlock"
        and isinstance(attn, nn.MultiheadAttention)
        and attn.batch_first
        and attn._qkv_same_embed_dim
        and attn.in_proj_bias is not None
        and attn.bias_k is None and attn.bias_v is None
        and not attn.add_zero_attn
        and not hasattr(block, "ln_1_kv")
        and all(hasattr(block, n) for n in ("ln_1", "ln_2", "mlp", "ls_1", "ls_2"))
    )


def has_hooks_on(module: nn.Module) -> bool:
    return bool(_m._global_forward_hooks or _m._global_forward_pre_hooks
                or module._forward_hooks or module._forward_pre_hooks)


def has_hooks(block: nn.Module) -> bool:
    """Forward hooks on ``block`` or its attention (or global ones) that must see the module run.

    Hooks (feature capture for CKA, tests counting sequence lengths) expect the block
    called as a module with every output row, so such blocks take open_clip's path.
    """
    if _m._global_forward_hooks or _m._global_forward_pre_hooks:
        return True
    return any(mod._forward_hooks or mod._forward_pre_hooks for mod in (block, block.attn))


def patchify_supported(visual: nn.Module, images: torch.Tensor) -> bool:
    conv = getattr(visual, "conv1", None)
    if not isinstance(conv, nn.Conv2d) or images.dim() != 4:
        return False
    p = conv.kernel_size
    return (
        conv.bias is None and tuple(conv.stride) == tuple(p) and tuple(conv.padding) == (0, 0)
        and tuple(conv.dilation) == (1, 1) and conv.groups == 1 and conv.padding_mode == "zeros"
        and images.shape[-2] % p[0] == 0 and images.shape[-1] % p[1] == 0
        and all(hasattr(visual, n) for n in ("class_embedding", "positional_embedding", "patch_dropout", "ln_pre"))
        and not has_hooks_on(conv)
    )


def patch_embed(visual: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """``visual._embeds`` with the patch convolution as a matmul (same operation, stride = kernel)."""
    conv = visual.conv1
    b, c, h, w = images.shape
    ph, pw = conv.kernel_size
    gh, gw = h // ph, w // pw
    patches = images.reshape(b, c, gh, ph, gw, pw).permute(0, 2, 4, 1, 3, 5).reshape(b, gh * gw, c * ph * pw)
    x = F.linear(patches, conv.weight.reshape(conv.out_channels, -1))
    cls = visual.class_embedding.view(1, 1, -1).expand(b, -1, -1).to(x.dtype)
    x = torch.cat([cls, x], dim=1)
    x = x + visual.positional_embedding.to(x.dtype)
    x = visual.patch_dropout(x)
    return visual.ln_pre(x)


class _Tokens:
    """A token sequence [B, L, ·]: ``x`` [B, Lx, ·] with, optionally, batch-shared rows ``p``
    [M, ·] right after CLS (prompt tokens are the same for every image)."""

    def __init__(self, x: torch.Tensor, p: torch.Tensor | None = None):
        self.x, self.p = x, p

    @property
    def length(self) -> int:
        return self.x.shape[1] + (0 if self.p is None else self.p.shape[0])

    def map(self, fn) -> "_Tokens":
        """Apply a row-wise function (LayerNorm, a linear layer) to every row, shared rows once."""
        return _Tokens(fn(self.x), None if self.p is None else fn(self.p))

    def take(self, ranges: tuple[tuple[int, int], ...] | None = None) -> torch.Tensor:
        """The rows in ``ranges`` (default all) as one [B, n, ·] tensor."""
        if self.p is None:
            if ranges is None:
                return self.x
            if len(ranges) == 1:
                return self.x[:, ranges[0][0]:ranges[0][1]]
            # One gather rather than slices and a cat: its backward fills one zero tensor, not
            # one per slice plus their sum.
            rows = torch.cat([torch.arange(lo, hi, device=self.x.device) for lo, hi in ranges])
            return self.x.index_select(1, rows)
        b, m = self.x.shape[0], self.p.shape[0]
        # (first row, end row, tensor, shift from sequence row to the tensor's row)
        segments = [(0, 1, self.x, 0), (1, 1 + m, self.p, -1), (1 + m, self.length, self.x, -m)]
        pieces = []
        for lo, hi in ranges if ranges is not None else ((0, self.length),):
            for s_lo, s_hi, t, shift in segments:
                a, c = max(lo, s_lo), min(hi, s_hi)
                if a < c:
                    if t is self.p:
                        pieces.append(t[a + shift:c + shift].unsqueeze(0).expand(b, -1, -1))
                    else:
                        pieces.append(t[:, a + shift:c + shift])
        if len(pieces) == 1 and pieces[0].stride(0) != 0:
            return pieces[0]
        return torch.cat(pieces, dim=1)


def block_forward(block: nn.Module, x: torch.Tensor, keep: RowSelection | None = None,
                  prompts: torch.Tensor | None = None, attention: list[torch.Tensor] | None = None) -> torch.Tensor:
    """open_clip's ``ResidualAttentionBlock.forward`` on batch-first ``x`` [B, L, D].

    Same operations as ``nn.MultiheadAttention``'s SDPA path, but with contiguous
    [B, L, ·] projections: with gradients on, ``nn.MultiheadAttention`` transposes to
    [L, B, D] and its projections fall back to batched matmuls against an expanded
    weight, forward and backward (≈2× slower on CPU).

    ``keep``: queries, the output projection and the MLP run on the kept rows only;
    keys and values use all rows, so the kept rows are unchanged.
    ``prompts`` [M, D]: tokens to put right after CLS first (as :func:`insert_prompts`
    with nothing to replace). Their LayerNorm and q/k/v projections are the same for
    every image, so they are computed once; and when ``x`` needs no gradient (a frozen
    prefix's output), no gradient is computed for its rows' projections.
    ``attention``: explain mode. The attention runs as an explicit softmax instead of
    SDPA (which never materialises the probabilities) and the probabilities
    [B, heads, queries, L] are appended to the list, inside the autograd graph, so
    gradients with respect to them can be taken. Same outputs up to float rounding.
    """
    attn = block.attn
    b, _, d = x.shape
    heads = attn.num_heads
    hd = d // heads
    w, bias = attn.in_proj_weight, attn.in_proj_bias
    tokens = _Tokens(x, None if prompts is None else prompts.to(dtype=x.dtype))
    length = tokens.length
    h = tokens.map(block.ln_1)
    if keep is None:
        residual = tokens.take()
        qkv = h.map(lambda t: F.linear(t, w, bias)).take()
        q, k, v = qkv.view(b, length, 3, heads, hd).permute(2, 0, 3, 1, 4).unbind(0)
    else:
        residual = tokens.take(keep.ranges)
        hq = h.take(keep.ranges)
        q = F.linear(hq, w[:d], bias[:d]).view(b, hq.shape[1], heads, hd).transpose(1, 2)
        kv = h.map(lambda t: F.linear(t, w[d:], bias[d:])).take()
        k, v = kv.view(b, length, 2, heads, hd).permute(2, 0, 3, 1, 4).unbind(0)
    dropout = attn.dropout if (attn.training and attn.dropout > 0) else 0.0
    if attention is None:
        o = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
    else:
        # SDPA's default scale, 1/sqrt(head dim), on the scores.
        probs = torch.softmax((q @ k.transpose(-2, -1)) * hd ** -0.5, dim=-1)
        attention.append(probs)
        o = (F.dropout(probs, dropout) if dropout else probs) @ v
    o = o.transpose(1, 2).reshape(b, q.shape[2], d)
    x = residual + block.ls_1(F.linear(o, attn.out_proj.weight, attn.out_proj.bias))
    return x + block.ls_2(block.mlp(block.ln_2(x)))

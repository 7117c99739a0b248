"""The cascade model: frozen CLIP ViT → stage prompts → per-block features → NGA →
stage heads → cascade fusion → one shared text classifier.

The API follows timm's split so every variant plugs into the same tools:
``forward_features`` (images → per-block features), ``forward_head`` (per-block
features → logits; σ enters only here, which makes σ sweeps exact), and
``forward_intermediates`` (features of every block, for CKA).
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import Backbone, BackboneInfo
from .blocks import RowSelection, block_forward, has_hooks, needed_rows, patch_embed, patchify_supported, supports_fast_block
from .classifier import TextClassifier, build_classifier
from .config import PARAM_GROUPS, CascadeConfig
from .nga import SigmaBank, aggregate_stages, nga_weights
from .prompts import PromptBank, insert_prompts

# Parts of the frozen ViT that stay float32 when the rest is stored in bf16/fp16: the
# final LayerNorm and projection are tiny, and keeping them (and everything after them)
# in float32 keeps logits and losses at full precision.
FP32_VISUAL_PARTS = ("ln_post", "proj")
FROZEN_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class CascadeOutput:
    logits: torch.Tensor                 # [B, C] fused
    stage_logits: torch.Tensor           # [S, B, C]
    stage_embeddings: torch.Tensor       # [S, B, E], L2-normalised
    fused_embedding: torch.Tensor        # [B, E], before the classifier's normalisation
    stage_features: torch.Tensor         # [S, B, D], Z_s before the head
    nga_weights: list[torch.Tensor]      # per stage, [d_s]
    fusion_weights: torch.Tensor | None  # [S], zero for stages outside the fusion; None under concat fusion
    block_features: torch.Tensor | None = None   # [K, B, D] when requested
    block_ids: list[int] = field(default_factory=list)  # 1-based block numbers of block_features

    @property
    def probs(self) -> torch.Tensor:
        return self.logits.float().softmax(-1)


@dataclass
class BlockFeatures:
    """Per-block features f_i (after pooling and LayerNorm) and the blocks they come from."""

    features: torch.Tensor   # [K, B, D]
    block_ids: list[int]     # 1-based


def stage_names(stage_blocks: Sequence[Sequence[int]]) -> list[str]:
    """Labels such as ``stage 1 (blocks 1-4)`` and ``stage 4 (block 12)``, 1-based."""
    out = []
    for s, blocks in enumerate(stage_blocks):
        lo, hi = blocks[0], blocks[-1]
        out.append(f"stage {s + 1} (blocks {lo}-{hi})" if lo != hi else f"stage {s + 1} (block {lo})")
    return out


class CascadeCLIP(nn.Module):
    def __init__(self, backbone: Backbone, classnames: list[str], config: CascadeConfig,
                 classifier: TextClassifier | None = None):
        super().__init__()
        info = backbone.info
        config = config.resolve(info.depth)
        self.config = config
        self.classnames = list(classnames)
        self.backbone_info: BackboneInfo = info
        self.visual = backbone.visual
        # Run blocks through :func:`block_forward` (same math as open_clip's block, with
        # unread output rows skipped). False: call each open_clip block as is.
        self.use_fast_blocks = True
        for p in self.visual.parameters():
            p.requires_grad_(False)
        # Visual parameters that train all the same (see train_visual_layernorms).
        self.trained_visual: set[str] = set()

        self.depth = info.depth
        self.stage_ranges = config.stage_ranges()
        self.num_stages = len(self.stage_ranges)
        self.first_stage_block = self.stage_ranges[0][0]
        self.fused_stages = config.fused_stage_indices()

        points = [(b, m) for b, m in zip(config.insertion_blocks(), config.tokens_per_point())]
        self.prompt_points = [b for b, m in points if m > 0]
        tokens = [m for _, m in points if m > 0]
        patch_dim = 3 * info.patch_size * info.patch_size
        self.prompts = PromptBank(tokens, info.width, patch_dim, config.prompt_sharing, config.prompt_init) \
            if tokens else None
        self._point_of_block = {b: i for i, b in enumerate(self.prompt_points)}

        self.nga = SigmaBank(config.sigmas(), learnable=config.sigma_learnable and config.nga != "last")
        self.fusion_logits = nn.Parameter(torch.zeros(len(self.fused_stages)),
                                          requires_grad=config.fusion == "learnable")
        proj = self.visual.proj.detach()
        self.heads = nn.ParameterList([
            nn.Parameter(proj.clone().float(), requires_grad=config.heads_trainable)
            for _ in range(self.num_stages)
        ])
        if config.fusion == "concat":
            # Direct concatenation of stage features into one projection: at
            # initialisation the mean of the per-stage projections.
            k = len(self.fused_stages)
            self.concat_head = nn.Parameter(torch.cat([proj.clone().float() / k] * k, dim=0),
                                            requires_grad=config.heads_trainable)
        else:
            self.concat_head = None
        if config.layernorm == "own":
            self.stage_norms = nn.ModuleList([copy.deepcopy(self.visual.ln_post) for _ in range(self.num_stages)])
            for p in self.stage_norms.parameters():
                p.requires_grad_(True)
        else:
            self.stage_norms = None
        self.classifier = classifier if classifier is not None else build_classifier(
            backbone, classnames, trainable=config.classifier_trainable)
        self.classifier.weight.requires_grad_(config.classifier_trainable)

    # ---- structure ------------------------------------------------------------------
    @property
    def stage_blocks(self) -> list[list[int]]:
        return [list(range(lo, hi + 1)) for lo, hi in self.stage_ranges]

    @property
    def feature_blocks(self) -> list[int]:
        """1-based blocks whose features the head consumes (first stage block to the last)."""
        return list(range(self.first_stage_block, self.depth + 1))

    @property
    def frozen_prefix(self) -> int:
        """Leading blocks with no prompts and no features: their output can be cached."""
        return self.config.frozen_prefix()

    def stage_of_block(self, block: int) -> int:
        for s, (lo, hi) in enumerate(self.stage_ranges):
            if lo <= block <= hi:
                return s
        return 0  # prompts in the prefix belong to the first stage (e.g. the shallow preset)

    def sigma(self) -> torch.Tensor:
        return self.nga.sigma

    def set_sigma(self, values) -> None:
        self.nga.set(values)

    def current_nga_weights(self, sigmas: torch.Tensor | None = None) -> list[torch.Tensor]:
        sig = self.nga.sigma if sigmas is None else torch.as_tensor(sigmas, dtype=torch.float32,
                                                                     device=self.nga.log_sigma.device)
        return [nga_weights(len(blocks), sig[s], self.config.nga) for s, blocks in enumerate(self.stage_blocks)]

    @property
    def frozen_dtype(self) -> torch.dtype:
        """dtype the frozen ViT blocks compute in (see :meth:`set_frozen_dtype`)."""
        return self.visual.class_embedding.dtype

    def set_frozen_dtype(self, dtype: torch.dtype | str) -> "CascadeCLIP":
        """Store the frozen ViT (embeddings and blocks) in ``dtype``: ``fp32``, ``bf16`` or ``fp16``.

        Halves the weight and activation traffic of the backbone, with no per-step weight
        casts as under autocast. Everything that trains (prompts, σ, λ, heads, classifier,
        stage LayerNorms) stays float32, as do ``ln_post`` and ``proj``: block features are
        cast to float32 before the LayerNorm, so heads, logits and losses are float32.
        Prompt tokens are cast to ``dtype`` where they enter the blocks. The visual tower
        is the backbone's own (not a copy): other models built on it see the change too.
        """
        if isinstance(dtype, str):
            if dtype not in FROZEN_DTYPES:
                raise ValueError(f"frozen dtype: expected one of {sorted(FROZEN_DTYPES)}, got {dtype!r}")
            dtype = FROZEN_DTYPES[dtype]
        for name, p in self.visual.named_parameters():
            if p.is_floating_point() and name.split(".", 1)[0] not in FP32_VISUAL_PARTS:
                p.data = p.data.to(dtype)
        for name, b in self.visual.named_buffers():
            if b.is_floating_point() and name.split(".", 1)[0] not in FP32_VISUAL_PARTS:
                b.data = b.data.to(dtype)
        return self

    def current_fusion_weights(self) -> torch.Tensor | None:
        """λ per stage (0 outside the fusion), or None under ``fusion: concat``, whose learned
        projection of the concatenated stage features takes the place of any weighting."""
        if self.concat_head is not None:
            return None
        lam = torch.zeros(self.num_stages, device=self.fusion_logits.device)
        lam[self.fused_stages] = torch.softmax(self.fusion_logits.float(), dim=0)
        return lam

    # ---- forward pieces -----------------------------------------------------------
    @staticmethod
    def _pool(x: torch.Tensor, n_prompt: int, keep: RowSelection | None, pooling: str) -> torch.Tensor:
        if pooling == "cls":
            return x[:, 0]
        if keep is not None and keep.patches_only:
            return x.mean(dim=1)
        return x[:, 1 + n_prompt:].mean(dim=1)

    def _embeds(self, images: torch.Tensor) -> torch.Tensor:
        """open_clip's ``visual._embeds``; with the fast path the patch convolution (stride =
        kernel) runs as one matmul over the unfolded patches (faster on CPU and GPU)."""
        images = images.to(self.frozen_dtype)
        if self._fast_blocks() and patchify_supported(self.visual, images):
            return patch_embed(self.visual, images)
        return self.visual._embeds(images)

    def _as_residual(self, prefix_tokens: torch.Tensor) -> torch.Tensor:
        """Cached prefix tokens as the direct path would hold them after the prefix.

        Under autocast the residual stream keeps whatever dtype :meth:`forward_prefix`
        gave it (float32 on CUDA, bfloat16 on CPU), so tokens cached under the same
        autocast are used as they are: casting them would make cached and uncached logits
        differ. Without autocast the stream is in the frozen blocks' dtype.
        """
        device = prefix_tokens.device.type
        if device in ("cuda", "cpu") and torch.is_autocast_enabled(device):
            return prefix_tokens
        return prefix_tokens.to(self.frozen_dtype)

    def forward_prefix(self, images: torch.Tensor) -> torch.Tensor:
        """Tokens after the frozen prefix blocks, [B, 1+N, D]; never needs gradients."""
        fast = self._fast_blocks()
        with torch.no_grad():
            x = self._embeds(images)
            for blk in self.visual.transformer.resblocks[:self.frozen_prefix]:
                x = block_forward(blk, x) if fast and not has_hooks(blk) else blk(x)
        return x

    def _run_blocks(self, x: torch.Tensor, start: int, collect: set[int], poolings: tuple[str, ...],
                    attention: list[torch.Tensor] | None = None) -> tuple[list[torch.Tensor], list[int]]:
        """Run blocks ``start+1..depth`` (1-based) on tokens ``x``; pooled features of ``collect``
        ([B, D] for one pooling, [B, P, D] for several). With ``attention`` (explain mode,
        see :meth:`forward_explain`) every block computes all rows and appends its attention
        probabilities.

        Each block only computes the output rows something downstream reads (see
        :func:`needed_rows`): the last block only its pooled rows, and a block whose
        prompt tokens the next block replaces only CLS and the patches. Keys and values
        still come from every row, so the kept rows are exactly what the full block
        gives them; the dropped rows were never read.
        """
        feats, ids = [], []
        n_prompt = 0
        resblocks = self.visual.transformer.resblocks
        replace = self.config.prompt_mode == "replace"
        fast = self._fast_blocks()
        explain = attention is not None
        for i in range(start, self.depth):
            block = i + 1
            point = self._point_of_block.get(block)
            run_fast = explain or (fast and not has_hooks(resblocks[i]))
            new_prompts = None
            if point is not None:
                m = self.prompts.tokens[point]
                if run_fast:
                    # block_forward inserts the tokens itself (their LayerNorm and projections
                    # are computed once for the batch, not once per image).
                    if replace and n_prompt > 0:
                        x = torch.cat([x[:, :1], x[:, 1 + n_prompt:]], dim=1)
                    new_prompts = self.prompts.get(point)
                else:
                    x = insert_prompts(x, self.prompts.get(point), n_prompt, self.config.prompt_mode)
                n_prompt = m if replace else n_prompt + m
            keep = None
            if run_fast:
                length = x.shape[1] + (0 if new_prompts is None else new_prompts.shape[0])
                # Several poolings read different rows of the last block: keep them all.
                keep = None if explain else needed_rows(
                    length, n_prompt, last=block == self.depth and len(poolings) == 1, pooling=poolings[0],
                    prompts_replaced=replace and self._point_of_block.get(block + 1) is not None and n_prompt > 0,
                )
                x = block_forward(resblocks[i], x, keep, prompts=new_prompts, attention=attention)
                if keep is not None and keep.drops_prompts:
                    n_prompt = 0
            else:
                x = resblocks[i](x)
            if block in collect:
                pooled = [self._pool(x, n_prompt, keep, p) for p in poolings]
                feats.append(pooled[0] if len(pooled) == 1 else torch.stack(pooled, dim=1))
                ids.append(block)
        return feats, ids

    def _fast_blocks(self) -> bool:
        """Whether every block is a plain open_clip block that :func:`block_forward` reproduces."""
        flag = getattr(self, "_fast_blocks_flag", None)
        if flag is None:
            flag = all(supports_fast_block(b) for b in self.visual.transformer.resblocks)
            self._fast_blocks_flag = flag
        return flag and self.use_fast_blocks

    def _norm_features(self, raw: list[torch.Tensor], ids: list[int]) -> list[torch.Tensor]:
        out = []
        for f, block in zip(raw, ids):
            f = f.to(self.visual.ln_post.weight.dtype)
            if self.stage_norms is not None and block >= self.first_stage_block:
                out.append(self.stage_norms[self.stage_of_block(block)](f))
            else:
                out.append(self.visual.ln_post(f))
        return out

    def forward_features(self, images: torch.Tensor | None = None, *, prefix_tokens: torch.Tensor | None = None,
                         all_blocks: bool = False, poolings: Sequence[str] | None = None) -> BlockFeatures:
        """Per-block features after pooling and LayerNorm, [K, B, D].

        Pass ``prefix_tokens`` (from :meth:`forward_prefix`, possibly cached) instead of
        images to skip the frozen prefix. ``all_blocks`` also returns prefix blocks.
        ``poolings`` (e.g. ``("cls", "mean")``) pools each way in the same pass and
        returns [K, B, P, D]; the LayerNorm acts on the last dimension, so on each
        pooling separately. By default the config's pooling alone.
        """
        if poolings is not None:
            poolings = tuple(poolings)
            bad = [p for p in poolings if p not in ("cls", "mean")]
            if not poolings or bad:
                raise ValueError(f"poolings: expected a non-empty list of 'cls'/'mean', got {list(poolings)}")
        if prefix_tokens is None:
            if images is None:
                raise ValueError("forward_features needs images or prefix_tokens")
            if all_blocks:
                x, start = self._embeds(images), 0
            else:
                x, start = self.forward_prefix(images), self.frozen_prefix
        else:
            if all_blocks:
                raise ValueError("all_blocks needs images: the prefix blocks' features are not in prefix_tokens")
            x, start = self._as_residual(prefix_tokens), self.frozen_prefix
        collect = set(range(1, self.depth + 1)) if all_blocks else set(self.feature_blocks)
        raw, ids = self._run_blocks(x, start, collect, poolings or (self.config.pooling,))
        feats = torch.stack(self._norm_features(raw, ids))
        if poolings is not None and len(poolings) == 1:
            feats = feats.unsqueeze(2)
        return BlockFeatures(feats, ids)

    def forward_head(self, feats: BlockFeatures | torch.Tensor, *, sigmas: torch.Tensor | None = None) -> CascadeOutput:
        """From per-block features (the stage blocks, in order) to all outputs.

        ``sigmas`` overrides the learned σ for this call only (exact σ sweeps).
        """
        if isinstance(feats, BlockFeatures):
            block_ids = feats.block_ids
            f = feats.features
            if block_ids != self.feature_blocks:
                index = [block_ids.index(b) for b in self.feature_blocks]
                f = f[index]
        else:
            f = feats
        weights = self.current_nga_weights(sigmas)
        # Every stage at once: NGA as one matmul, then all stage heads as one batched matmul.
        d, lead = f.shape[-1], f.shape[1:-1]
        z = aggregate_stages(f, weights, self.stage_blocks)
        heads = torch.stack([h.to(f.dtype) for h in self.heads])
        emb = torch.bmm(z.reshape(self.num_stages, -1, d), heads).reshape(self.num_stages, *lead, heads.shape[-1])
        stage_emb = F.normalize(emb, dim=-1)
        stage_logits = self.classifier(emb)
        lam = self.current_fusion_weights()
        if self.concat_head is not None:
            zcat = torch.cat([z[s] for s in self.fused_stages], dim=-1)
            fused = zcat @ self.concat_head.to(zcat.dtype)
        else:
            fused = (lam[self.fused_stages].to(stage_emb.dtype).view(-1, 1, 1) * stage_emb[self.fused_stages]).sum(0)
        logits = self.classifier(fused)
        return CascadeOutput(
            logits=logits, stage_logits=stage_logits, stage_embeddings=stage_emb, fused_embedding=fused,
            stage_features=z, nga_weights=weights, fusion_weights=lam,
        )

    def forward(self, images: torch.Tensor | None = None, *, prefix_tokens: torch.Tensor | None = None,
                return_block_features: bool = False) -> CascadeOutput:
        feats = self.forward_features(images, prefix_tokens=prefix_tokens,
                                      all_blocks=return_block_features and prefix_tokens is None)
        out = self.forward_head(feats)
        if return_block_features:
            out.block_features = feats.features
            out.block_ids = feats.block_ids
        return out

    def forward_explain(self, images: torch.Tensor) -> tuple[CascadeOutput, list[torch.Tensor]]:
        """The forward pass for explanation maps: outputs plus every block's attention probabilities.

        Returns ``(output, attention)`` with ``attention[i]`` [B, heads, T_i, T_i] for block
        i + 1, in the autograd graph of the output (the embedded tokens are marked as
        requiring gradients, so gradients reach the probabilities of every block, the frozen
        prefix included). Blocks run through :func:`block_forward` in explain mode: all rows,
        explicit softmax; the logits equal :meth:`forward`'s up to float rounding. Meant for a
        few images, not for training.
        """
        if not all(supports_fast_block(b) for b in self.visual.transformer.resblocks):
            raise ValueError(f"{self.backbone_info.name}: explanation maps need open_clip's plain "
                             "ResidualAttentionBlock (self-attention with packed q/k/v) in every block")
        attention: list[torch.Tensor] = []
        with torch.enable_grad():
            x = self._embeds(images).detach().requires_grad_(True)
            raw, ids = self._run_blocks(x, 0, set(self.feature_blocks), (self.config.pooling,), attention=attention)
            out = self.forward_head(BlockFeatures(torch.stack(self._norm_features(raw, ids)), ids))
        return out, attention

    def forward_intermediates(self, images: torch.Tensor) -> BlockFeatures:
        """Features of every block 1..L (for CKA); prompts act as in the forward pass."""
        return self.forward_features(images, all_blocks=True)

    # ---- parameters -----------------------------------------------------------------
    @staticmethod
    def group_of(name: str) -> str:
        if name.startswith("prompts."):
            return "prompts"
        if name.startswith("nga."):
            return "nga"
        if name.startswith("fusion_logits"):
            return "fusion"
        if name.startswith(("heads.", "concat_head")):
            return "heads"
        if name.startswith("classifier."):
            return "classifier"
        return "other"

    def train_visual_layernorms(self) -> list[str]:
        """Let the LayerNorms of the visual blocks after the frozen prefix (and ``ln_post``)
        train, as LaFTer does; they then count as the method's parameters (group ``other``)
        and are saved with its checkpoints. Returns their names."""
        blocks = self.visual.transformer.resblocks
        modules = [(f"transformer.resblocks.{i}.{n}", m) for i in range(self.frozen_prefix, len(blocks))
                   for n, m in blocks[i].named_modules() if isinstance(m, nn.LayerNorm)]
        modules.append(("ln_post", self.visual.ln_post))
        for prefix, module in modules:
            for n, p in module.named_parameters():
                p.data = p.data.float()
                p.requires_grad_(True)
                self.trained_visual.add(f"visual.{prefix}.{n}")
        return sorted(self.trained_visual)

    def cascade_named_parameters(self):
        """Every parameter the method adds (trainable or not right now), and the backbone's
        own that train (:meth:`train_visual_layernorms`); never the frozen backbone."""
        for name, p in self.named_parameters():
            if not name.startswith("visual.") or name in self.trained_visual:
                yield name, p

    def parameter_groups(self) -> dict[str, list[tuple[str, nn.Parameter]]]:
        groups: dict[str, list] = {g: [] for g in PARAM_GROUPS}
        for name, p in self.cascade_named_parameters():
            groups[self.group_of(name)].append((name, p))
        return groups

    def stage_parameter_names(self, stage: int) -> list[str]:
        """Names of the prompts, head and LayerNorm that belong to 0-based ``stage``."""
        names = []
        if self.prompts is not None and self.prompts.sharing != "shared":
            names += [f"prompts.params.{i}" for i, b in enumerate(self.prompt_points) if self.stage_of_block(b) == stage]
        names.append(f"heads.{stage}")
        if self.stage_norms is not None:
            names += [f"stage_norms.{stage}.{n}" for n, _ in self.stage_norms[stage].named_parameters()]
        return names

    def parameter_report(self) -> dict[str, int]:
        """Trainable parameter counts per group, plus the frozen backbone's size."""
        report = {g: 0 for g in PARAM_GROUPS}
        for name, p in self.cascade_named_parameters():
            if p.requires_grad:
                report[self.group_of(name)] += p.numel()
        report["total_trainable"] = sum(report[g] for g in PARAM_GROUPS)
        report["backbone_frozen"] = sum(p.numel() for p in self.visual.parameters())
        report["backbone_trainable"] = sum(p.numel() for p in self.visual.parameters() if p.requires_grad)
        return report

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """State of everything the method adds (what a checkpoint stores)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("visual.") or k in self.trained_visual}


def compile_model(model: nn.Module, mode: str = "default", backend: str = "inductor") -> nn.Module:
    """``torch.compile(model)`` with ``mode`` (default, reduce-overhead, max-autotune, ...).

    Modes belong to inductor; other backends (``aot_eager`` to debug) take ``default`` only.
    The compiled module shares the model's parameters.
    """
    if backend != "inductor" and mode != "default":
        raise ValueError(f"torch.compile mode {mode!r} needs the inductor backend (got {backend!r})")
    return torch.compile(model, backend=backend, **({"mode": mode} if backend == "inductor" else {}))


def build_model(backbone: Backbone, classnames: list[str], config: CascadeConfig | None = None,
                classifier: TextClassifier | None = None) -> CascadeCLIP:
    """The cascade model for ``classnames`` on ``backbone`` (default config: ``b32-4stage``)."""
    if config is None:
        config = CascadeConfig.from_preset("b32-4stage")
    model = CascadeCLIP(backbone, classnames, config, classifier=classifier)
    return model.to(backbone.device)

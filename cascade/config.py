"""The model configuration: one validated object, built from presets or by hand.

Block numbers are 1-based everywhere in configs and user-facing text, matching the
paper notation; the model converts to 0-based indices internally.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field."""


def parse_stages(spec: str) -> list[tuple[int, int]]:
    """Parse a stage string such as ``"1-4,5-8,9-11,12"`` into inclusive block ranges.

    Only the syntax is checked here; contiguity and depth are checked by
    :func:`check_stages`, which needs the backbone depth.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError("stages: expected a string such as '1-4,5-8,9-11,12'")
    ranges: list[tuple[int, int]] = []
    for part in spec.split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo_s, hi_s = part.split("-", 1)
                lo, hi = int(lo_s), int(hi_s)
            else:
                lo = hi = int(part)
        except ValueError:
            raise ConfigError(f"stages: cannot parse {part!r} in {spec!r} (use e.g. '5-8' or '12')") from None
        if lo < 1:
            raise ConfigError(f"stages: block numbers are 1-based, got {lo} in {spec!r}")
        if hi < lo:
            raise ConfigError(f"stages: range {part!r} in {spec!r} is descending")
        ranges.append((lo, hi))
    for (_, prev_hi), (lo, _) in zip(ranges, ranges[1:]):
        if lo <= prev_hi:
            raise ConfigError(f"stages: {spec!r} overlaps or is not ascending at block {lo}")
        if lo != prev_hi + 1:
            raise ConfigError(f"stages: {spec!r} is not contiguous: blocks {prev_hi + 1}-{lo - 1} belong to no stage")
    return ranges


def format_stages(ranges: list[tuple[int, int]]) -> str:
    return ",".join(f"{lo}" if lo == hi else f"{lo}-{hi}" for lo, hi in ranges)


# The trainable parameter groups: each has its own learning rate and weight decay.
PARAM_GROUPS = ("prompts", "nga", "fusion", "heads", "classifier", "other")

PRESETS: dict[str, dict[str, Any]] = {
    # Four stages with 16 prompt tokens each; the last block is its own stage.
    "b32-4stage": dict(stages="1-4,5-8,9-11,12", prompt_tokens=16),
    # Blocks 1-5 carry no prompts, so their output can be cached between epochs.
    "b16-3stage": dict(stages="6-8,9-11,12", prompt_tokens=12),
    # LaFTer's single prompt: 50 tokens entering at block 1, only the final feature used.
    "shallow": dict(stages="12", prompt_tokens=50, prompt_at=[1]),
    # VPT-deep: fresh tokens at every block, final feature only.
    "vpt-deep": dict(stages="12", prompt_tokens=8, prompt_at=list(range(1, 13))),
    # Zero-shot CLIP expressed in the same code path: no prompts, final block only.
    "zeroshot": dict(stages="12", prompt_tokens=0, classifier_trainable=False, heads_trainable=False,
                     sigma_learnable=False, fusion="uniform"),
}


def is_stage_string(text: str) -> bool:
    """Whether ``text`` is written like a stage string (digits, '-', ',' and spaces) rather than a preset name."""
    return bool(text) and all(ch.isdigit() or ch in "-, " for ch in text)


def unknown_preset(name: Any) -> ConfigError:
    return ConfigError(f"preset: unknown preset {name!r}; choose one of {sorted(PRESETS)} "
                       "or a stage string like '1-4,5-8,9-11,12'")


def expand_preset(values: dict[str, Any]) -> dict[str, Any]:
    """Model config values with their ``preset`` expanded; the one reading of ``preset``.

    A preset name gives the preset's values under the explicit ones. A stage string such
    as ``"1-4,5-8,9-11,12"`` gives ``stages`` (an explicit ``stages`` wins) and preset
    ``custom``. No preset, or ``custom``, leaves the values as they are; anything else is a
    :class:`ConfigError` listing the presets.
    """
    name = values.get("preset")
    if name is None or name == "custom":
        return dict(values)
    if name in PRESETS:
        return {**PRESETS[name], **values}
    if isinstance(name, str) and is_stage_string(name):
        return {"stages": name, **values, "preset": "custom"}
    raise unknown_preset(name)


class CascadeConfig(BaseModel):
    """Everything that defines the cascade model's structure (not the training run).

    Validation that needs the backbone depth happens in :meth:`resolve`.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    preset: str | None = Field(None, description="Name of the preset this config started from")
    stages: str = Field("1-4,5-8,9-11,12", description="1-based inclusive block ranges, e.g. '1-4,5-8,9-11,12'")
    prompt_tokens: int | list[int] = Field(16, description="Tokens per prompt insertion point (one int, or one per point)")
    prompt_at: list[int] | None = Field(None, description="1-based blocks where prompts enter; default: each stage's first block")
    prompt_mode: Literal["replace", "append"] = "replace"
    prompt_sharing: Literal["independent", "shared"] = "independent"
    prompt_init: Literal["uniform", "normal"] = "uniform"
    pooling: Literal["cls", "mean"] = "cls"
    layernorm: Literal["clip", "own"] = "clip"
    nga: Literal["normalized", "free", "last"] = Field(
        "normalized", description="normalized: Gaussian weights sum to 1; free: raw Gaussian values; last: last block only"
    )
    sigma_init: float | list[float] = 1.0
    sigma_learnable: bool = True
    fusion: Literal["learnable", "uniform", "concat"] = "learnable"
    fusion_stages: list[int] | None = Field(None, description="1-based stage indices that feed the fusion; default all")
    classifier_trainable: bool = True
    heads_trainable: bool = True

    @field_validator("prompt_tokens")
    @classmethod
    def _tokens_non_negative(cls, v: int | list[int]) -> int | list[int]:
        values = v if isinstance(v, list) else [v]
        if any(t < 0 for t in values):
            raise ValueError("prompt_tokens must be >= 0")
        return v

    @field_validator("sigma_init")
    @classmethod
    def _sigma_positive(cls, v: float | list[float]) -> float | list[float]:
        values = v if isinstance(v, list) else [v]
        if any(not (s > 0) for s in values):
            raise ValueError("sigma_init must be > 0")
        return v

    @field_validator("stages")
    @classmethod
    def _stages_syntax(cls, v: str) -> str:
        try:
            return format_stages(parse_stages(v))
        except ConfigError as exc:
            raise ValueError(str(exc).removeprefix("stages: ")) from None

    @model_validator(mode="after")
    def _cross_field(self) -> "CascadeConfig":
        n_stages = len(parse_stages(self.stages))
        if self.fusion_stages is not None:
            if not self.fusion_stages:
                raise ValueError("fusion_stages: must name at least one stage")
            bad = [s for s in self.fusion_stages if not 1 <= s <= n_stages]
            if bad:
                raise ValueError(f"fusion_stages: {bad} outside 1..{n_stages} (stages are 1-based)")
            if len(set(self.fusion_stages)) != len(self.fusion_stages):
                raise ValueError("fusion_stages: repeated stage")
        if isinstance(self.sigma_init, list) and len(self.sigma_init) != n_stages:
            raise ValueError(f"sigma_init: {len(self.sigma_init)} values for {n_stages} stages")
        n_points = len(self.prompt_at) if self.prompt_at is not None else n_stages
        if isinstance(self.prompt_tokens, list) and len(self.prompt_tokens) != n_points:
            raise ValueError(f"prompt_tokens: {len(self.prompt_tokens)} values for {n_points} prompt insertion points")
        if self.prompt_at is not None:
            if sorted(set(self.prompt_at)) != list(self.prompt_at):
                raise ValueError("prompt_at: blocks must be strictly ascending")
            if any(b < 1 for b in self.prompt_at):
                raise ValueError("prompt_at: block numbers are 1-based")
        if self.prompt_sharing == "shared" and len(set(self.tokens_per_point())) > 1:
            raise ValueError("prompt_sharing: 'shared' needs the same prompt_tokens at every insertion point")
        return self

    # ---- construction -------------------------------------------------------------
    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "CascadeConfig":
        """A preset by name, or a custom stage string such as ``"1-4,5-8,9-11,12"`` (:func:`expand_preset`)."""
        if name in (None, "", "custom"):
            raise unknown_preset(name)
        return cls.model_validate(expand_preset({**overrides, "preset": name}))

    # ---- derived views ------------------------------------------------------------
    def stage_ranges(self) -> list[tuple[int, int]]:
        return parse_stages(self.stages)

    @property
    def num_stages(self) -> int:
        return len(self.stage_ranges())

    def insertion_blocks(self) -> list[int]:
        if self.prompt_at is not None:
            return list(self.prompt_at)
        return [lo for lo, _ in self.stage_ranges()]

    def tokens_per_point(self) -> list[int]:
        n_points = len(self.prompt_at) if self.prompt_at is not None else len(parse_stages(self.stages))
        if isinstance(self.prompt_tokens, list):
            return list(self.prompt_tokens)
        return [self.prompt_tokens] * n_points

    def sigmas(self) -> list[float]:
        if isinstance(self.sigma_init, list):
            return list(self.sigma_init)
        return [float(self.sigma_init)] * self.num_stages

    def fused_stage_indices(self) -> list[int]:
        """0-based indices of the stages that feed the fusion."""
        if self.fusion_stages is None:
            return list(range(self.num_stages))
        return [s - 1 for s in self.fusion_stages]

    def resolve(self, depth: int) -> "CascadeConfig":
        """Check the config against a backbone of ``depth`` blocks; errors name the field."""
        ranges = self.stage_ranges()
        if ranges[-1][1] > depth:
            raise ConfigError(f"stages: {self.stages!r} reaches block {ranges[-1][1]} but the backbone has {depth} blocks")
        if ranges[-1][1] != depth:
            raise ConfigError(f"stages: {self.stages!r} must end at the last block ({depth}); it ends at {ranges[-1][1]}")
        bad = [b for b in self.insertion_blocks() if b > depth]
        if bad:
            raise ConfigError(f"prompt_at: blocks {bad} beyond the backbone's {depth} blocks")
        return self

    def frozen_prefix(self) -> int:
        """Number of leading blocks that see no prompt and feed no stage (cacheable)."""
        first_stage = self.stage_ranges()[0][0]
        points = [b for b, m in zip(self.insertion_blocks(), self.tokens_per_point()) if m > 0]
        first_prompt = min(points) if points else first_stage
        return min(first_stage, first_prompt) - 1

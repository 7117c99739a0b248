"""Baselines and ablations, each a configuration of the same model and data path."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .config import CascadeConfig


@dataclass(frozen=True)
class Method:
    name: str
    description: str
    preset: str | None
    overrides: dict[str, Any] = field(default_factory=dict)
    trains: bool = True          # False: evaluated as built (zero-shot)
    linear_probe: bool = False   # True: logistic regression on frozen features instead

    def config(self, base: CascadeConfig | None = None) -> CascadeConfig:
        """This method's model config; cascade variants keep ``base``'s stages and tokens."""
        if self.preset is not None:
            return CascadeConfig.from_preset(self.preset, **self.overrides)
        base = base or CascadeConfig.from_preset("b32-4stage")
        values = base.model_dump()
        values.update(self.overrides)
        return CascadeConfig.model_validate(values)


def _all_blocks(base: CascadeConfig) -> dict[str, Any]:
    ranges = base.stage_ranges()
    return dict(stages=f"{ranges[0][0]}-{ranges[-1][1]}", prompt_at=base.insertion_blocks(),
                prompt_tokens=base.tokens_per_point(), sigma_init=base.sigmas()[0], fusion_stages=None)


METHODS: dict[str, Method] = {
    "zeroshot": Method("zeroshot", "zero-shot CLIP: text classifier, no training", "zeroshot", trains=False),
    "linear-probe": Method("linear-probe", "logistic regression on frozen final CLIP features", None,
                           linear_probe=True, trains=False),
    "shallow": Method("shallow", "LaFTer-style single prompt (50 tokens at block 1), final feature", "shallow"),
    "vpt-deep": Method("vpt-deep", "VPT-deep: prompts at every block, final feature only", "vpt-deep"),
    "cascade": Method("cascade", "stage prompts + NGA + cascade fusion (the method)", None),
    "cascade-no-nga": Method("cascade-no-nga", "cascade with the last block of each stage instead of NGA", None,
                             {"nga": "last"}),
    "nga-no-cascade": Method("nga-no-cascade", "one NGA stage over all blocks, no cascade", None),
    "concat-fusion": Method("concat-fusion", "stage features concatenated into one projection", None,
                            {"fusion": "concat"}),
}


def method_config(name: str, base: CascadeConfig | None = None) -> CascadeConfig:
    if name not in METHODS:
        raise ValueError(f"method: unknown method {name!r}; choose from {', '.join(METHODS)}")
    method = METHODS[name]
    if name == "nga-no-cascade":
        base = base or CascadeConfig.from_preset("b32-4stage")
        values = base.model_dump()
        values.update(_all_blocks(base))
        values["sigma_init"] = float(max(base.sigmas()))
        return CascadeConfig.model_validate(values)
    if method.linear_probe:
        return CascadeConfig.from_preset("zeroshot")
    return method.config(base)

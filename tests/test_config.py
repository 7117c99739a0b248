import pytest
from pydantic import ValidationError

from cascade import CascadeConfig, ConfigError
from cascade.config import expand_preset, parse_stages
from cascade.run_config import validate_run_config


def test_presets_resolve_on_12_blocks():
    for name in ["b32-4stage", "b16-3stage", "shallow", "vpt-deep", "zeroshot"]:
        cfg = CascadeConfig.from_preset(name).resolve(12)
        assert cfg.stage_ranges()[-1][1] == 12


def test_b32_4stage_shape():
    cfg = CascadeConfig.from_preset("b32-4stage")
    assert cfg.stage_ranges() == [(1, 4), (5, 8), (9, 11), (12, 12)]
    assert cfg.tokens_per_point() == [16, 16, 16, 16]
    assert cfg.frozen_prefix() == 0


def test_b16_prefix_is_frozen():
    cfg = CascadeConfig.from_preset("b16-3stage")
    assert cfg.frozen_prefix() == 5


def test_custom_stage_string_and_overrides():
    cfg = CascadeConfig.from_preset("1-6,7-11,12", prompt_tokens=[4, 8, 2], pooling="mean")
    assert cfg.stage_ranges() == [(1, 6), (7, 11), (12, 12)]
    assert cfg.tokens_per_point() == [4, 8, 2]
    assert cfg.preset == "custom"


@pytest.mark.parametrize("preset", ["b32-4stag", "b33-4stage", "vpt-deep2"])
def test_misspelt_preset_is_unknown_everywhere(preset):
    # a name with digits once read as a stage string in the run config but as an unknown
    # preset in CascadeConfig.from_preset: both now say it is an unknown preset
    with pytest.raises(ConfigError, match="unknown preset"):
        CascadeConfig.from_preset(preset)
    with pytest.raises(ConfigError, match="model.preset: unknown preset"):
        validate_run_config({"model": {"preset": preset}})


def test_preset_reads_the_same_in_the_run_config():
    for preset in ["b16-3stage", "1-6, 7-11, 12"]:
        direct = CascadeConfig.from_preset(preset, prompt_tokens=8)
        via_run = validate_run_config({"model": {"preset": preset, "prompt_tokens": 8}}).model
        assert via_run == direct
    assert via_run.stages == "1-6,7-11,12" and via_run.preset == "custom"
    # an explicit stages wins over a stage string given as preset
    assert expand_preset({"preset": "1-4,5-12", "stages": "1-6,7-12"}) == {"preset": "custom", "stages": "1-6,7-12"}
    assert expand_preset({"preset": "custom", "stages": "1-12"}) == {"preset": "custom", "stages": "1-12"}


@pytest.mark.parametrize("spec,needle", [
    ("1-4,6-8,9-12", "not contiguous"),
    ("1-4,3-8,9-12", "overlaps"),
    ("5-8,1-4,9-12", "overlaps or is not ascending"),
    ("4-1,5-12", "descending"),
    ("0-4,5-12", "1-based"),
    ("a-b", "cannot parse"),
])
def test_bad_stage_strings_name_the_field(spec, needle):
    with pytest.raises((ValidationError, ConfigError)) as info:
        CascadeConfig(stages=spec)
    assert "stages" in str(info.value)
    assert needle in str(info.value)


def test_depth_checks_name_the_field():
    with pytest.raises(ConfigError, match="stages.*must end at the last block"):
        CascadeConfig(stages="1-4,5-8,9-10").resolve(12)
    with pytest.raises(ConfigError, match="stages.*backbone has 12 blocks"):
        CascadeConfig(stages="1-4,5-8,9-14").resolve(12)
    with pytest.raises(ConfigError, match="prompt_at"):
        CascadeConfig(stages="12", prompt_at=[13]).resolve(12)


@pytest.mark.parametrize("kwargs,field", [
    (dict(prompt_tokens=-1), "prompt_tokens"),
    (dict(sigma_init=0.0), "sigma_init"),
    (dict(sigma_init=[1.0, 2.0]), "sigma_init"),
    (dict(fusion_stages=[0]), "fusion_stages"),
    (dict(fusion_stages=[5]), "fusion_stages"),
    (dict(prompt_mode="insert"), "prompt_mode"),
    (dict(pooling="max"), "pooling"),
    (dict(prompt_tokens=[16, 16]), "prompt_tokens"),
    (dict(colour="red"), "colour"),
])
def test_invalid_fields_are_named(kwargs, field):
    with pytest.raises(ValidationError) as info:
        CascadeConfig(**kwargs)
    assert field in str(info.value)


def test_unknown_preset():
    with pytest.raises(ConfigError, match="preset"):
        CascadeConfig.from_preset("b64-9stage")


def test_parse_single_blocks():
    assert parse_stages("1-11,12") == [(1, 11), (12, 12)]

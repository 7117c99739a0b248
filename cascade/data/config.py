"""Validated configuration for everything the data package loads."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

EMOTION6_CLASSES: tuple[str, ...] = ("anger", "disgust", "fear", "joy", "sadness", "surprise")


class _Strict(BaseModel):
    # Unknown keys are almost always typos in a YAML file; failing loudly names them.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ManifestOptions(_Strict):
    path_column: str = "path"
    label_column: str | int | None = "label"
    distribution_columns: list[str] | None = None
    counts: bool = False
    delimiter: str | None = None
    split_column: str | None = None

    @field_validator("delimiter")
    @classmethod
    def _one_char(cls, v: str | None) -> str | None:
        if v is not None and len(v) != 1:
            raise ValueError("delimiter must be a single character (or null to infer it from the extension)")
        return v

    @field_validator("label_column")
    @classmethod
    def _non_negative_index(cls, v: str | int | None) -> str | int | None:
        if isinstance(v, int) and v < 0:
            raise ValueError("label_column as an index must be >= 0")
        return v


class SyntheticOptions(_Strict):
    num_samples: int = Field(600, ge=1)
    image_size: int = Field(64, ge=16, le=1024)
    seed: int = 0


class SplitRatios(_Strict):
    train: float = Field(0.7, ge=0.0, le=1.0)
    val: float = Field(0.15, ge=0.0, le=1.0)
    test: float = Field(0.15, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _sum_to_one(self) -> SplitRatios:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"split ratios must sum to 1, got {total:g}")
        if self.train <= 0:
            raise ValueError("the train split ratio must be > 0")
        return self

    def as_tuple(self) -> tuple[float, float, float]:
        return (self.train, self.val, self.test)


class DataConfig(_Strict):
    """Where the data is and how strictly to read it.

    root: the dataset folder (emotion6, imagefolder) or the CSV/TSV file (manifest).
    classes: class order; emotion6 defaults to EMOTION6_CLASSES, imagefolder to sorted folder names,
      a manifest to its distribution columns (or its sorted label names). emotion6_neutral adds
      "neutral" as a 7th, distribution-only class; otherwise the six emotions are renormalised.
    splits / split_seed: ratios and seed of the stratified split used when neither splits_file
      nor a manifest split_column fixes one.
    on_bad: "error" raises DataError listing every bad item; "skip" drops them. Both record them
      in the DataReport. dist_tolerance: how far a probability row may sum from 1 and still be
      renormalised (with a warning). max_image_pixels: decompression-bomb limit.
    label_smoothing: mass spread evenly over all classes when a distribution is built from a label.
    scan_workers: threads that decode images during the scan (0: one per CPU, at most 8).
    """

    format: Literal["synthetic", "emotion6", "imagefolder", "manifest"] = "synthetic"
    root: str | None = None
    classes: list[str] | None = None
    emotion6_neutral: bool = False
    manifest: ManifestOptions = Field(default_factory=ManifestOptions)
    synthetic: SyntheticOptions = Field(default_factory=SyntheticOptions)
    splits: SplitRatios = Field(default_factory=SplitRatios)
    split_seed: int = 0
    splits_file: str | None = None
    on_bad: Literal["error", "skip"] = "error"
    dist_tolerance: float = Field(0.02, ge=0.0, lt=1.0)
    max_image_pixels: int = Field(89_478_485, ge=1)
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    scan_workers: int = Field(0, ge=0)

    @field_validator("classes")
    @classmethod
    def _valid_classes(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        names = [c.strip() for c in v]
        if len(names) < 2:
            raise ValueError("at least two classes are needed")
        if any(not n for n in names):
            raise ValueError("class names must be non-empty")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate class names: {dupes}")
        return names

    @model_validator(mode="after")
    def _root_when_needed(self) -> DataConfig:
        if self.format != "synthetic" and not self.root:
            what = "the manifest CSV/TSV file" if self.format == "manifest" else "the dataset folder"
            raise ValueError(f"root is required for format '{self.format}' ({what})")
        return self

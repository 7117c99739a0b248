"""Validated configuration for everything the data package loads."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

EMOTION6_CLASSES: tuple[str, ...] = ("anger", "disgust", "fear", "joy", "sadness", "surprise")
# FER+'s vote columns in the order of its label.csv files (Barsoum et al. 2016).
FERPLUS_CLASSES: tuple[str, ...] = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear",
                                    "contempt")
SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")
# Formats whose data.root may be a mapping {train: ..., val: ..., test: ...}, one source per split.
PER_SPLIT_ROOT_FORMATS = ("manifest", "webdataset", "imagefolder")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")


def is_url(text: str) -> bool:
    """``https://...``, ``s3://...``, ``pipe:cmd`` and the like (not a local path; ``C:`` is a path)."""
    return bool(_URL.match(text))


def resolve_root(value, base_dir: str | os.PathLike[str]):
    """``data.root`` with relative local paths made absolute against ``base_dir`` (URLs and
    brace patterns of URLs stay as they are; a per-split mapping is resolved entry by entry)."""
    if isinstance(value, dict):
        return {k: resolve_root(v, base_dir) for k, v in value.items()}
    if not isinstance(value, str) or not value or is_url(value):
        return value
    p = Path(os.path.expanduser(value))
    return str(p) if p.is_absolute() else os.path.normpath(str(Path(base_dir) / p))


class _Strict(BaseModel):
    # Unknown keys are almost always typos in a YAML file; failing loudly names them.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ManifestOptions(_Strict):
    """How to read a CSV/TSV manifest.

    columns: names for the columns of a file WITHOUT a header line, in file order; a null
      entry (YAML ``~`` or ``null``) marks a column that is ignored. Columns nothing refers to
      are ignored too. Without ``columns`` the first line is the header.
    """

    columns: list[str | None] | None = None
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

    @field_validator("columns")
    @classmethod
    def _named_columns(cls, v: list[str | None] | None) -> list[str | None] | None:
        if v is None:
            return v
        names = [None if c is None or not c.strip() else c.strip() for c in v]
        named = [c for c in names if c is not None]
        if not named:
            raise ValueError("columns: name at least one column (null entries mark ignored columns)")
        dupes = sorted({c for c in named if named.count(c) > 1})
        if dupes:
            raise ValueError(f"columns: duplicate column name(s) {dupes}")
        return names

    @field_validator("label_column")
    @classmethod
    def _non_negative_index(cls, v: str | int | None) -> str | int | None:
        if isinstance(v, int) and v < 0:
            raise ValueError("label_column as an index must be >= 0")
        return v


class FerPlusOptions(_Strict):
    """FER+ (``format: ferplus``).

    protocol: which faces are kept and what they are trained on. ``votes`` (the default): every
      face whose largest raw vote count is an emotion, with its 8 emotion votes as the target
      distribution. The published protocols of the FER+ paper drop single votes as outliers first:
      ``majority`` (one-hot label of a top emotion with more than half the votes: what published
      FER+ accuracies use), ``crossentropy`` (soft target over the top entries covering 75 % of the
      votes), ``probability`` (a label drawn from that target each epoch) and ``multi_target``
      (equal weight on every emotion with at least 30 % of the votes). The data report names the
      protocol and lists every dropped face with its reason.
    keep_unknown: under ``votes``, keep the faces whose majority vote is unknown or not-a-face
      (dropped by default); kept or dropped, they are listed in the data report. The published
      protocols always drop them.
    """

    protocol: Literal["votes", "majority", "probability", "crossentropy", "multi_target"] = "votes"
    keep_unknown: bool = False

    @model_validator(mode="after")
    def _keep_unknown_needs_votes(self) -> FerPlusOptions:
        if self.keep_unknown and self.protocol != "votes":
            raise ValueError(f"keep_unknown applies to protocol 'votes' only; protocol '{self.protocol}' "
                             "drops faces whose top entry is unknown or not-a-face, as the paper does")
        return self


class WebDatasetOptions(_Strict):
    """WebDataset tar shards (``format: webdataset``).

    cache_dir: where shards named by URL (https://, s3://, pipe:...) are downloaded once, so
      samples can be read at random; default ``$CASCADE_SHARD_CACHE`` or ~/.cache/cascade/shards.
      Local shards are read in place.
    """

    cache_dir: str | None = None


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

    root: the dataset folder (emotion6, imagefolder, ferplus), the CSV/TSV file (manifest) or a brace
      pattern of .tar shards, local or URLs (webdataset). manifest, webdataset and imagefolder also take a
      mapping {train: ..., val: ..., test: ...}: one source per split, which then fixes the split. There the
      train source may carry no labels (a manifest with a path column only, a folder with no class folders)
      for label-free training.
    classes: class order; emotion6 defaults to EMOTION6_CLASSES, ferplus to FERPLUS_CLASSES, imagefolder
      to sorted folder names, a manifest to its distribution columns (or its sorted label names),
      shards to the samples' "classes" (or the sorted names they use). emotion6_neutral adds
      "neutral" as a 7th, distribution-only class; otherwise the six emotions are renormalised.
    manifest / ferplus / webdataset / synthetic: options of that format (see each class).
    splits / split_seed: ratios and seed of the stratified split used when nothing else fixes one
      (splits_file, a manifest split column, a per-split root, FER+'s folders, the shards' split field).
    on_bad: "error" raises DataError listing every bad item; "skip" drops them. Both record them
      in the DataReport. dist_tolerance: how far a probability row may sum from 1 and still be
      renormalised (with a warning). max_image_pixels: decompression-bomb limit.
    label_smoothing: mass spread evenly over all classes when a distribution is built from a label.
    scan_workers: threads that decode images during the scan (0: one per CPU, at most 8); for shards,
      threads that each read whole shards.
    """

    format: Literal["synthetic", "emotion6", "imagefolder", "manifest", "ferplus", "webdataset"] = "synthetic"
    root: str | dict[str, str] | None = None
    classes: list[str] | None = None
    emotion6_neutral: bool = False
    manifest: ManifestOptions = Field(default_factory=ManifestOptions)
    ferplus: FerPlusOptions = Field(default_factory=FerPlusOptions)
    webdataset: WebDatasetOptions = Field(default_factory=WebDatasetOptions)
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
            what = {"manifest": "the manifest CSV/TSV file", "webdataset": "a brace pattern of .tar shards"}
            raise ValueError(f"root is required for format '{self.format}' ({what.get(self.format, 'the dataset folder')})")
        if isinstance(self.root, dict):
            if self.format not in PER_SPLIT_ROOT_FORMATS:
                raise ValueError(f"root: a per-split mapping works for formats {list(PER_SPLIT_ROOT_FORMATS)}, "
                                 f"not '{self.format}'")
            unknown = sorted(set(self.root) - set(SPLIT_NAMES))
            if unknown:
                raise ValueError(f"root: unknown split name(s) {unknown}; use {list(SPLIT_NAMES)}")
            if not self.root.get("train"):
                raise ValueError("root: the per-split mapping needs a train entry")
            empty = [k for k, v in self.root.items() if not v or not v.strip()]
            if empty:
                raise ValueError(f"root: empty entry for split(s) {empty}")
            if self.manifest.split_column:
                raise ValueError("root: a per-split mapping already fixes the split; drop manifest.split_column")
        return self

    def split_roots(self) -> dict[str, str | None]:
        """``{split: root}`` for a per-split mapping, else ``{None: root}``: the sources to read."""
        if isinstance(self.root, dict):
            return {k: self.root[k] for k in SPLIT_NAMES if k in self.root}
        return {None: self.root}

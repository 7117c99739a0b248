"""Datasets for emotion recognition: formats (synthetic, Emotion6, image folders, manifests, FER+,
WebDataset shards), bad-input scanning, splits, synthetic faces."""

from .config import (EMOTION6_CLASSES, FERPLUS_CLASSES, DataConfig, FerPlusOptions, ManifestOptions, SplitRatios,
                     SyntheticOptions, WebDatasetOptions)
from .dataset import EmotionDataset
from .images import IMAGE_EXTENSIONS, check_image, load_rgb, pixel_limit, to_rgb
from .load import load_index
from .records import DatasetIndex, Record, TarMember, distribution_from_label, normalise_distribution
from .scan_report import BadItem, DataError, DataReport
from .splits import load_splits, make_splits, resolve_splits, save_splits, splits_from_records
from .synthetic import SyntheticSpec, render_face
from .transforms import CLIP_MEAN, CLIP_STD, AugmentConfig, eval_transform, train_transform

__all__ = [
    "AugmentConfig",
    "BadItem",
    "CLIP_MEAN",
    "CLIP_STD",
    "DataConfig",
    "DataError",
    "DataReport",
    "DatasetIndex",
    "EMOTION6_CLASSES",
    "EmotionDataset",
    "FERPLUS_CLASSES",
    "FerPlusOptions",
    "IMAGE_EXTENSIONS",
    "ManifestOptions",
    "Record",
    "SplitRatios",
    "SyntheticOptions",
    "SyntheticSpec",
    "TarMember",
    "WebDatasetOptions",
    "check_image",
    "distribution_from_label",
    "eval_transform",
    "load_index",
    "load_rgb",
    "load_splits",
    "make_splits",
    "normalise_distribution",
    "pixel_limit",
    "render_face",
    "resolve_splits",
    "save_splits",
    "splits_from_records",
    "to_rgb",
    "train_transform",
]

"""cascade: multi-stage visual prompts for CLIP image emotion recognition."""
from .backbone import Backbone, BackboneInfo, WeightsUnavailableError, load_backbone, save_backbone_weights
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .classifier import TextClassifier, build_classifier, pretrain_on_descriptions
from .config import CascadeConfig, ConfigError, PRESETS
from .losses import LossWeights, cascade_loss, distribution_from_labels
from .methods import METHODS, method_config
from .model import BlockFeatures, CascadeCLIP, CascadeOutput, build_model
from .nga import nga_weights
from .version import __version__

__all__ = [
    "Backbone", "BackboneInfo", "BlockFeatures", "CascadeCLIP", "CascadeConfig", "CascadeOutput",
    "CheckpointError", "ConfigError", "LossWeights", "METHODS", "PRESETS", "TextClassifier",
    "WeightsUnavailableError", "__version__", "build_classifier", "build_model", "cascade_loss",
    "distribution_from_labels", "load_backbone", "load_checkpoint", "method_config", "nga_weights",
    "pretrain_on_descriptions", "save_backbone_weights", "save_checkpoint",
]

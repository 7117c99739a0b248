"""CLIP weights in the formats researchers already have: open_clip files, OpenAI's TorchScript
archives and Hugging Face transformers checkpoints; plus the architecture they hold."""
from .errors import WeightsError
from .infer import AUTO, KNOWN_ARCHITECTURES, architecture_of, check_architecture
from .load import load_state
from .read import FORMATS, SUFFIXES, Weights, read_weights

__all__ = ["AUTO", "FORMATS", "KNOWN_ARCHITECTURES", "SUFFIXES", "Weights", "WeightsError", "architecture_of",
           "check_architecture", "load_state", "read_weights"]
